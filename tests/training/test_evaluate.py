"""regenwatch evaluate, and the robustness renderings (issue: same decision, score within 0.05)."""
import json

import pytest

from regenwatch.models.artifact import load_model
from regenwatch.models.text import normalize_page
from regenwatch.training import evaluate as ev
from regenwatch.training.data_io import load_sample_set
from regenwatch.training.renderings import RENDERINGS, cyrillic, html_wrap, zero_width


@pytest.fixture(scope="module")
def shipped():
    return load_model("default").model


@pytest.fixture(scope="module")
def english_pages():
    # Held-in pages are fine here: robustness compares a page with its own
    # renderings, not with its label.
    pages = [p for p in load_sample_set().pages if p["text"].isascii() or p.get("kind") == "seed"]
    return pages[::4]


def test_renderings_really_obfuscate():
    text = "Our exosome therapy cures arthritis.\nBook a consultation today."
    assert cyrillic(text) != text and not cyrillic(text).isascii()
    assert "\u200b" in zero_width(text, seed=1) or not zero_width(text).isascii()
    wrapped = html_wrap(text)
    assert "<nav>" in wrapped and "<script>" in wrapped and "cure" in wrapped.split("<main>")[0]
    for render in RENDERINGS.values():
        assert normalize_page(render(text)).sentences == normalize_page(text).sentences


def test_shipped_model_is_robust_to_renderings(shipped, english_pages):
    report = ev.robustness_report(shipped, english_pages)
    for name, r in report.items():
        assert r["same_decision"] == r["pages"], (name, r["outliers"])
        assert r["within_tolerance"] == r["pages"], (name, r["max_abs_score_diff"], r["outliers"])


def test_seeds_decided_as_policy_says(shipped):
    seeds = [p for p in load_sample_set().pages if p.get("kind") == "seed"]
    scores = shipped.score_pages([normalize_page(p["text"]) for p in seeds])
    for page, score in zip(seeds, scores):
        assert (score.score >= shipped.threshold) == bool(page["label"]), (page["id"], score.score)


def test_evaluate_command_report(tmp_path, capsys):
    rows = load_sample_set().pages[:30]
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out_json = tmp_path / "report.json"
    assert ev.main(["--data", str(data), "--json", str(out_json), "--renderings"]) == 0
    text = capsys.readouterr().out
    assert "precision" in text and "sentence-level F1" in text and "rendering cyrillic" in text
    report = json.loads(out_json.read_text())
    assert report["page"]["pages"] == 30
    assert set(report["robustness"]) == set(RENDERINGS)
    assert set(report["sentence"]) >= {"claim", "superiority"}


def test_threshold_for_recall_takes_the_most_precise_threshold_that_keeps_the_recall():
    import numpy as np

    from regenwatch.training.metrics import threshold_for_recall

    y = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    s = np.array([.9, .9, .8, .8, .7, .7, .6, .6, .5, .1, .85, .65, .3, .2])
    # Recall >= 0.9 needs 9 of the 10 positives: the threshold 0.5 (one negative above 0.5 is at .85, one at .65).
    t = threshold_for_recall(y, s, 0.9)
    assert t == 0.5
    assert threshold_for_recall(y, s, 1.0) == 0.1
