"""Page-level metrics and threshold choice (pure functions)."""
from __future__ import annotations

import re
from typing import Dict, Optional

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve


def threshold_for_recall(y, scores, min_recall: float = 0.90) -> float:
    """The threshold with the highest precision among those whose recall is >= min_recall.

    A review queue's operating point: reviewers are there to catch the pages,
    so recall is the floor and precision is what the threshold buys. Among
    thresholds of equal precision the highest is taken. recall only falls as
    the threshold rises, so the floor always admits the lowest score.
    """
    y = np.asarray(y)
    scores = np.asarray(scores, dtype=float)
    precision, recall, thresholds = precision_recall_curve(y, scores)
    precision, recall = precision[:-1], recall[:-1]
    ok = recall >= min_recall
    best = precision[ok].max()
    candidates = thresholds[ok & (precision == best)]
    return float(round(candidates.max(), 4))


def _score_bins(scores: np.ndarray, bins: int):
    """(edges, bin index of each score) of equal-width score bins over [0, 1]."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return edges, np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)


def calibration_table(y, scores, bins: int = 10):
    """Per score bin: pages, mean score, share flagged by the labels (the calibration plot's points)."""
    y = np.asarray(y, dtype=float)
    scores = np.asarray(scores, dtype=float)
    edges, idx = _score_bins(scores, bins)
    out = []
    for b in range(bins):
        mask = idx == b
        if mask.any():
            out.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "pages": int(mask.sum()),
                        "mean_score": round(float(scores[mask].mean()), 4),
                        "positive_share": round(float(y[mask].mean()), 4)})
    return out


def pr_points(y, scores, thresholds=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)):
    """Precision and recall at a few thresholds: the PR curve as a table an operator can read."""
    y = np.asarray(y, dtype=int)
    scores = np.asarray(scores, dtype=float)
    out = []
    for t in thresholds:
        pred = scores >= t
        tp = int((pred & (y == 1)).sum())
        fp = int((pred & (y == 0)).sum())
        out.append({"threshold": t, "precision": round(tp / (tp + fp), 4) if tp + fp else None,
                    "recall": round(tp / max(int(y.sum()), 1), 4), "flagged": int(pred.sum())})
    return out


def expected_calibration_error(y, scores, bins: int = 10) -> float:
    y = np.asarray(y, dtype=float)
    scores = np.asarray(scores, dtype=float)
    _, idx = _score_bins(scores, bins)
    ece = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            ece += mask.mean() * abs(scores[mask].mean() - y[mask].mean())
    return float(ece)


def metrics_where(y, scores, mask, threshold: float) -> Optional[Dict[str, float]]:
    """page_metrics of the pages in mask (boolean array), or None when it holds none."""
    return page_metrics(y[mask], scores[mask], threshold) if mask.any() else None


def metrics_by_group(y, scores, groups, threshold: float, mask=None) -> Dict[str, Dict[str, float]]:
    """page_metrics per value of groups (a language, say) among the masked pages, largest group first
    (ties by value)."""
    y, scores, groups = np.asarray(y), np.asarray(scores), np.asarray(groups)
    mask = np.ones(len(y), bool) if mask is None else np.asarray(mask)
    out = {}
    values, counts = np.unique(groups[mask], return_counts=True)
    for value in values[np.argsort(-counts, kind="stable")]:
        m = mask & (groups == value)
        out[str(value)] = page_metrics(y[m], scores[m], threshold)
    return out


def page_metrics(y, scores, threshold: float) -> Dict[str, float]:
    y = np.asarray(y, dtype=int)
    scores = np.asarray(scores, dtype=float)
    pred = scores >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "pages": int(len(y)),
        "positives": int(y.sum()),
        "threshold": float(threshold),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "pr_auc": round(float(average_precision_score(y, scores)), 4) if 0 < y.sum() < len(y) else None,
        "ece": round(expected_calibration_error(y, scores), 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


_ENGLISH_FUNCTION_WORDS = frozenset("the and of to is with for that are in it this your our".split())
_LATIN_WORD = re.compile(r"[a-z]+")


def is_english(text: str) -> bool:
    """Rough language check: English function words make up >= 8% of Latin-letter words.

    Used to pick the decision threshold on the pages the sentence models were
    built for (most claim sentences in the sample set are English); it is a
    reporting/threshold aid, never a feature of the model.
    """
    words = _LATIN_WORD.findall(text.lower())
    if not words:
        return False
    return sum(1 for w in words if w in _ENGLISH_FUNCTION_WORDS) / len(words) >= 0.08
