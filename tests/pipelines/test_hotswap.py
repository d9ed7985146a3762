"""Model hot-swap in ScoreBatchFn: a promoted model is picked up without restart, a tampered one is refused.

Two small REAL models are trained (conftest's ``small_model_uri`` and a second
one here on other pages); "promotion" copies an artifact and then its
manifest to the watched model path, as an operator would.
"""
import logging
import os
import shutil

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_stream
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to_per_window
from apache_beam.transforms.window import IntervalWindow, TimestampedValue

from regenwatch.models.artifact import manifest_uri, read_manifest
from regenwatch.models.text import normalize_page
from regenwatch.pipelines.dofns import ScoreBatchFn
from regenwatch.pipelines.pages import Page
from regenwatch.pipelines.streaming import LOCAL_STREAM_RUNNER, ModeratePageStream, ParsePageMessages
from tests.pipelines.test_streaming import CLAIM, CLAIM_2, CLEAN, counter, message, metrics_scope

REFRESH = 30.0


@pytest.fixture(scope="module")
def second_model_uri(tmp_path_factory):
    """Another small real model: other pages, other sentences, another version label."""
    from regenwatch.models.artifact import save_model
    from regenwatch.models.classifier import ClaimModel
    from regenwatch.training.data_io import load_sample_set

    sample = load_sample_set()
    pages = sample.pages[-60:]
    model = ClaimModel(n_inner_folds=2, threshold=0.5).fit(
        [p["text"] for p in pages], [p["label"] for p in pages],
        evidence=[p.get("evidence") or [] for p in pages], extra_sentences=sample.sentences[1::6])
    path = str(tmp_path_factory.mktemp("model-b") / "b.joblib")
    save_model(model, path, {"version": "test-b", "threshold": 0.5})
    return path


def promote(candidate: str, watched: str, tamper: bool = False) -> None:
    """Copy the artifact, then the manifest (the manifest is the commit point of a promotion)."""
    shutil.copyfile(candidate, watched)
    if tamper:
        with open(watched, "r+b") as handle:
            handle.seek(100)
            byte = handle.read(1)
            handle.seek(100)
            handle.write(bytes([byte[0] ^ 0xFF]))
    shutil.copyfile(manifest_uri(candidate), manifest_uri(watched))


class ManualClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def decide(fn, *texts):
    batch = [(Page(id=f"p{i}", content=t, content_type="text/plain"), normalize_page(t, "text/plain"))
             for i, t in enumerate(texts)]
    return [r for r in fn.process(batch) if isinstance(r, dict)]


def test_refresh_at_most_every_n_seconds_and_tampered_candidate_refused(
        small_model_uri, second_model_uri, tmp_path, caplog):
    watched = str(tmp_path / "model.joblib")
    promote(small_model_uri, watched)
    clock = ManualClock()
    fn = ScoreBatchFn(watched, None, refresh_seconds=REFRESH, clock=clock)
    fn.setup()
    with metrics_scope() as container:
        assert {d["model_version"] for d in decide(fn, CLAIM, CLEAN)} == {"test-small"}

        promote(second_model_uri, watched)
        clock.now += REFRESH - 1          # not yet due: the manifest is not even read
        assert {d["model_version"] for d in decide(fn, CLAIM)} == {"test-small"}
        clock.now += 1                    # due: the new manifest is read, the artifact verified, swapped
        decisions = decide(fn, CLAIM, CLEAN)
        assert {d["model_version"] for d in decisions} == {"test-b"}
        assert counter(container, "model_swaps") == 1

        caplog.set_level(logging.WARNING)
        promote(small_model_uri, watched, tamper=True)   # bytes no longer match the manifest's SHA-256
        clock.now += REFRESH
        assert {d["model_version"] for d in decide(fn, CLAIM_2)} == {"test-b"}
        assert counter(container, "model_swaps_refused") == 1
        assert any("refused" in r.getMessage() and "SHA-256" in r.getMessage() for r in caplog.records)

        # The same refused candidate is not re-verified (nor re-counted) at every check...
        clock.now += REFRESH
        decide(fn, CLAIM)
        assert counter(container, "model_swaps_refused") == 1
        # ...but a repaired promotion of it is taken.
        promote(small_model_uri, watched)
        clock.now += REFRESH
        assert {d["model_version"] for d in decide(fn, CLAIM)} == {"test-small"}
        assert counter(container, "model_swaps") == 2


