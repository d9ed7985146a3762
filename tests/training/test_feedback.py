"""Verdicts into training: schema checks, merging, and a rejected false positive unflagged by retraining."""
import glob
import json
import os

import fastavro
import numpy as np
import pytest

from regenwatch.cli import main as cli_main
from regenwatch.models.classifier import ClaimModel
from regenwatch.models.text import normalize_page
from regenwatch.schemas import load_schema
from regenwatch.training.data_io import load_sample_set, read_jsonl
from regenwatch.training.feedback import (
    FeedbackError,
    append_verdicts,
    apply_feedback,
    content_sha256,
    latest_verdicts,
    make_verdict,
    merge_feedback,
    read_verdicts,
    validate_verdict,
)
from tests.conftest import REPO
from tests.review_pages import tiny_training_files, write_jsonl

TRAIN_PAGES = os.path.join(REPO, "training", "data", "real", "train_pages.jsonl")
AUTHORED = os.path.join(REPO, "training", "data", "authored")
N_SAMPLE = 60
THRESHOLD = 0.5
# Retraining on one more page reshuffles the stacking folds, which moves other
# pages' scores by up to ~0.09 on this sample set (measured; the verdict is
# not the cause). A page decided within this margin may flip either way, so
# "nothing else changes decision" is checked on the pages decided with margin.
RETRAIN_NOISE = 0.1


def _flagged(page_id, text, categories=("disease_treatment",), **extra):
    return {"id": page_id, "content_sha256": content_sha256(text), "categories": list(categories),
            "model_version": "m1", **extra}


# --------------------------------------------------------------------------
# Verdict records


def test_verdict_schema_and_checks():
    v = make_verdict(_flagged("p", "text"), "confirm", "alice", decided_at=1)
    assert v["categories"] == ["disease_treatment"] and v["note"] is None and v["cluster_id"] is None
    assert make_verdict(_flagged("p", "t", cluster_id="c1", cluster_size=3), "reject", "bob")["cluster_id"] == "c1"
    assert make_verdict(_flagged("p", "t"), "reject", "bob")["categories"] == []
    load_schema("verdict")
    with pytest.raises(FeedbackError, match="unknown categories"):
        make_verdict(_flagged("p", "t"), "confirm", "alice", categories=["miracles"])
    with pytest.raises(FeedbackError):
        make_verdict(_flagged("p", "t"), "maybe", "alice")
    with pytest.raises(FeedbackError, match="no categories"):
        validate_verdict({**v, "verdict": "reject"})
    with pytest.raises(FeedbackError, match="not a valid verdict"):
        validate_verdict({k: x for k, x in v.items() if k != "content_sha256"})
    with pytest.raises(FeedbackError, match="reviewer is empty"):
        validate_verdict({**v, "reviewer": " "})


def test_verdict_files_jsonl_and_avro_and_latest_wins(tmp_path):
    first = make_verdict(_flagged("p", "text"), "confirm", "alice", decided_at=1000)
    later = make_verdict(_flagged("p", "text"), "reject", "bob", decided_at=2000)
    jsonl = str(tmp_path / "v.jsonl")
    append_verdicts(jsonl, [later])
    append_verdicts(jsonl, [first])  # appended after, but decided earlier
    avro = str(tmp_path / "v.avro")
    with open(avro, "wb") as handle:
        fastavro.writer(handle, load_schema("verdict"), [first])
    got = read_verdicts([jsonl, avro])
    assert len(got) == 3 and got[2]["decided_at"] == 1000
    [only] = latest_verdicts(got).values()
    assert only["verdict"] == "reject" and only["reviewer"] == "bob"
    (tmp_path / "bad.jsonl").write_text('{"id": "p"\n')
    with pytest.raises(FeedbackError, match="bad.jsonl:1"):
        read_verdicts([str(tmp_path / "bad.jsonl")])


# --------------------------------------------------------------------------
# Merging


def _sample(tmp_path, rows):
    return load_sample_set([write_jsonl(tmp_path / "pages.jsonl", rows)])


