"""The benchmark end to end on a tiny input: every row, sane numbers, no timing assertions."""
import json
import re
import sys

import pytest

from bench.generate import CYRILLIC_LOOKALIKES, ZERO_WIDTH, iter_pages, write_input
from bench.loop import STAGES, StageClock
from bench.model_parts import PARTS
from bench.proctree import run_measured

SMOKE_ARGS = ["--pages", "30", "--shards", "2", "--rss-sizes", "30,60", "--rss-workers", "1",
              "--train-scale", "0.05", "--train-folds", "2"]


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    from bench.run import main

    workdir = tmp_path_factory.mktemp("bench")
    logs = []
    report = main(SMOKE_ARGS + ["--workdir", str(workdir), "--json", str(workdir / "report.json")], log=logs.append)
    return report, logs, workdir


def test_table_has_every_row(smoke_report):
    report, _, _ = smoke_report
    text = report["text"]
    for row in ("limit (plain loop)", "pipeline, 1 worker", "pipeline, 2 workers", "anchor (page TF-IDF+LR loop)",
                "peak RSS: pipeline @30 pages", "peak RSS: pipeline @60 pages", "training:",
                "pipeline start-up: 16 pages, 1 worker", "pipeline start-up: 16 pages, 2 workers"):
        assert re.search(r"^\| " + re.escape(row), text, re.M), row
    for stage in STAGES:
        assert re.search(r"^\| " + stage + r"\s+\|", text, re.M), stage
    for ratio in ("pipeline 1 worker / limit", "pipeline 2 workers / pipeline 1 worker",
                  "full model (limit) / cheap anchor", "peak RSS @60 / @30 pages", "training on the sample set"):
        assert ratio in text, ratio
    for item in ("nproc", "cpu", "memory", "python", "apache-beam", "scikit-learn"):
        assert re.search(r"^\| " + item + r"\s+\|", text, re.M), item
    assert "### Model parts (CPU-ms per scored page" in text
    for part in PARTS + ("(rationale model, all)", "(score_pages, all)", "total"):
        assert re.search(r"^\| " + re.escape(part) + r"\s+\|", text, re.M), part


def test_numbers_are_sane(smoke_report):
    report, _, _ = smoke_report
    runs = report["runs"]
    throughput = [r for r in runs if r["kind"] != "train"]
    assert len(throughput) == 8
    for r in throughput:
        assert r["rate"] > 0 and r["seconds"] > 0, r["name"]
        assert r["rss_mib"] > 50, r["name"]            # a Python process with sklearn is never smaller
        assert r["check"] == "ok", (r["name"], r["check"])
    by_name = {r["name"]: r for r in runs}
    # Every page is accounted for: 30 pages in, decisions + dead letters out, identical for limit and pipeline.
    limit = by_name["limit (plain loop)"]["outputs"]
    assert limit["decisions"] + limit["dead_letters"] == 30
    # The same records (decisions, flagged with their clusters, dead letters), not only as many.
    assert by_name["pipeline, 2 workers"]["outputs"] == limit
    assert set(limit["fingerprint"]) == {"decisions", "flagged", "dead_letters"}
    # The 2-worker run really ran SDK worker processes beside the job process.
    assert by_name["pipeline, 2 workers"]["procs"] >= 3
    assert by_name["pipeline, 2 workers"]["result"]["running_mode"] == "multi_processing"
    train = [r for r in runs if r["kind"] == "train"][0]
    assert train["seconds"] > 0 and train["result"]["pages"] > 0


def test_ratios_and_stages_computed(smoke_report):
    report, _, _ = smoke_report
    ratios = {r["name"]: r for r in report["ratios"]}
    for name, row in ratios.items():
        if "(info)" in name:
            continue
        value = float(re.match(r"[\d.]+", row["measured"]).group(0))
        assert value > 0, name
    # A reduced training set gets no verdict against the 60 s target; the others do.
    verdicts = [r["verdict"] for r in report["ratios"] if "training" not in r["name"] and "(info)" not in r["name"]]
    assert all(v in ("PASS", "FAIL") for v in verdicts)
    stages = report["stages"]
    assert all(stages["limit"][s] > 0 for s in STAGES), stages["limit"]
    assert "_rationale=rationale" in stages["hooked"]
    assert any(".transform=featurize" in h for h in stages["hooked"])


def test_model_parts_cover_every_scored_page(smoke_report):
    report, _, _ = smoke_report
    parts = report["model_parts"]
    # The pages that parse (30 minus broken records) are normalized; those with text are scored.
    assert 0 < parts["pages"] <= 30
    assert parts["calls"]["normalization"] >= parts["pages"]
    assert set(parts["cpu_s"]) == set(PARTS)
    assert all(v >= 0 for v in parts["cpu_s"].values())
    for part in ("sentence featurization", "sentence models", "page context/voice models", "page cues",
                 "stacked page model", "rationale selection", "score_pages, rest"):
        assert parts["calls"][part] > 0, part
    assert any("page_cue_matrix" in h for h in parts["hooked"])


