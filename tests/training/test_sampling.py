"""regenwatch sample --uncertain: the decided pages nearest the threshold, in the labeling format."""
import gzip
import hashlib
import json

import pytest

from regenwatch.cli import main as cli_main
from regenwatch.training.data_io import load_sample_set, read_jsonl
from regenwatch.training.sampling import find_pages, run_threshold, select_uncertain
from tests.review_pages import write_avro, write_jsonl

PROCESSED = 1_700_000_000_000


def _sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _decision(page_id, text, score, threshold=0.4):
    flagged = score >= threshold
    return {"id": page_id, "url": None, "score": score, "flagged": flagged,
            "severity": "medium" if flagged else None, "model_version": "m7",
            "content_sha256": _sha(text), "processed_at": PROCESSED}


def _flagged(decision, threshold=0.4):
    return {"id": decision["id"], "url": None, "fetched_at": None, "score": decision["score"],
            "threshold": threshold, "severity": "medium", "categories": ["efficacy_proof"], "rationale": [],
            "signals": [], "model_version": "m7", "content_sha256": decision["content_sha256"],
            "processed_at": PROCESSED}


@pytest.fixture
def run_dir(tmp_path):
    """A run at threshold 0.4: decisions, flagged records, and its input pages (one gzipped)."""
    texts = {f"p{i}": f"Page number {i} about exosome clinics." for i in range(8)}
    texts["dup"] = texts["p3"]  # exact duplicate content under another id
    scores = {"p0": 0.05, "p1": 0.38, "p2": 0.95, "p3": 0.43, "p4": 0.41, "p5": 0.7, "p6": 0.2,
              "p7": 0.39, "dup": 0.43}
    decisions = [_decision(i, texts[i], scores[i]) for i in sorted(texts)]
    out = tmp_path / "out"
    out.mkdir()
    write_avro(str(out / "decisions-00000-of-00001.avro"), "decision", decisions)
    write_avro(str(out / "flagged-00000-of-00001.avro"), "flagged", [_flagged(d) for d in decisions if d["flagged"]])
    rows = [{"id": i, "content": texts[i], "url": f"https://x.example/{i}"} for i in sorted(texts)]
    write_jsonl(tmp_path / "in" / "a.jsonl", rows[:4])
    with gzip.open(tmp_path / "in" / "b.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write("not json\n")  # a dead letter in the run: skipped here
        for row in rows[4:]:
            handle.write(json.dumps(row) + "\n")
    return tmp_path, decisions


def test_select_uncertain_orders_by_distance_and_skips_duplicate_content(run_dir):
    _, decisions = run_dir
    picked = select_uncertain(decisions, 4, 0.4)
    # |0.41-0.4|=.01, |0.39-0.4|=.01 (id order), |0.38-0.4|=.02, then 0.43 for dup/p3: one of them.
    assert [d["id"] for d in picked] == ["p4", "p7", "p1", "dup"]
    # Streaming in small chunks gives the same answer, whatever the order.
    for chunk in (1, 2, 3):
        assert select_uncertain(iter(decisions[::-1]), 4, 0.4, chunk=chunk) == picked
    assert select_uncertain(decisions, 0, 0.4) == []
    assert len(select_uncertain(decisions, 100, 0.4)) == len(decisions) - 1
    with pytest.raises(ValueError):
        select_uncertain(decisions, -1, 0.4)


def test_run_threshold_from_flagged_records():
    assert run_threshold([{"threshold": 0.4}, {"threshold": 0.4}]) == 0.4
    assert run_threshold([]) is None
    with pytest.raises(ValueError):
        run_threshold([{"threshold": 0.4}, {"threshold": 0.5}])


def test_sample_command_writes_labeling_rows_joined_with_the_inputs(run_dir):
    tmp, decisions = run_dir
    out = str(tmp / "to_label.jsonl")
    code = cli_main(["sample", "--uncertain", "3", "--pages", str(tmp / "in" / "*"), "--out", out,
                     str(tmp / "out")])
    assert code == 0
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["p4", "p7", "p1"]
    by_id = {d["id"]: d for d in decisions}
    for r in rows:
        assert r["label"] is None and r["categories"] == [] and r["evidence"] == []
        assert r["text"] == f"Page number {r['id'][1:]} about exosome clinics."
        assert r["content_sha256"] == by_id[r["id"]]["content_sha256"]
        assert r["score"] == by_id[r["id"]]["score"] and "threshold 0.4000" in r["notes"]
        assert {"id", "source_url", "kind", "title", "text", "label", "severity", "categories",
                "evidence", "notes"} <= set(r)
    # Unlabeled rows cannot slip into training: the sample-set loader refuses label null.
    with pytest.raises(ValueError, match="label must be 0 or 1"):
        load_sample_set([out])


def test_sample_reports_pages_missing_from_the_inputs(run_dir):
    tmp, _ = run_dir
    out = str(tmp / "partial.jsonl")
    code = cli_main(["sample", "--uncertain", "3", "--pages", str(tmp / "in" / "a.jsonl"), "--out", out,
                     str(tmp / "out")])
    assert code == 1  # p4 and p7 live in the other file
    assert [r["id"] for r in read_jsonl(out)] == ["p1"]
    assert cli_main(["sample", str(tmp / "out"), "--uncertain", "3", "--pages", str(tmp / "nothing*.jsonl")]) == 2


def test_find_pages_keeps_only_the_wanted_pages_and_checks_content(run_dir):
    tmp, decisions = run_dir
    wanted = {("p5", decisions[6]["content_sha256"]), ("p2", "0" * 64)}
    found = find_pages([str(tmp / "in" / "*")], wanted)
    assert list(found) == [("p5", decisions[6]["content_sha256"])]
    assert found[("p5", decisions[6]["content_sha256"])].url == "https://x.example/p5"
