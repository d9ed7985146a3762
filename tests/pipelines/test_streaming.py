"""Streaming mode driven by TestStream: per-window outputs, dedup, dead letters, written files.

The Python DirectRunner (BundleBasedDirectRunner) runs these: it processes
each TestStream event to quiescence and fires a window when the watermark
passes its end, so the per-window files exist as soon as the window closes.
"""
import contextlib
import glob
import json
import os
import re
import shutil

import apache_beam as beam
import fastavro
import pytest
from apache_beam.metrics.execution import MetricsContainer
from apache_beam.metrics.metricbase import MetricName
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing import test_stream
from apache_beam.testing.util import assert_that, equal_to_per_window
from apache_beam.runners.worker import statesampler
from apache_beam.transforms.window import IntervalWindow, TimestampedValue
from apache_beam.utils.counters import CounterFactory

from regenwatch.pipelines.dofns import NAMESPACE
from regenwatch.pipelines.streaming import (
    LOCAL_STREAM_RUNNER,
    ModeratePageStream,
    ParsePageMessages,
    WriteWindowedOutputs,
    window_file_name,
)

CLAIM = ("Our stem cell therapy cures Parkinson's disease and Alzheimer's with no side effects. "
         "It is completely safe and FDA approved. Clinically proven to reverse MS. "
         "Better than surgery: avoid knee replacement.")
CLAIM_2 = ("Exosome injections reverse arthritis and regrow cartilage, guaranteed results with no side effects. "
           "Our clinic's stem cell treatment cures diabetes. Clinically proven and FDA approved.")
CLEAN = ("The FDA warns consumers that no exosome products are approved. "
         "Ask your doctor about approved treatments; early studies are small and results vary.")
CLEAN_EDITED = CLEAN + " Clinical trials are listed on a public registry."

W0 = IntervalWindow(0, 60)
W1 = IntervalWindow(60, 120)


def message(page_id, content, content_type="text/plain"):
    return ("test-stream", json.dumps({"id": page_id, "content": content, "content_type": content_type}).encode())


def page_stream():
    return (
        test_stream.TestStream()
        .advance_watermark_to(0)
        .add_elements([
            TimestampedValue(message("claim-1", CLAIM), 5),
            TimestampedValue(message("clean-1", CLEAN), 10),
            TimestampedValue(("test-stream", b'{"id": "broken", "content": '), 15),   # invalid JSON
        ])
        .advance_watermark_to(60)
        .add_elements([
            TimestampedValue(message("claim-1", CLAIM), 65),                 # re-delivered: dropped
            TimestampedValue(message("claim-2", CLAIM_2), 70),
            TimestampedValue(message("clean-1", CLEAN_EDITED), 80),          # same id, new content: decided
            TimestampedValue(message("empty-html", "<script>x()</script>", "text/html"), 90),
        ])
        .advance_watermark_to(120)
        .advance_watermark_to_infinity()
    )


def read_avro(path):
    with open(path, "rb") as handle:
        return list(fastavro.reader(handle))


@pytest.fixture(scope="module")
def stream_run(small_model_uri, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("stream-out"))
    p = TestPipeline(runner=LOCAL_STREAM_RUNNER, options=PipelineOptions([], streaming=True))
    pages, dead = p | "Stream" >> page_stream() | "Parse" >> ParsePageMessages(max_bytes=1 << 20)
    moderated = (pages, dead) | "Moderate" >> ModeratePageStream(
        window_seconds=60, dedup_seconds=600, model_uri=small_model_uri, threshold=0.5,
        model_refresh_seconds=0)
    assert_that(moderated.decisions | "DecisionIds" >> beam.Map(lambda d: d["id"]),
                equal_to_per_window({W0: ["claim-1", "clean-1"], W1: ["claim-2", "clean-1"]}),
                label="decisions-per-window")
    assert_that(moderated.flagged | "FlaggedIds" >> beam.Map(lambda d: d["id"]),
                equal_to_per_window({W0: ["claim-1"], W1: ["claim-2"]}), label="flagged-per-window")
    assert_that(moderated.dead_letters | "DeadStages" >> beam.Map(lambda d: (d["id"], d["stage"])),
                equal_to_per_window({W0: [(None, "parse")], W1: [("empty-html", "normalize")]}),
                label="dead-letters-per-window")
    moderated | "Write" >> WriteWindowedOutputs(out)
    result = p.run()
    result.wait_until_finish()
    return out, result


def test_per_window_outputs_and_redelivery_dropped(stream_run):
    # The assert_that checks of stream_run (decisions, flagged and dead letters
    # per window; claim-1's re-delivery absent from W1) ran inside the
    # pipeline: a mismatch fails p.run(). Counters are checked in the unit
    # test below: the Python DirectRunner reports a TestStream run's counters
    # for the first event's bundles only (measured with Beam 2.77).
    _, result = stream_run
    assert str(result.state) == "DONE"


class FakeState:
    def __init__(self):
        self.value = None

    def read(self):
        return self.value

    def write(self, value):
        self.value = value

    def clear(self):
        self.value = None


class FakeTimer:
    def __init__(self):
        self.at = None

    def set(self, at):
        self.at = at