def test_refresh_off_reads_the_model_once(small_model_uri, second_model_uri, tmp_path):
    watched = str(tmp_path / "model.joblib")
    promote(small_model_uri, watched)
    clock = ManualClock()
    fn = ScoreBatchFn(watched, None, refresh_seconds=0, clock=clock)
    fn.setup()
    promote(second_model_uri, watched)
    clock.now += 10 ** 6
    assert {d["model_version"] for d in decide(fn, CLAIM, CLEAN)} == {"test-small"}


def test_a_manifest_mid_promotion_keeps_the_model(small_model_uri, tmp_path, caplog):
    watched = str(tmp_path / "model.joblib")
    promote(small_model_uri, watched)
    clock = ManualClock()
    fn = ScoreBatchFn(watched, None, refresh_seconds=REFRESH, clock=clock)
    fn.setup()
    os.remove(manifest_uri(watched))     # e.g. an operator's copy tool replaces it non-atomically
    clock.now += REFRESH
    caplog.set_level(logging.WARNING)
    assert {d["model_version"] for d in decide(fn, CLAIM)} == {"test-small"}
    assert any("model check" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------
# In a stream: TestStream with promotions between windows

class PromoteFn(beam.DoFn):
    """The operator, inside the test stream: promotes (candidate, tamper) to the watched path."""

    def __init__(self, watched):
        self.watched = watched

    def process(self, element):
        candidate, tamper = element
        promote(candidate, self.watched, tamper=tamper)
        yield candidate


W0, W1, W2 = IntervalWindow(0, 60), IntervalWindow(60, 120), IntervalWindow(120, 180)


def test_stream_swaps_model_mid_stream_and_refuses_tampered(small_model_uri, second_model_uri, tmp_path, caplog):
    watched = str(tmp_path / "model.joblib")
    promote(small_model_uri, watched)
    caplog.set_level(logging.WARNING)
    # The Python DirectRunner runs each TestStream event to quiescence before
    # the next, so a promotion lands between the windows' pages.
    events = (
        test_stream.TestStream(output_tags={"pages", "promote"})
        .advance_watermark_to(0, tag="pages").advance_watermark_to(0, tag="promote")
        .add_elements([TimestampedValue(message("a1", CLAIM), 5),
                       TimestampedValue(message("a2", CLEAN), 10)], tag="pages")
        .advance_watermark_to(60, tag="pages")
        .add_elements([(second_model_uri, False)], tag="promote")
        .add_elements([TimestampedValue(message("b1", CLAIM), 65),
                       TimestampedValue(message("b2", CLAIM_2), 70)], tag="pages")
        .advance_watermark_to(120, tag="pages")
        .add_elements([(small_model_uri, True)], tag="promote")
        .add_elements([TimestampedValue(message("c1", CLEAN), 130)], tag="pages")
        .advance_watermark_to_infinity(tag="pages").advance_watermark_to_infinity(tag="promote")
    )
    p = TestPipeline(runner=LOCAL_STREAM_RUNNER, options=PipelineOptions([], streaming=True))
    streams = p | "Events" >> events
    streams["promote"] | "Promote" >> beam.ParDo(PromoteFn(watched))
    pages, dead = streams["pages"] | "Parse" >> ParsePageMessages(max_bytes=1 << 20)
    moderated = (pages, dead) | "Moderate" >> ModeratePageStream(
        window_seconds=60, dedup_seconds=600, model_uri=watched, threshold=0.5, batch_size=1,
        # The real clock: a promotion and the pages after it are events apart,
        # far more than a millisecond, so the first batch after it checks.
        model_refresh_seconds=0.001)
    assert_that(moderated.decisions | "Versions" >> beam.Map(lambda d: (d["id"], d["model_version"])),
                equal_to_per_window({
                    W0: [("a1", "test-small"), ("a2", "test-small")],
                    W1: [("b1", "test-b"), ("b2", "test-b")],
                    W2: [("c1", "test-b")],            # the tampered promotion was refused
                }), label="model-version-per-page")
    result = p.run()
    result.wait_until_finish()
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and "SHA-256" in refusals[0]
    assert read_manifest(watched)["version"] == "test-small"   # the tampered candidate is still there

