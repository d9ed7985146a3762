"""Scheduled batch runs: a directory per run id, staging, atomic publish, exit codes, SIGKILL.

What a scheduler and a downstream reader are promised (pipelines/publish.py,
README "Scheduling"): a run directory holds either nothing, or exactly one
complete set of outputs of one run with ``_SUCCESS`` (written last); a rerun
of a run id replaces the set; a run killed or failed at any point leaves the
previous set untouched and nothing a reader would pick up.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import fastavro
import pytest

from regenwatch.cli import main as cli_main
from regenwatch.pipelines import publish
from tests.conftest import SEED_INPUT
from tests.data.synthetic import write_jsonl

OUTPUT_PATTERNS = ("flagged-*.avro", "decisions-*.avro", "deadletter-*.avro")


def read_avro(paths):
    records = []
    for path in paths:
        with open(path, "rb") as handle:
            records.extend(fastavro.reader(handle))
    return records


def all_files(base):
    """Every file under base, relative, sorted."""
    found = []
    for root, _, files in os.walk(base):
        found.extend(os.path.relpath(os.path.join(root, f), base) for f in files)
    return sorted(found)


def assert_one_complete_set(run_dir, pages_in):
    """Exactly one set of outputs, _SUCCESS agreeing with it, nothing else a reader would pick up."""
    names = sorted(os.listdir(run_dir))
    assert publish.SUCCESS in names, names
    expected = set()
    for pattern in OUTPUT_PATTERNS:
        matched = [os.path.basename(p) for p in glob.glob(os.path.join(run_dir, pattern))]
        assert matched, f"no {pattern} in {names}"
        expected.update(matched)
    assert set(names) == expected | {publish.SUCCESS}, f"stray entries: {set(names) - expected}"
    marker = json.load(open(os.path.join(run_dir, publish.SUCCESS)))
    listed = {n for files in marker["files"].values() for n in files}
    assert listed == expected, "_SUCCESS lists exactly the files of the run"
    decisions = read_avro(glob.glob(os.path.join(run_dir, "decisions-*.avro")))
    dead = read_avro(glob.glob(os.path.join(run_dir, "deadletter-*.avro")))
    assert len(decisions) + len(dead) == pages_in == marker["counts"]["pages_read"]
    assert marker["records"]["decisions"] == len(decisions)
    assert len({(d["id"], d["content_sha256"]) for d in decisions}) == len(decisions), "a page decided twice"
    return marker, decisions, dead


def run_cli(*args):
    return cli_main(["run", *args])


# --------------------------------------------------------------------------
# Layout and rerun


def test_run_id_directory_rerun_replaces(tmp_path, small_model_uri):
    base = tmp_path / "out"
    first = write_jsonl(str(tmp_path / "first.jsonl"), 30, seed=1, prefix="first-")
    second = write_jsonl(str(tmp_path / "second.jsonl"), 12, seed=2, prefix="second-")
    common = ["--output", str(base), "--model", small_model_uri, "--run_id", "2026-11-22"]
    assert run_cli("--input", first, *common) == 0
    run_dir = base / "2026-11-22"
    marker, decisions, _ = assert_one_complete_set(run_dir, 30)
    assert marker["run_id"] == "2026-11-22" and marker["model_version"] == "test-small"
    assert marker["status"] == "complete" and marker["problems"] == []
    assert marker["input"] == first and marker["model_sha256"]

    assert run_cli("--input", second, *common) == 0
    marker, decisions, _ = assert_one_complete_set(run_dir, 12)
    assert {d["id"] for d in decisions} == {f"second-{i:06d}" for i in range(12)}, "first run's outputs replaced"
    # Nothing but the run directory is left under the base: no staging, no Beam temp.
    assert os.listdir(base) == ["2026-11-22"]


def test_without_run_id_outputs_go_into_output_as_the_readme_says(tmp_path, small_model_uri):
    out = tmp_path / "out"
    assert run_cli("--input", SEED_INPUT, "--output", str(out) + "/", "--model", small_model_uri) == 0
    marker, _, _ = assert_one_complete_set(out, 5)
    assert marker["run_id"] == publish.default_run_id(SEED_INPUT, str(out))


def test_dead_letter_ratio_leaves_out_duplicates():
    from regenwatch.pipelines.moderate import RunSummary

    summary = RunSummary(pages_read=12, dead_letters={"parse": 3, "duplicate": 3})
    assert summary.dead_total == 6 and summary.failed_total == 3
    assert summary.dead_letter_ratio == 0.25


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "_staging", ".hidden", "", "x" * 200, "a b"])
def test_hostile_run_ids_are_refused(tmp_path, small_model_uri, run_id, capsys):
    code = run_cli("--input", SEED_INPUT, "--output", str(tmp_path / "out"), "--model", small_model_uri,
                   "--run_id", run_id)
    assert code == 2
    assert "--run_id" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_stale_staging_of_this_run_id_is_cleaned_and_others_kept(tmp_path, small_model_uri):
    base = tmp_path / "out"
    mine = base / "_staging" / "r1" / "20260101T000000Z-dead"
    other = base / "_staging" / "r2" / "20260101T000000Z-busy"
    for d in (mine, other):
        (d / "beam-temp-decisions-x").mkdir(parents=True)
        (d / "beam-temp-decisions-x" / "part").write_bytes(b"partial")
    old_beam_temp = base / "r1" / "beam-temp-flagged-123"
    old_beam_temp.mkdir(parents=True)
    assert run_cli("--input", SEED_INPUT, "--output", str(base), "--model", small_model_uri, "--run_id", "r1") == 0
    assert_one_complete_set(base / "r1", 5)
    assert not (base / "_staging" / "r1").exists()
    assert (other / "beam-temp-decisions-x" / "part").exists(), "another run id's staging is not ours to remove"


# --------------------------------------------------------------------------
# Failures leave the previous set as it was


def test_failed_run_publishes_nothing_and_keeps_the_previous_set(tmp_path, small_model_uri, monkeypatch, capsys):
    from regenwatch.pipelines import dofns

    base = tmp_path / "out"
    args = ["--input", SEED_INPUT, "--output", str(base), "--model", small_model_uri, "--run_id", "r"]
    assert run_cli(*args) == 0
    before = {name: (base / "r" / name).read_bytes() for name in os.listdir(base / "r")}

    def broken(self, page):
        raise RuntimeError("worker lost its disk")

    # An unexpected failure inside the job (not bad input: a broken worker).
    monkeypatch.setattr(dofns.NormalizeFn, "process", broken)
    code = run_cli(*args)
    err = capsys.readouterr().err
    assert code == 1 and "no _SUCCESS was written" in err and "worker lost its disk" in err
    after = {name: (base / "r" / name).read_bytes() for name in os.listdir(base / "r")}
    assert after == before
    assert all_files(base) == sorted(f"r/{n}" for n in before), "no staging or temp files left"


def test_crash_during_publish_is_repaired_by_the_rerun(tmp_path, small_model_uri, monkeypatch):
    base = tmp_path / "out"
    args = ["--input", SEED_INPUT, "--output", str(base), "--model", small_model_uri, "--run_id", "r"]
    real_rename = publish.FileSystems.rename

    def rename_then_die(sources, targets):
        # The first staged file moves in, then the process "dies".
        real_rename(sources[:1], targets[:1])
        raise publish.BeamIOError("simulated crash during publish", {})

    monkeypatch.setattr(publish.FileSystems, "rename", rename_then_die)
    assert run_cli(*args) == 1
    assert not (base / "r" / publish.SUCCESS).exists(), "a half-published set never carries _SUCCESS"
    monkeypatch.setattr(publish.FileSystems, "rename", real_rename)
    assert run_cli(*args) == 0
    assert_one_complete_set(base / "r", 5)
    assert os.listdir(base) == ["r"]


# --------------------------------------------------------------------------
# Exit codes a scheduler acts on


def test_dead_letters_over_the_ratio_exit_1_and_still_publish(tmp_path, small_model_uri, capsys):
    path = tmp_path / "in.jsonl"
    good = [json.dumps({"id": f"g{i}", "content": "Stem cells are studied in trials."}) for i in range(6)]
    bad = ["{not json", json.dumps({"id": "x"}), json.dumps({"content": "no id"})]
    dup = [good[0]] * 3  # re-deliveries: dead letters, but not failures
    path.write_text("\n".join(good + bad + dup) + "\n")
    base = tmp_path / "out"
    # 3 failures in 12 inputs (25%) is over 0.2; the 3 duplicates do not count.
    code = run_cli("--input", str(path), "--output", str(base), "--model", small_model_uri, "--run_id", "over",
                   "--max_dead_letter_ratio", "0.2")
    assert code == 1
    assert "3 of 12 inputs dead-lettered (25.0%), over --max_dead_letter_ratio 0.2" in capsys.readouterr().err
    marker, decisions, dead = assert_one_complete_set(base / "over", 12)
    assert marker["status"] == "complete_with_problems" and marker["problems"]
    assert sorted(d["stage"] for d in dead) == ["duplicate"] * 3 + ["parse"] * 3


def test_input_matching_nothing_exits_2(tmp_path, small_model_uri, capsys):
    code = run_cli("--input", str(tmp_path / "2026-11-22" / "*.jsonl"), "--output", str(tmp_path / "out"),
                   "--model", small_model_uri)
    assert code == 2 and "matches no files" in capsys.readouterr().err


# --------------------------------------------------------------------------
# SIGKILL mid-run, then the same run id again


def _regenwatch_cmd():
    script = os.path.join(os.path.dirname(sys.executable), "regenwatch")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "regenwatch.cli"]


def _staged_entries(base, run_id):
    """What an attempt of run_id has under staging: its directory and Beam's temp directories in it."""
    root = base / "_staging" / run_id
    return [os.path.join(r, d) for r, dirs, _ in os.walk(root) for d in dirs] if root.exists() else []