def test_deduplicate_fn_drops_and_counts_redelivery_until_expiry():
    from apache_beam.utils.timestamp import Timestamp

    from regenwatch.pipelines.pages import Page
    from regenwatch.pipelines.streaming import DeduplicatePagesFn, dedup_key

    fn = DeduplicatePagesFn(ttl_seconds=600)
    state, timer = FakeState(), FakeTimer()   # the runner keeps one of each per key
    page = Page(id="p", content=CLAIM)
    key, _ = dedup_key(page)
    assert key != dedup_key(Page(id="p", content=CLAIM + " "))[0]
    with metrics_scope() as container:
        first = list(fn.process((key, page), timestamp=Timestamp(100), seen=state, expiry=timer))
        again = list(fn.process((key, page), timestamp=Timestamp(200), seen=state, expiry=timer))
        assert first == [page] and again == []
        assert timer.at == Timestamp(700)
        assert counter(container, "duplicate_pages_dropped") == 1
        fn.expire(seen=state)
        assert list(fn.process((key, page), timestamp=Timestamp(800), seen=state, expiry=timer)) == [page]


@contextlib.contextmanager
def metrics_scope():
    """Counters of DoFn calls made outside a runner land in the yielded container."""
    container = MetricsContainer("step")
    sampler = statesampler.StateSampler("unit-test", CounterFactory())
    statesampler.set_current_tracker(sampler)
    try:
        with sampler.scoped_state("step", "process", metrics_container=container):
            yield container
    finally:
        statesampler.set_current_tracker(None)


def counter(container, name):
    return container.get_counter(MetricName(NAMESPACE, name)).get_cumulative()


def test_one_avro_file_per_window_and_output(stream_run):
    out, _ = stream_run
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "*.avro")))
    expected = sorted(window_file_name(prefix, w, 0, 1) for prefix in ("decisions", "flagged", "deadletter")
                      for w in (W0, W1))
    assert names == expected
    assert "decisions-19700101T000000Z-19700101T000100Z-00000-of-00001.avro" in names

    def ids(prefix, window):
        return sorted(r["id"] or "" for r in read_avro(os.path.join(out, window_file_name(prefix, window, 0, 1))))

    assert ids("decisions", W0) == ["claim-1", "clean-1"]
    assert ids("decisions", W1) == ["claim-2", "clean-1"]
    assert ids("flagged", W0) == ["claim-1"] and ids("flagged", W1) == ["claim-2"]
    assert ids("deadletter", W0) == [""] and ids("deadletter", W1) == ["empty-html"]
    edited = [r for r in read_avro(os.path.join(out, window_file_name("decisions", W1, 0, 1)))
              if r["id"] == "clean-1"]
    original = [r for r in read_avro(os.path.join(out, window_file_name("decisions", W0, 0, 1)))
                if r["id"] == "clean-1"]
    assert edited[0]["content_sha256"] != original[0]["content_sha256"]


def test_window_files_use_the_batch_schemas(stream_run):
    from regenwatch.schemas import load_schema_json

    out, _ = stream_run
    for prefix, schema in (("decisions", "decision"), ("flagged", "flagged"), ("deadletter", "deadletter")):
        path = os.path.join(out, window_file_name(prefix, W0, 0, 1))
        with open(path, "rb") as handle:
            reader = fastavro.reader(handle)
            assert reader.writer_schema["name"].split(".")[-1] == load_schema_json(schema)["name"]


def test_stream_command_watches_a_folder(small_model_uri, tmp_path, seed_rows):
    """A real local unbounded run: regenwatch stream on a folder, ended by --stop_after_seconds.

    The second file re-delivers every seed page (dropped), a bad line and an
    unsupported file become dead letters. The local runner for a watched
    folder (FnApiRunner) writes the windows when the run ends.
    """
    from regenwatch.cli import main
    from tests.conftest import SEED_INPUT

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SEED_INPUT, folder / "batch-1.jsonl")
    shutil.copy(SEED_INPUT, folder / "batch-1-resent.jsonl")
    # A line far over the cap (4 x --max_page_bytes) is read in 1 MiB chunks
    # and dead-lettered with its first 1 MiB, never held whole.
    huge = json.dumps({"id": "huge", "content": "stem cells " * 120_000}).encode()
    (folder / "batch-2.jsonl").write_bytes(
        json.dumps({"id": "new-1", "content": CLAIM_2}).encode() + b"\n" + b'{"id": "cut", "content": "\n'
        + huge + b"\n")
    (folder / "notes.txt").write_text("not a page file")
    out = tmp_path / "out"
    code = main(["stream", "--input", str(folder / "*"), "--output", str(out), "--model", small_model_uri,
                 "--poll_seconds", "1", "--stop_after_seconds", "2", "--window_seconds", "600",
                 "--max_page_bytes", "200000"])
    assert code == 0
    files = sorted(os.path.basename(p) for p in glob.glob(str(out / "*.avro")))
    assert files and all(re.fullmatch(r"(decisions|flagged|deadletter)-\d{8}T\d{6}Z-\d{8}T\d{6}Z-00000-of-00001\.avro",
                                      name) for name in files), files
    records = {prefix: [r for p in glob.glob(str(out / f"{prefix}-*.avro")) for r in read_avro(p)]
               for prefix in ("decisions", "flagged", "deadletter")}
    assert sorted(d["id"] for d in records["decisions"]) == sorted([r["id"] for r in seed_rows] + ["new-1"])
    assert sorted((d["stage"], os.path.basename(d["source"])) for d in records["deadletter"]) == [
        ("parse", "batch-2.jsonl"), ("parse", "batch-2.jsonl"), ("read", "notes.txt")]
    over = [d for d in records["deadletter"] if d["raw_truncated"]]
    assert len(over) == 1 and over[0]["raw"].startswith('{"id": "huge"') and len(over[0]["raw"]) <= 1 << 20
    assert sorted(f["id"] for f in records["flagged"]) == sorted(d["id"] for d in records["decisions"] if d["flagged"])
