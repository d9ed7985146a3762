"""Retraining: fit the classifier on the labeled sample set, measure, save.

``regenwatch train`` runs :func:`train_command`. It is seeded and
deterministic: the same data and seed give the same artifact hash-for-hash
manifest figures.

Measurement is cross-validated over pages (the whole stacked model is refit
inside each fold, with the standalone labeled sentences always in training).
Every figure that decides anything is on real pages (rewritten from real web
pages: training/data/real/ and the seeds; not the authored pages): the
decision threshold is the review queue's operating point, the highest
precision with recall >= 0.90 on the real pages' out-of-fold scores. The
real held-out split (training/heldout/real/) is never read here: measure it
with ``regenwatch evaluate --data training/heldout/real/*.jsonl``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import StratifiedKFold

from regenwatch.models.artifact import default_model_path, save_model
from regenwatch.models.classifier import ClaimModel, _Analysis, label_sentences
from regenwatch.models.text import normalize_page
from regenwatch.training.data_io import SampleSet, load_sample_set, read_jsonl, validate_page_row
from regenwatch.training.evaluate import (
    error_list,
    evaluate_rows,
    format_report,
    merge_counts,
    rationale_report,
    recall_by_kind,
    sentence_counts,
    sentence_report,
)
from regenwatch.training.feedback import apply_feedback
from regenwatch.training.metrics import (calibration_table, metrics_by_group, metrics_where, page_metrics, pr_points,
                                         threshold_for_recall)
from regenwatch.training.split import page_language

# The review queue's operating point: recall first (POLICY.md: reviewers are
# there to catch the pages), then the most precise threshold that keeps it.
MIN_RECALL = 0.90
# One repeat by default, so that training stays under a minute on 2 cores
# (30 s on the 598-page set); each further repeat adds about as much again.
# The shipped model is trained with 2 (README): over fold seeds 0-2 its
# threshold moved by 0.023 instead of 0.079.
DEFAULT_CV_REPEATS = 1


def _fit_model(pages, rows, y, sentences, idx, random_state, params, analysis=None) -> ClaimModel:
    """A ClaimModel fitted on the pages idx (and every standalone labeled sentence).

    analysis: the whole sample set's text analysis (shared_analysis), or None.
    """
    return ClaimModel(random_state=random_state, **params).fit(
        [pages[i] for i in idx], y[idx],
        evidence=[rows[i].get("evidence") or [] for i in idx],
        kinds=[rows[i].get("kind") for i in idx], extra_sentences=sentences,
        analysis=analysis.subset(idx) if analysis is not None else None)


def shared_analysis(pages, rows, sentences, params):
    """The text analysis of every page, sentence row and standalone sentence, for all folds to share.

    Analysis (tokenizing and counting n-grams) is a fifth of a fit and does
    not depend on the fold; done once, the six fits of a training run save
    about 2 CPU-s each.
    """
    model = ClaimModel(**params)
    texts = [s for page, row in zip(pages, rows)
             for s, _ in label_sentences(page, int(row["label"]), row.get("evidence"))]
    return _Analysis.for_model(model, pages, texts + [s for s, _ in sentences])


def _fold(pages, rows, y, sentences, train_idx, test_idx, random_state, params, analysis=None, repeat=0):
    """Fit on one fold's training pages; score and sentence-count its test pages."""
    model = _fit_model(pages, rows, y, sentences, train_idx, random_state, params, analysis)
    test_pages = [pages[i] for i in test_idx]
    counts = sentence_counts(model, test_pages, [rows[i] for i in test_idx])
    # Threshold 0: every page gets the rationale a flagged page gets, since
    # the threshold the report measures it at is chosen only after the folds.
    return test_idx, model.score_pages(test_pages, threshold=0.0), counts, repeat


