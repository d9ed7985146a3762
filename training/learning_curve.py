"""What more real pages would buy: held-out real-page figures against the share of real training pages.

``python -m regenwatch.training.learning_curve [--fractions 0.25 0.5 0.75 1]``
fits the model on nested, label-stratified shares of the real training pages
(the authored pages and standalone sentences always in), scores the real
held-out split (training/heldout/real/) and prints threshold-free figures:
PR-AUC overall, in English and in other languages, and the best F1. (A
threshold per share would need a cross-validation per share; one fit per
share keeps the curve to a few minutes.)
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve

from regenwatch.models.classifier import ClaimModel
from regenwatch.models.text import normalize_page
from regenwatch.training.data_io import (REAL, SampleSet, heldout_real_files, load_sample_set, read_jsonl,
                                         validate_page_row)
from regenwatch.training.split import page_language

DEFAULT_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def nested_shares(labels: Sequence[int], fractions: Sequence[float], seed: int = 0) -> List[np.ndarray]:
    """Indices of nested, label-stratified shares: each share contains the smaller ones."""
    rng = np.random.RandomState(seed)
    labels = np.asarray(labels)
    orders = {c: rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}
    out = []
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError("fractions must be in (0, 1]")
        idx = np.concatenate([o[: max(1, int(round(f * len(o))))] for o in orders.values()])
        out.append(np.sort(idx))
    return out


def _figures(y, scores, english) -> Dict:
    y, scores, english = np.asarray(y), np.asarray(scores), np.asarray(english)
    p, r, _ = precision_recall_curve(y, scores)
    out = {"pr_auc": round(float(average_precision_score(y, scores)), 4),
           "best_f1": round(float((2 * p * r / np.maximum(p + r, 1e-12)).max()), 4)}
    for name, m in (("pr_auc_english", english), ("pr_auc_other_languages", ~english)):
        out[name] = round(float(average_precision_score(y[m], scores[m])), 4) if 0 < y[m].sum() < m.sum() else None
    return out


def learning_curve(sample: SampleSet, heldout: Sequence[dict], fractions: Sequence[float] = DEFAULT_FRACTIONS,
                   params: Optional[dict] = None, seed: int = 0) -> List[Dict]:
    """One fit per share of the real training pages; figures on the held-out rows."""
    real = [i for i, o in enumerate(sample.origins) if o == REAL]
    other = [i for i, o in enumerate(sample.origins) if o != REAL]
    shares = nested_shares([sample.pages[i]["label"] for i in real], fractions, seed)
    held_pages = [normalize_page(r["text"]) for r in heldout]
    y = np.array([int(r["label"]) for r in heldout])
    english = np.array([page_language(r) == "en" for r in heldout])
    rows = []
    for f, share in zip(fractions, shares):
        idx = [real[i] for i in share] + other
        pages = [sample.pages[i] for i in idx]
        model = ClaimModel(random_state=seed, **(params or {})).fit(
            [p["text"] for p in pages], [p["label"] for p in pages],
            evidence=[p.get("evidence") or [] for p in pages], kinds=[p.get("kind") for p in pages],
            extra_sentences=sample.sentences)
        scores = np.array([s.score for s in model.score_pages(held_pages)])
        rows.append({"fraction": f, "real_pages": len(share), **_figures(y, scores, english)})
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m regenwatch.training.learning_curve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", type=float, nargs="+", default=list(DEFAULT_FRACTIONS),
                        help="Shares of the real training pages to fit on.")
    parser.add_argument("--heldout", nargs="*", default=None,
                        help="Held-out labeled page files (default: training/heldout/real/*.jsonl).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the shares and of the fits.")
    parser.add_argument("--json", default=None, help="Also write the rows as JSON here.")
    args = parser.parse_args(argv)
    files = args.heldout or heldout_real_files()
    heldout = [validate_page_row(r, f) for f in files for r in read_jsonl(f)]
    rows = learning_curve(load_sample_set(), heldout, args.fractions, seed=args.seed)
    print(f"held-out real pages: {len(heldout)} ({sum(int(r['label']) for r in heldout)} flagged)")
    print("share  real pages  PR-AUC  English  other languages  best F1")
    for r in rows:
        print(f"{r['fraction']:>5.2f}  {r['real_pages']:>10}  {r['pr_auc']:.3f}   {r['pr_auc_english']}    "
              f"{r['pr_auc_other_languages']}           {r['best_f1']:.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
