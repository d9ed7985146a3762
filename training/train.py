"""Retraining: fit the classifier on the labeled sample set, measure, save.

``regenwatch train`` runs :func:`train_command`. It is seeded and
deterministic: the same data and seed give the same artifact hash-for-hash
manifest figures.

Measurement is cross-validated over pages (the whole stacked model is refit
inside each fold, with the standalone labeled sentences always in training);
the decision threshold is the one with the highest recall at precision >= 0.90
on the out-of-fold scores.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold

from regenwatch.models.artifact import default_model_path, save_model
from regenwatch.models.classifier import ClaimModel
from regenwatch.models.text import normalize_page
from regenwatch.training.data_io import SampleSet, load_sample_set
from regenwatch.training.feedback import apply_feedback
from regenwatch.training.metrics import choose_threshold, page_metrics

TARGET_PRECISION = 0.90


def cross_validated_scores(sample: SampleSet, pages, n_folds: int, random_state: int, params: dict) -> np.ndarray:
    y = np.array([p["label"] for p in sample.pages])
    evidence = [p.get("evidence") or [] for p in sample.pages]
    scores = np.zeros(len(y))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    for train_idx, test_idx in folds.split(np.zeros(len(y)), y):
        model = ClaimModel(random_state=random_state, **params).fit(
            [pages[i] for i in train_idx], y[train_idx], evidence=[evidence[i] for i in train_idx],
            extra_sentences=sample.sentences)
        scores[test_idx] = [s.score for s in model.score_pages([pages[i] for i in test_idx])]
    return scores


def train(sample: SampleSet, n_folds: int = 5, random_state: int = 0, params: Optional[dict] = None,
          target_precision: float = TARGET_PRECISION) -> Dict:
    """Fit the final model and its cross-validated report."""
    params = dict(params or {})
    started = time.perf_counter()
    pages = [normalize_page(p["text"]) for p in sample.pages]
    y = np.array([p["label"] for p in sample.pages])
    oof = cross_validated_scores(sample, pages, n_folds, random_state, params)
    threshold = choose_threshold(y, oof, target_precision)
    cv = page_metrics(y, oof, threshold)
    model = ClaimModel(random_state=random_state, threshold=threshold, **params).fit(
        pages, y, evidence=[p.get("evidence") or [] for p in sample.pages], extra_sentences=sample.sentences)
    return {
        "model": model,
        "threshold": threshold,
        "cv_metrics": cv,
        "oof_scores": oof,
        "seconds": round(time.perf_counter() - started, 2),
    }


def write_model(result: Dict, sample: SampleSet, out_path: str, version: Optional[str] = None) -> Dict:
    version = version or dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")
    meta = {
        "version": version,
        "threshold": result["threshold"],
        "training_data_sha256": sample.sha256(),
        "training_files": [os.path.relpath(f, os.path.dirname(os.path.dirname(__file__))) if os.path.isabs(f) else f
                           for f in sample.files],
        "training_pages": len(sample.pages),
        "training_sentences": len(sample.sentences),
        "cv_metrics": result["cv_metrics"],
        "params": result["model"].get_params(),
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return save_model(result["model"], out_path, meta)


def build_parser(parser: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="regenwatch train", description=__doc__)
    parser.add_argument("--data", nargs="*", default=None,
                        help="Labeled files to train on instead of the shipped sample set in training/data/.")
    parser.add_argument("--extra", nargs="*", default=[],
                        help="Additional labeled page or sentence files added to the sample set.")
    parser.add_argument("--out", default=None,
                        help="Artifact path to write (.joblib; the manifest goes beside it). "
                             "Default: models/candidate.joblib in the current directory.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (fold assignment).")
    parser.add_argument("--folds", type=int, default=5, help="Cross-validation folds over pages.")
    parser.add_argument("--version", default=None, help="Model version string (default: UTC timestamp).")
    parser.add_argument("--report", default=None, help="Write the training report as JSON here.")
    parser.add_argument("--feedback", nargs="*", default=[], metavar="VERDICTS",
                        help="Reviewer verdict files (.jsonl/.avro, schemas/verdict.avsc) merged into the "
                             "sample set: a rejected flag becomes a negative, a confirmed one a positive.")
    parser.add_argument("--feedback-pages", nargs="*", default=[], metavar="GLOB",
                        help="The runs' input files holding the pages the verdicts refer to (by id and hash).")
    return parser


def train_command(args: argparse.Namespace) -> int:
    sample = load_sample_set(args.data, extra=args.extra)
    sample = apply_feedback(sample, args.feedback, args.feedback_pages)
    print(f"training on {len(sample.pages)} pages and {len(sample.sentences)} labeled sentences", file=sys.stderr)
    result = train(sample, n_folds=args.folds, random_state=args.seed)
    out = args.out or os.path.join("models", "candidate.joblib")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    manifest = write_model(result, sample, out, version=args.version)
    report = {"artifact": out, "version": manifest["version"], "threshold": result["threshold"],
              "cv_metrics": result["cv_metrics"], "seconds": result["seconds"]}
    if args.report:
        with open(args.report, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    print(json.dumps(report, indent=2))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return train_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