def _cross_validate(sample: SampleSet, pages, n_folds: int, random_state: int, params: dict, n_jobs: int,
                    repeats: int = 1):
    """Out-of-fold PageScores per repeat, sentence counts (summed over repeats), and the final model.

    Repeat r splits the pages with seed random_state + r and fits its fold
    models with that seed; every fit of every repeat runs in one pool. The
    standalone labeled sentences stay in every fold's training set: they
    belong to no page, so they cannot leak a held-out page's label.
    """
    y = np.array([p["label"] for p in sample.pages])
    analysis = shared_analysis(pages, sample.pages, sample.sentences, params)
    tasks = []
    for r in range(repeats):
        folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_state + r)
        tasks += [delayed(_fold)(pages, sample.pages, y, sample.sentences, train_idx, test_idx, random_state + r,
                                 params, analysis, r)
                  for train_idx, test_idx in folds.split(np.zeros(len(y)), y)]
    # The final fit does not depend on the cross-validated figures (only the
    # decision threshold does, and it is not used in fitting), so it runs
    # beside the folds: with one repeat, 6 equal tasks on 2 processes instead
    # of 5 tasks (the last one alone) and then the final fit alone.
    tasks.insert(0, delayed(_fit_model)(pages, sample.pages, y, sample.sentences, np.arange(len(y)),
                                        random_state, params, analysis))
    results = Parallel(n_jobs=n_jobs)(tasks)
    final = results.pop(0)
    outs = [[None] * len(y) for _ in range(repeats)]
    counts: Dict[str, List[int]] = {}
    for test_idx, scores, fold_counts, r in results:
        merge_counts(counts, fold_counts)
        for i, score in zip(test_idx, scores):
            outs[r][i] = score
    return outs, counts, final


def seed_decisions(rows: Sequence[dict], scores, threshold: float) -> Dict[str, Dict]:
    """Decisions on the policy's seed pages (kind 'seed') against their labels."""
    out = {}
    for row, score in zip(rows, scores):
        if row.get("kind") == "seed":
            flagged = score.score >= threshold
            out[row["id"]] = {"label": int(row["label"]), "score": round(score.score, 4), "flagged": flagged,
                              "as_policy_says": flagged == bool(row["label"])}
    return out


def train(sample: SampleSet, n_folds: int = 5, random_state: int = 0, params: Optional[dict] = None,
          min_recall: float = MIN_RECALL, n_jobs: int = 2, cv_repeats: int = 1) -> Dict:
    """Cross-validate, choose the threshold, fit the final model; returns model and report.

    The threshold is the review queue's operating point, chosen on real pages
    only (sample.origins): the highest precision with recall >= min_recall on
    their out-of-fold scores. Authored pages train the model but are neither
    the measure nor the basis of the threshold: their scores sit higher than
    real pages' (written pages are easier), and a threshold chosen on them
    cut recall on the web.

    cv_repeats: how many times cross-validation is run, each with its own
    fold seed (random_state, random_state + 1, ...). The threshold and every
    cross-validated figure are computed on the out-of-fold scores of all
    repeats pooled; the error list and the seeds' decisions are the first
    repeat's.
    """
    params = dict(params or {})
    started = time.perf_counter()
    pages = [normalize_page(p["text"]) for p in sample.pages]
    y1 = np.array([p["label"] for p in sample.pages])
    outs, counts, model = _cross_validate(sample, pages, n_folds, random_state, params, n_jobs, repeats=cv_repeats)
    oof = [score for out in outs for score in out]
    rows = list(sample.pages) * cv_repeats
    y = np.tile(y1, cv_repeats)
    oof_scores = np.array([s.score for s in oof])
    real1 = sample.real_mask() if len(sample.origins) == len(sample.pages) else np.ones(len(y1), bool)
    real = np.tile(real1, cv_repeats)
    # Fall back to every page only when there are no real pages of both labels (tests' tiny sets).
    basis = real if real.any() and 0 < y[real].sum() < real.sum() else np.ones(len(y), bool)
    threshold = threshold_for_recall(y[basis], oof_scores[basis], min_recall)
    model.set_params(threshold=threshold)
    langs = np.tile(np.array([page_language(p) for p in sample.pages]), cv_repeats)
    english = langs == "en"
    real_rows = [r for r, m in zip(rows, real) if m]
    real_oof = [x for x, m in zip(oof, real) if m]
    report = {
        "threshold": threshold,
        "threshold_rule": (f"highest precision with recall >= {min_recall} on the out-of-fold scores of real "
                           "pages" + (f", {cv_repeats} cross-validation repeats pooled" if cv_repeats > 1 else "")),
        "cv_folds": n_folds,
        "cv_repeats": cv_repeats,
        "page_real": page_metrics(y[real], oof_scores[real], threshold),
        "page_real_english": metrics_where(y, oof_scores, real & english, threshold),
        "page_real_other_languages": metrics_where(y, oof_scores, real & ~english, threshold),
        "page_authored": metrics_where(y, oof_scores, ~real, threshold),
        "page": page_metrics(y, oof_scores, threshold),
        "real_by_language": metrics_by_group(y, oof_scores, langs, threshold, mask=real),
        "real_recall_by_kind": recall_by_kind(real_rows, real_oof, threshold),
        "real_pr_points": pr_points(y[real], oof_scores[real]),
        "real_calibration": calibration_table(y[real], oof_scores[real]),
        "rationale": rationale_report(real_rows, real_oof, threshold),
        "sentence": sentence_report(counts),
        "seeds_out_of_fold": seed_decisions(sample.pages, outs[0], threshold),
        "errors": error_list(sample.pages, outs[0], threshold),
    }
    if cv_repeats > 1:
        for key in ("page", "page_real", "page_real_english", "page_real_other_languages", "page_authored"):
            if report[key]:
                report[key] = _per_repeat(report[key], cv_repeats)
    report["seconds"] = round(time.perf_counter() - started, 2)
    return {"model": model, "threshold": threshold, "report": report, "oof_scores": oof_scores[basis],
            "y": y[basis]}