def test_merge_relabels_sample_pages_in_place_and_adds_new_ones(tmp_path):
    known = {"id": "s1", "text": "Our stem cells cure arthritis.", "label": 1, "severity": "high",
             "categories": ["disease_treatment"],
             "evidence": [{"sentence": "Our stem cells cure arthritis.", "category": "disease_treatment"}]}
    other = {"id": "s2", "text": "The FDA warns about clinics.", "label": 0, "severity": None,
             "categories": [], "evidence": []}
    sample = _sample(tmp_path, [known, other])
    new_text = "Exosomes reverse aging in weeks."
    verdicts = [make_verdict(_flagged("run-7", known["text"]), "reject", "alice", note="quoted claim"),
                make_verdict(_flagged("run-9", new_text), "confirm", "alice", categories=["age_reversal"])]
    merged, summary = merge_feedback(sample, verdicts, {("run-9", content_sha256(new_text)): new_text})
    assert summary == {"verdicts": 2, "confirm": 1, "reject": 1, "relabeled": 1, "added": 1}
    s1 = merged.pages[0]
    assert (s1["label"], s1["categories"], s1["evidence"], s1["severity"]) == (0, [], [], None)
    assert "reject by alice: quoted claim" in s1["notes"]
    assert merged.pages[1] == other
    added = merged.pages[2]
    assert (added["label"], added["categories"], added["severity"], added["text"]) == (
        1, ["age_reversal"], "medium", new_text)
    assert sample.pages[0]["label"] == 1, "the input sample set is not modified"


def test_merge_refuses_verdicts_whose_page_is_missing_or_changed(tmp_path):
    sample = _sample(tmp_path, [{"id": "s", "text": "x y z", "label": 0, "evidence": []}])
    v = make_verdict(_flagged("gone", "the page as reviewed"), "reject", "alice")
    with pytest.raises(FeedbackError, match="1 verdicts refer to pages"):
        merge_feedback(sample, [v], {})
    with pytest.raises(FeedbackError, match="does not match"):
        merge_feedback(sample, [v], {("gone", v["content_sha256"]): "the page as re-scraped"})


def test_apply_feedback_finds_pages_in_run_inputs_and_hashes_the_verdicts(tmp_path):
    sample = _sample(tmp_path, [{"id": "s", "text": "x y z", "label": 0, "evidence": []}])
    text = "Stem cell therapy cures diabetes, guaranteed."
    inputs = write_jsonl(tmp_path / "run" / "in.jsonl", [
        {"id": "other", "content": "unrelated page"}, {"id": "run-1", "content": text}])
    verdicts = str(tmp_path / "v.jsonl")
    append_verdicts(verdicts, [make_verdict(_flagged("run-1", text), "reject", "alice")])
    merged = apply_feedback(sample, [verdicts], [str(tmp_path / "run" / "*.jsonl")])
    assert [p["id"] for p in merged.pages] == ["s", "feedback:run-1"]
    assert merged.pages[1]["text"] == text and merged.pages[1]["label"] == 0
    assert os.path.abspath(verdicts) in merged.files and merged.sha256() != sample.sha256()
    assert apply_feedback(sample, [], [inputs]) is sample


# --------------------------------------------------------------------------
# Retraining with a rejected false positive


def _fit(sample):
    pages = [normalize_page(p["text"]) for p in sample.pages]
    model = ClaimModel(n_inner_folds=3, threshold=THRESHOLD).fit(
        pages, [p["label"] for p in sample.pages], evidence=[p.get("evidence") or [] for p in sample.pages],
        extra_sentences=sample.sentences)
    return model, pages


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory):
    """60 labeled pages and a third of the authored sentences; the other pages are held out."""
    tmp = tmp_path_factory.mktemp("feedback-sample")
    rows = read_jsonl(TRAIN_PAGES)
    sentences = [r for path in sorted(glob.glob(os.path.join(AUTHORED, "sentences_*.jsonl")))
                 for r in read_jsonl(path)][::3]
    files = [write_jsonl(tmp / "pages.jsonl", rows[:N_SAMPLE]), write_jsonl(tmp / "sentences.jsonl", sentences)]
    return tmp, files, rows[N_SAMPLE:]