def test_sigkill_mid_run_then_rerun_leaves_one_complete_set(tmp_path, small_model_uri):
    pages_in = 1500
    base = tmp_path / "out"
    run_id = "2026-11-22"
    run_dir = base / run_id
    big = write_jsonl(str(tmp_path / "big.jsonl"), pages_in, seed=7, prefix="big-")
    args = ["run", "--input", big, "--output", str(base), "--model", small_model_uri, "--run_id", run_id]

    # A previous complete run of the same id (a smaller day).
    assert cli_main(["run", "--input", SEED_INPUT, "--output", str(base), "--model", small_model_uri,
                     "--run_id", run_id]) == 0
    published = {name: (run_dir / name).read_bytes() for name in os.listdir(run_dir)}

    proc = subprocess.Popen(_regenwatch_cmd() + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        # Kill once the job is running and has set up its output temp area in
        # staging: from then on it reads, scores and writes for many seconds.
        while not _staged_entries(base, run_id):
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "the run never started writing"
            time.sleep(0.02)
        assert proc.poll() is None, "killed mid-way, not after the end"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    # Killed mid-way: the run directory still holds the previous set, byte for
    # byte, and what the killed attempt left is only under _staging.
    assert {name: (run_dir / name).read_bytes() for name in os.listdir(run_dir)} == published
    assert _staged_entries(base, run_id)
    assert sorted(os.listdir(base)) == ["2026-11-22", "_staging"]

    # The scheduler retries the same run id: one complete set of the new run.
    assert cli_main(args) == 0
    marker, decisions, dead = assert_one_complete_set(run_dir, pages_in)
    assert {d["id"] for d in decisions} | {d["id"] for d in dead} == {f"big-{i:06d}" for i in range(pages_in)}
    assert all_files(base) == sorted(f"{run_id}/{n}" for n in os.listdir(run_dir)), "no staging, no temp files"
    assert os.listdir(base) == [run_id]