def test_json_report_written(smoke_report):
    _, _, workdir = smoke_report
    with open(workdir / "report.json", encoding="utf-8") as handle:
        data = json.load(handle)
    assert {"machine", "input", "runs", "stages", "ratios", "model_parts"} <= set(data)


# --------------------------------------------------------------------------
# The parts, fast


def test_generator_is_deterministic_prefix_and_mixed(tmp_path):
    small = list(iter_pages(50, seed=3))
    assert small == list(iter_pages(80, seed=3))[:50]
    info = write_input(str(tmp_path), 400, seed=1, shards=3)
    assert len(info.files) == 3
    with_lines = sum(1 for f in info.files for line in open(f, "rb") if line.strip())
    assert with_lines == 400
    assert 2000 <= info.content_chars_p50 <= 4500
    assert info.html_pages > 50 and info.obfuscated_pages > 20
    text = "".join(open(f, encoding="utf-8").read() for f in info.files)
    assert any(ch in text for ch in ZERO_WIDTH) and any(ch in text for ch in CYRILLIC_LOOKALIKES.values())


def test_loop_does_the_pipelines_work_beyond_scoring(tmp_path, small_model_uri):
    """Re-delivered copies become 'duplicate' dead letters and flagged records get their cluster, as in the pipeline."""
    import fastavro

    from bench.loop import plain_loop
    from regenwatch.models.artifact import load_model

    claim = ("Our stem cell therapy cures Parkinson's disease and Alzheimer's with no side effects. "
             "It is completely safe and FDA approved. Clinically proven to reverse MS. "
             "Better than surgery: avoid knee replacement. Book your exosome infusion in {town} today.")
    rows = [{"id": "a", "content": claim.format(town="Springfield"), "content_type": "text/plain"},
            {"id": "a", "content": claim.format(town="Springfield"), "content_type": "text/plain"},  # re-delivery
            {"id": "b", "content": claim.format(town="Shelbyville"), "content_type": "text/plain"},  # same template
            {"id": "c", "content": "Opening hours of the city library and its reading rooms.", "content_type": "text/plain"}]
    path = tmp_path / "pages-00000-of-00001.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    loaded = load_model(small_model_uri)
    res = plain_loop([str(path)], str(tmp_path / "out"), loaded.model, 0.5, loaded.version)
    assert (res.pages_read, res.decided, res.duplicates, res.dead_letters) == (4, 3, 1, 1)

    def read(prefix):
        with open(tmp_path / "out" / f"{prefix}-00000-of-00001.avro", "rb") as handle:
            return list(fastavro.reader(handle))

    [dup] = read("deadletter")
    assert (dup["id"], dup["stage"]) == ("a", "duplicate")
    flagged = {r["id"]: r for r in read("flagged")}
    assert set(flagged) == {"a", "b"}
    assert flagged["a"]["cluster_id"] == flagged["b"]["cluster_id"] and flagged["a"]["cluster_size"] == 2

    bare = plain_loop([str(path)], str(tmp_path / "bare"), loaded.model, 0.5, loaded.version, same_work=False)
    assert (bare.decided, bare.duplicates) == (4, 0)


def test_stage_clock_times_nested_stages_exclusively():
    # A scripted clock, not sleeps: the accounting is what is tested, and a
    # loaded machine stretches real sleeps unpredictably.
    ticks = iter([0.0, 2.0, 7.0, 8.0])  # enter score, enter featurize, exit featurize, exit score
    clock = StageClock(timer=lambda: next(ticks))
    with clock.stage("score"):
        with clock.stage("featurize"):
            pass
    assert clock.totals["featurize"] == 5.0
    # The nested featurize time is not counted again in score: 2 before it, 1 after.
    assert clock.totals["score"] == 3.0
    assert clock.calls["score"] == clock.calls["featurize"] == 1


def test_tree_measurement_includes_grandchildren():
    # A child that starts a grandchild holding ~150 MB: the tree peak must see both.
    code = ("import subprocess, sys, time; "
            "g = subprocess.Popen([sys.executable, '-c', 'b = bytearray(150 * 2**20); import time; time.sleep(1.5)']); "
            "g.wait()")
    usage = run_measured([sys.executable, "-c", code], interval=0.05)
    assert usage.returncode == 0
    assert usage.peak_processes >= 2
    assert usage.peak_rss_mib > 150


def test_stage_times_lists_every_stage_of_a_tiny_run(capsys):
    from bench.stage_times import main

    assert main(["--pages", "12", "--shards", "2"]) == 0
    out = capsys.readouterr().out
    stages = [line for line in out.splitlines() if line.startswith("| ") and "`" in line]
    assert len(stages) > 10  # the heavy stage plus the shuffles, row files and writes around it
    assert re.search(r"\d+ stages; heaviest [\d.]+ s, the \d+ others [\d.]+ s; outside stages", out)