def test_rejected_false_positive_is_not_flagged_after_retraining(small_sample, capsys):
    tmp, files, held_out = small_sample
    sample = load_sample_set(files)
    base, pages = _fit(sample)
    base_scores = np.array([s.score for s in base.score_pages(pages)])

    # The false positive: the held-out unflagged-by-policy page the model flags most confidently.
    negatives = [r for r in held_out if r["label"] == 0]
    neg_scores = [s.score for s in base.score_pages([normalize_page(r["text"]) for r in negatives])]
    best = int(np.argmax(neg_scores))
    fp, fp_score = negatives[best], neg_scores[best]
    assert fp_score >= THRESHOLD, "the small model flags no held-out negative page: no false positive to test"

    # It arrives in a run's input, is flagged, and a reviewer rejects the flag.
    write_jsonl(tmp / "run" / "in.jsonl", [{"id": "scraped-1", "content": "another page entirely"},
                                          {"id": "scraped-fp", "content": fp["text"], "url": fp.get("source_url")}])
    verdicts = str(tmp / "verdicts.jsonl")
    append_verdicts(verdicts, [make_verdict(_flagged("scraped-fp", fp["text"]), "reject", "alice",
                                            note="reports on clinics, makes no claim")])
    merged = apply_feedback(sample, [verdicts], [str(tmp / "run" / "*.jsonl")])
    assert len(merged.pages) == len(sample.pages) + 1 and merged.pages[-1]["label"] == 0

    after, _ = _fit(merged)
    [fp_after] = after.score_pages([normalize_page(fp["text"])])
    after_scores = np.array([s.score for s in after.score_pages(pages)])

    assert fp_after.score < THRESHOLD, f"still flagged after the reject verdict: {fp_after.score:.3f}"
    clear = np.abs(base_scores - THRESHOLD) >= RETRAIN_NOISE
    changed = [(sample.pages[i]["id"], round(base_scores[i], 3), round(after_scores[i], 3))
               for i in np.flatnonzero(clear & ((base_scores >= THRESHOLD) != (after_scores >= THRESHOLD)))]
    assert changed == [], f"other pages changed decision: {changed}"
    with capsys.disabled():
        print(f"\nfalse positive {fp['id']} ({fp.get('kind')}): {fp_score:.3f} -> {fp_after.score:.3f}; "
              f"{int(clear.sum())}/{len(clear)} sample pages decided with margin >= {RETRAIN_NOISE}, none changed; "
              f"largest score move {np.abs(after_scores - base_scores).max():.3f}; "
              f"borderline flips {int(((base_scores >= THRESHOLD) != (after_scores >= THRESHOLD)).sum())}")


def test_train_command_merges_feedback_into_the_artifact(small_sample, tmp_path):
    _, _, held_out = small_sample
    # The wiring only: a tiny sample set keeps the three fits of --folds 2 quick.
    tiny, files = tiny_training_files(tmp_path)
    page = next(r for r in held_out if r["label"] == 0)
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"id": "scraped-2", "content": page["text"]}])
    verdicts = str(tmp_path / "verdicts.jsonl")
    append_verdicts(verdicts, [make_verdict(_flagged("scraped-2", page["text"]), "reject", "alice")])
    out = str(tmp_path / "model.joblib")
    code = cli_main(["train", "--data", *files, "--feedback", verdicts, "--feedback-pages", inputs,
                     "--folds", "2", "--out", out, "--version", "fb-test"])
    assert code == 0
    with open(out[: -len(".joblib")] + ".manifest.json", encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert manifest["training_pages"] == len(tiny) + 1
    assert any(f.endswith("verdicts.jsonl") for f in manifest["training_files"])

    missing = str(tmp_path / "missing.jsonl")
    append_verdicts(missing, [make_verdict(_flagged("nowhere", "not in any input"), "reject", "alice")])
    assert cli_main(["train", "--data", *files, "--feedback", missing, "--feedback-pages", inputs,
                     "--out", out]) == 2
