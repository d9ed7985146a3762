"""regenwatch train: report, determinism, promotion gate (small real trainings)."""
import json
import os

import pytest

from regenwatch.models.artifact import load_model
from regenwatch.training import train as train_mod
from regenwatch.training.data_io import SampleSet, load_sample_set


@pytest.fixture(scope="module")
def small_sample():
    full = load_sample_set()
    seeds = [p for p in full.pages if p.get("kind") == "seed"]
    others = [p for p in full.pages if p.get("kind") != "seed"][::4]
    return SampleSet(pages=seeds + others, sentences=full.sentences[::4], files=full.files)


def test_train_report_and_determinism(small_sample, tmp_path):
    a = train_mod.train(small_sample, n_folds=3, n_jobs=1)
    b = train_mod.train(small_sample, n_folds=3, n_jobs=1)
    rep = a["report"]
    assert 0.0 <= rep["threshold"] <= 1.0
    for key in ("precision", "recall", "f1", "pr_auc", "ece"):
        assert rep["page"][key] is not None
    assert set(rep["sentence"]) >= {"claim", "disease_treatment", "age_reversal"}
    assert len(rep["seeds_out_of_fold"]) == 5
    m1 = train_mod.write_model(a, small_sample, str(tmp_path / "a.joblib"), version="v")
    m2 = train_mod.write_model(b, small_sample, str(tmp_path / "b.joblib"), version="v")
    # Same data and seed: the same model, byte for byte.
    assert m1["sha256"] == m2["sha256"]
    loaded = load_model(str(tmp_path / "a.joblib"))
    assert loaded.manifest["training_data_sha256"] == small_sample.sha256()
    assert loaded.manifest["cv_metrics"]["pr_auc"] == rep["page"]["pr_auc"]
    assert loaded.model.threshold == rep["threshold"]


def test_promotion_decision_rules():
    cur = {"pr_auc": 0.90, "f1": 0.80}
    assert train_mod.promotion_decision({"pr_auc": 0.895, "f1": 0.79}, cur, True)[0]
    ok, why = train_mod.promotion_decision({"pr_auc": 0.85, "f1": 0.80}, cur, True)
    assert not ok and "pr_auc" in why
    ok, why = train_mod.promotion_decision({"pr_auc": 0.95, "f1": 0.70}, cur, True)
    assert not ok and "f1" in why
    ok, why = train_mod.promotion_decision({"pr_auc": 0.99, "f1": 0.99}, cur, False)
    assert not ok and "seed" in why
    assert train_mod.promotion_decision({"pr_auc": 0.5, "f1": 0.5}, None, True)[0]


def test_promote_refuses_worse_and_replaces_better(small_sample, tmp_path, monkeypatch, capsys):
    """Through the CLI: a candidate worse on the evaluation file is refused (exit 3), the shipped files untouched."""
    shipped = tmp_path / "shipped" / "model.joblib"
    shipped.parent.mkdir()
    monkeypatch.setattr(train_mod, "default_model_path", lambda: str(shipped))
    data = tmp_path / "data.jsonl"
    with open(data, "w", encoding="utf-8") as handle:
        for p in small_sample.pages:
            handle.write(json.dumps(p) + "\n")
    sentences = tmp_path / "sentences.jsonl"
    with open(sentences, "w", encoding="utf-8") as handle:
        for text, cats in small_sample.sentences:
            handle.write(json.dumps({"text": text, "label": int(bool(cats)), "categories": cats}) + "\n")
    eval_file = str(data)  # the candidates are judged on the same labeled pages

    # No shipped model yet: the first candidate is promoted.
    args = ["--data", str(data), str(sentences), "--folds", "3", "--jobs", "1", "--version", "good",
            "--out", str(tmp_path / "good.joblib"), "--promote", "--eval", eval_file]
    assert train_mod.main(args) == 0
    assert load_model(str(shipped)).version == "good"
    before = shipped.read_bytes()

    # A candidate trained on shuffled labels is worse: refused, shipped model unchanged.
    bad = tmp_path / "bad.jsonl"
    with open(bad, "w", encoding="utf-8") as handle:
        pages = small_sample.pages
        for i, p in enumerate(pages):
            q = dict(p, label=1 - p["label"], evidence=[], severity=None, categories=[])
            handle.write(json.dumps(q) + "\n")
    args = ["--data", str(bad), "--folds", "3", "--jobs", "1", "--version", "bad",
            "--out", str(tmp_path / "bad.joblib"), "--promote", "--eval", eval_file]
    assert train_mod.main(args) == 3
    out = capsys.readouterr().out
    assert "not promoted" in out
    assert shipped.read_bytes() == before
    assert os.path.exists(tmp_path / "bad.joblib")
