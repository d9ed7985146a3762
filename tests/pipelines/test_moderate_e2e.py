"""End to end through run(argv): read files, moderate, write Avro, read it back."""
import glob
import json
import os

import fastavro
import pytest

from regenwatch.pipelines.moderate import run
from tests.conftest import SEED_INPUT


def read_avro(directory, prefix):
    records = []
    for path in sorted(glob.glob(os.path.join(directory, f"{prefix}-*.avro"))):
        with open(path, "rb") as handle:
            records.extend(fastavro.reader(handle))
    return records


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("seed-run"))
    result = run(["--input", SEED_INPUT, "--output", out])
    return out, result


def test_seed_pages_with_shipped_model(seed_run):
    out, result = seed_run
    decisions = {d["id"][:8]: d for d in read_avro(out, "decisions")}
    flagged = {f["id"][:8]: f for f in read_avro(out, "flagged")}
    assert len(decisions) == 5 and not read_avro(out, "deadletter")
    for seed in ("seed-002", "seed-004"):
        assert decisions[seed]["flagged"], seed
        assert flagged[seed]["rationale"], seed
    for seed in ("seed-000", "seed-003"):
        assert not decisions[seed]["flagged"], seed
        assert seed not in flagged
    assert result.summary.pages_read == 5 and result.summary.decided == 5


def test_rationale_quotes_the_pages_own_normalized_text(seed_run, seed_rows):
    from regenwatch.models.text import normalize_page

    out, _ = seed_run
    by_id = {r["id"]: r for r in seed_rows}
    for rec in read_avro(out, "flagged"):
        sentences = set(normalize_page(by_id[rec["id"]]["content"], "text/plain").sentences)
        for item in rec["rationale"]:
            assert item["sentence"] in sentences


def test_obfuscated_seed_records_homoglyph_signal(seed_run, small_model_uri, tmp_path):
    # Seed 001 is written with Cyrillic look-alikes; with a threshold of 0 every
    # page is flagged, so its signals are visible in the queue.
    out = str(tmp_path)
    run(["--input", SEED_INPUT, "--output", out, "--model", small_model_uri, "--threshold", "0"])
    flagged = {f["id"][:8]: f for f in read_avro(out, "flagged")}
    assert "homoglyphs" in flagged["seed-001"]["signals"]
    assert "homoglyphs" in flagged["seed-003"]["signals"]
    assert flagged["seed-000"]["signals"] == []


def test_outputs_readable_by_apache_avro(seed_run):
    from avro.datafile import DataFileReader
    from avro.io import DatumReader

    out, _ = seed_run
    counts = {}
    for prefix in ("flagged", "decisions", "deadletter"):
        counts[prefix] = 0
        for path in glob.glob(os.path.join(out, f"{prefix}-*.avro")):
            with DataFileReader(open(path, "rb"), DatumReader()) as reader:
                counts[prefix] += sum(1 for _ in reader)
    assert counts["decisions"] == 5
    assert counts["flagged"] == len(read_avro(out, "flagged"))
    assert counts["deadletter"] == 0


def test_bad_inputs_become_dead_letters_and_run_succeeds(tmp_path, small_model_uri):
    good = {"id": "good", "content": "Our exosome therapy cures arthritis with no side effects."}
    lines = [
        json.dumps(good).encode(),
        b'{"id": "broken", "content": ',                                  # invalid JSON
        json.dumps({"content": "no id here"}).encode(),                   # missing id
        json.dumps({"id": "n", "content": 42}).encode(),                  # non-string content
        json.dumps({"id": "e", "content": "   \n\t "}).encode(),          # whitespace only
        json.dumps({"id": "big", "content": "a" * (20 * 1024 * 1024)}).encode(),  # 20 MB page
        json.dumps({"id": "bin", "content": "\x00\x01\x02\x03" * 50}).encode(),   # binary bytes
        b'{"id": "utf", "content": "caf\xe9 \xff\xfe"}',                  # invalid UTF-8
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = str(tmp_path / "out")
    result = run(["--input", str(path), "--output", out, "--model", small_model_uri])
    decisions = read_avro(out, "decisions")
    dead = read_avro(out, "deadletter")
    assert [d["id"] for d in decisions] == ["good"]
    assert len(dead) == 7
    assert len(lines) == len(decisions) + len(dead)
    reasons = sorted(d["error"].split(":")[0] + "/" + d["stage"] for d in dead)
    assert reasons.count("InputError/parse") == 6
    assert reasons.count("BinaryContent/normalize") == 1
    big = next(d for d in dead if '"big"' in d["raw"][:20])
    assert big["raw_truncated"] and len(big["raw"].encode()) <= 1024 * 1024
    assert all(d["error"] for d in dead)
    assert result.summary.pages_read == 8 and result.summary.dead_total == 7


def test_in_process_worker_reuses_the_model_the_launcher_verified(small_model_uri, tmp_path, monkeypatch):
    # In-memory runner: the SDK harness runs in the launcher's process, so the
    # model verified at submission is not unpickled a second time.
    import regenwatch.pipelines.dofns as dofns
    import regenwatch.pipelines.moderate as moderate

    loads = []
    real_load = moderate.load_model

    def counting_load(*args, **kwargs):
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(moderate, "load_model", counting_load)
    monkeypatch.setattr(dofns, "load_model", counting_load)
    result = run(["--input", SEED_INPUT, "--output", str(tmp_path), "--model", small_model_uri])
    assert result.summary.decided == 5
    assert len(loads) == 1
    assert not dofns._VERIFIED, "the launcher's model is not kept after the run"


def test_reused_model_is_refused_when_the_manifest_changed_since_submission(small_model_uri):
    from regenwatch.models.artifact import ModelLoadError, load_model
    from regenwatch.pipelines import dofns

    loaded = load_model(small_model_uri)
    with dofns.verified_model(small_model_uri, loaded):
        assert dofns._reuse_verified(small_model_uri, loaded.manifest["sha256"]) is loaded
        # Another digest than the manifest's (a model promoted since submission): refused.
        with pytest.raises(ModelLoadError, match="changed since the run was submitted"):
            dofns._VERIFIED[(dofns.resolve_model_uri(small_model_uri), "0" * 64)] = loaded
            dofns._reuse_verified(small_model_uri, "0" * 64)
    dofns._VERIFIED.clear()
    assert dofns._reuse_verified(small_model_uri, loaded.manifest["sha256"]) is None