def _per_repeat(metrics: Dict, repeats: int) -> Dict:
    """Pooled page metrics with the counts given per repeat: pages and positives as in the
    sample set, tp/fp/fn as means over the repeats (the rates are the pooled ones)."""
    out = dict(metrics, repeats=repeats)
    out["pages"], out["positives"] = metrics["pages"] // repeats, metrics["positives"] // repeats
    for key in ("tp", "fp", "fn"):
        out[key] = round(metrics[key] / repeats, 1)
    return out


def write_model(result: Dict, sample: SampleSet, out_path: str, version: Optional[str] = None) -> Dict:
    version = version or dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")
    report = result["report"]
    meta = {
        "version": version,
        "threshold": result["threshold"],
        "training_data_sha256": sample.sha256(),
        "training_files": [_repo_relative(f) for f in sample.files],
        "training_pages": len(sample.pages),
        "training_sentences": len(sample.sentences),
        "cv_metrics": report["page_real"],
        "cv_metrics_english": report["page_real_english"],
        "cv_metrics_other_languages": report["page_real_other_languages"],
        "cv_metrics_authored": report["page_authored"],
        "cv_metrics_all_pages": report["page"],
        "threshold_rule": report["threshold_rule"],
        "real_pr_points": report["real_pr_points"],
        "cv_rationale": report["rationale"],
        "cv_sentence_f1": {c: v["f1"] for c, v in report["sentence"].items()},
        "params": result["model"].get_params(),
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return save_model(result["model"], out_path, meta)


def _repo_relative(path: str) -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    full = os.path.abspath(path)
    return os.path.relpath(full, root) if full.startswith(root + os.sep) else path


# --------------------------------------------------------------------------
# Promotion

# Two models' figures on ~300 pages differ by noise of about this much; a
# candidate inside the margin is "not worse".
PROMOTE_PR_AUC_MARGIN = 0.01
PROMOTE_F1_MARGIN = 0.02


def promotion_decision(candidate: Dict, current: Optional[Dict], seeds_ok: bool) -> tuple:
    """(promote?, reason) from two page-metric dicts measured the same way."""
    if not seeds_ok:
        return False, "the candidate does not decide every seed page as POLICY.md says"
    if current is None:
        return True, "no shipped model to compare with"
    reasons = []
    for key, margin in (("pr_auc", PROMOTE_PR_AUC_MARGIN), ("f1", PROMOTE_F1_MARGIN)):
        cand, cur = candidate.get(key), current.get(key)
        if cand is None or cur is None:
            continue
        if cand < cur - margin:
            reasons.append(f"{key} {cand:.4f} is worse than the shipped model's {cur:.4f} (margin {margin})")
    if reasons:
        return False, "; ".join(reasons)
    return True, (f"pr_auc {candidate.get('pr_auc')} vs {current.get('pr_auc')}, "
                  f"f1 {candidate.get('f1')} vs {current.get('f1')}")


def promote(candidate_path: str, eval_file: Optional[str], sample: SampleSet, result: Dict) -> tuple:
    """Replace the shipped model with the candidate if it is not worse; returns (done, reason)."""
    from regenwatch.models.artifact import ModelLoadError, load_model, manifest_uri

    shipped = default_model_path()
    candidate = load_model(candidate_path)  # verifies what was just written
    seeds = [p for p in sample.pages if p.get("kind") == "seed"]
    seed_scores = candidate.model.score_pages([normalize_page(p["text"]) for p in seeds])
    seeds_ok = all((s.score >= candidate.model.threshold) == bool(p["label"]) for p, s in zip(seeds, seed_scores))
    try:
        current = load_model(shipped)
    except ModelLoadError:
        current = None
    if eval_file:
        rows = [validate_page_row(r, f"{eval_file}:{i}") for i, r in enumerate(read_jsonl(eval_file), 1)]
        cand_metrics = evaluate_rows(candidate.model, rows)["page"]
        cur_metrics = evaluate_rows(current.model, rows)["page"] if current else None
        basis = f"on {eval_file}"
    else:
        cand_metrics = result["report"]["page"]
        cur_metrics = current.manifest.get("cv_metrics") if current else None
        basis = "on cross-validated figures (give --eval FILE to compare on a held-out set)"
    ok, reason = promotion_decision(cand_metrics, cur_metrics, seeds_ok)
    if not ok:
        return False, f"not promoted {basis}: {reason}"
    for src, dst in ((candidate_path, shipped), (manifest_uri(candidate_path), manifest_uri(shipped))):
        if os.path.abspath(src) != os.path.abspath(dst):
            shutil.copyfile(src, dst)
    return True, f"promoted to {shipped} {basis}: {reason}"


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
    parser.add_argument("--cv-repeats", type=int, default=DEFAULT_CV_REPEATS,
                        help="Run cross-validation this many times with different fold seeds and choose the "
                             "threshold on the pooled out-of-fold scores (a steadier threshold; each repeat "
                             "adds about 30 s on 2 cores; the shipped model used 2).")
    parser.add_argument("--version", default=None, help="Model version string (default: UTC timestamp).")
    parser.add_argument("--report", default=None, help="Write the training report as JSON here.")
    parser.add_argument("--promote", action="store_true",
                        help="Replace the shipped model (models/default/) with the new one, only if it is "
                             "not worse; says why when it refuses (exit code 3).")
    parser.add_argument("--eval", default=None,
                        help="Labeled page file (dev-set format) on which --promote compares the two models; "
                             "without it the cross-validated figures are compared.")
    parser.add_argument("--jobs", type=int, default=2, help="Processes for cross-validation folds.")
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
    if args.cv_repeats < 1:
        raise SystemExit('--cv-repeats must be at least 1')
    result = train(sample, n_folds=args.folds, random_state=args.seed, n_jobs=args.jobs,
                   cv_repeats=args.cv_repeats)
    out = args.out or os.path.join("models", "candidate.joblib")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    manifest = write_model(result, sample, out, version=args.version)
    report = {"artifact": out, "version": manifest["version"], "sha256": manifest["sha256"], **result["report"]}
    report_dir = os.path.dirname(os.path.abspath(args.report or out))
    report["plots"] = _plots(result, report_dir, os.path.splitext(os.path.basename(args.report or out))[0])
    print(format_report(report, f"cross-validated report of model {manifest['version']} "
                                f"({args.folds} folds x {args.cv_repeats}, {report['seconds']} s)"))
    for name in ("page_real", "page_real_english", "page_real_other_languages", "page_authored"):
        m = report.get(name)
        if m:
            print(f"  {name.replace('page_', '').replace('_', ' ')}: {m['pages']} pages, precision {m['precision']:.3f} "
                  f"recall {m['recall']:.3f} F1 {m['f1']:.3f} PR-AUC {m['pr_auc']}")
    print("  real pages, recall by kind: " + ", ".join(
        f"{k} {v['recall']:.2f} ({v['positives']})" for k, v in report["real_recall_by_kind"].items()))
    print("  real pages, out of fold, by threshold (precision/recall/flagged): " + ", ".join(
        f"{p['threshold']}: {p['precision']}/{p['recall']}/{p['flagged']}" for p in report["real_pr_points"]))
    print("  real pages, calibration (bin: pages, mean score, flagged share): " + ", ".join(
        f"{c['bin']}: {c['pages']}, {c['mean_score']}, {c['positive_share']}" for c in report["real_calibration"]))
    print("  real pages by language: " + ", ".join(
        f"{k} {v['pages']}p PR-AUC {v['pr_auc']}" for k, v in list(report["real_by_language"].items())[:12]))
    for seed, d in report["seeds_out_of_fold"].items():
        print(f"  seed {seed}: label {d['label']} score {d['score']} "
              f"{'ok' if d['as_policy_says'] else 'DIFFERS FROM POLICY'} (out of fold)")
    print(f"  artifact {out} (sha256 {manifest['sha256'][:16]}...)")
    if args.report:
        with open(args.report, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, default=str)
    if args.promote:
        done, reason = promote(out, args.eval, sample, result)
        print(reason)
        return 0 if done else 3
    return 0


def _plots(result: Dict, out_dir: str, stem: str) -> List[str]:
    """PR curve and calibration plot beside the report (matplotlib, when installed)."""
    try:
        from regenwatch.training.plots import write_report_plots
    except ImportError:
        return []
    plot_dir = os.path.join(out_dir, f"{stem}-plots")
    return write_report_plots(result["y"], result["oof_scores"], result["threshold"], plot_dir)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return train_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
