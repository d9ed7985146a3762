"""``regenwatch evaluate``: the training report for any labeled page file.

The file is in the dev-set format (``id, text, label, severity, categories,
evidence``). The report gives page-level precision, recall, F1 and PR-AUC at
the model's threshold, calibration error, sentence-level per-category F1,
how often a flagged page's rationale quotes a gold evidence sentence and how
often its categories overlap the gold ones, and the seeds' decisions.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from regenwatch.models.artifact import load_model
from regenwatch.models.classifier import CATEGORIES, ClaimModel, label_sentences, quoted_within, severity_for
from regenwatch.models.text import normalize_page, sentence_key
from regenwatch.training.data_io import read_jsonl, validate_page_row
from regenwatch.training.metrics import metrics_by_group, metrics_where, page_metrics


def _f1(tp: int, fp: int, fn: int) -> Dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4),
            "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0, "support": tp + fn}


def sentence_counts(model: ClaimModel, pages, rows) -> Dict[str, List[int]]:
    """Per-category [tp, fp, fn] over the labeled sentences of the pages.

    A sentence is predicted to carry a category when its claim probability
    reaches the model's rationale threshold and the category probability its
    category threshold: the same rule the rationale uses.
    """
    counts = {c: [0, 0, 0] for c in ("claim",) + CATEGORIES}
    texts: List[str] = []
    gold: List[set] = []
    for page, row in zip(pages, rows):
        for sent, cats in label_sentences(page, int(row["label"]), row.get("evidence")):
            texts.append(sent)
            gold.append(set(cats))
    if not texts:
        return counts
    _, probs = model._sentence_probs(model.parts_, texts)
    is_claim = probs[:, 0] >= model.rationale_threshold
    for i, g in enumerate(gold):
        pred = set()
        if is_claim[i]:
            pred.add("claim")
            pred |= {c for k, c in enumerate(CATEGORIES) if probs[i, k + 1] >= model.category_threshold}
        g = set(g) | ({"claim"} if g else set())
        for c in counts:
            if c in pred and c in g:
                counts[c][0] += 1
            elif c in pred:
                counts[c][1] += 1
            elif c in g:
                counts[c][2] += 1
    return counts


def merge_counts(total: Dict[str, List[int]], part: Dict[str, List[int]]) -> None:
    for c, v in part.items():
        acc = total.setdefault(c, [0, 0, 0])
        for i in range(3):
            acc[i] += v[i]


def sentence_report(counts: Dict[str, List[int]]) -> Dict[str, Dict[str, float]]:
    return {c: _f1(*v) for c, v in counts.items()}


def _is_gold(key: str, gold: Sequence[str]) -> bool:
    return any(key == g or quoted_within(g, key) for g in gold)


def rationale_report(rows: Sequence[dict], scores, threshold: float) -> Dict:
    """How well flagged pages explain themselves against gold evidence and categories.

    On correctly flagged pages with evidence: evidence_hit_rate, the share of
    pages whose rationale holds a gold claim sentence; claim_sentence_share,
    the share of their distinct rationale sentences that are gold claim
    sentences (what a reviewer reads that is really a claim);
    repeated_sentences, rationale items that repeat a sentence already listed
    on the same page.
    """
    correct = [(r, x) for r, x in zip(rows, scores) if r["label"] == 1 and x.score >= threshold]
    with_ev = [(r, x) for r, x in correct if r.get("evidence")]
    hits = distinct = gold_distinct = repeated = 0
    for r, x in with_ev:
        gold = [sentence_key(e["sentence"]) for e in r["evidence"]]
        keys = [sentence_key(item.sentence) for item in x.rationale]
        is_gold = [_is_gold(k, gold) for k in set(keys)]
        repeated += len(keys) - len(set(keys))
        distinct += len(is_gold)
        gold_distinct += sum(is_gold)
        hits += any(is_gold)
    with_cats = [(r, x) for r, x in correct if r.get("categories")]
    overlap = sum(bool(set(x.categories) & set(r["categories"])) for r, x in with_cats)
    sev = [(r, x) for r, x in correct if r.get("severity")]
    return {
        "flagged_correctly": len(correct),
        "evidence_hit_rate": round(hits / len(with_ev), 4) if with_ev else None,
        "claim_sentence_share": round(gold_distinct / distinct, 4) if distinct else None,
        "rationale_sentences": distinct,
        "repeated_sentences": repeated,
        "category_overlap_rate": round(overlap / len(with_cats), 4) if with_cats else None,
        "severity_agreement": round(sum(severity_for(x.categories) == r["severity"] for r, x in sev) / len(sev), 4)
        if sev else None,
    }


def recall_by_kind(rows: Sequence[dict], scores, threshold: float) -> Dict[str, Dict]:
    """Per page kind (clinic_marketing, vendor, advertorial, ...): flagged pages found at the threshold."""
    out: Dict[str, Dict] = {}
    for r, x in zip(rows, scores):
        if int(r["label"]) != 1:
            continue
        d = out.setdefault(str(r.get("kind")), {"positives": 0, "found": 0})
        d["positives"] += 1
        d["found"] += int(x.score >= threshold)
    for d in out.values():
        d["recall"] = round(d["found"] / d["positives"], 4)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["positives"]))


def error_list(rows: Sequence[dict], scores, threshold: float) -> List[Dict]:
    return [
        {"id": r["id"], "label": int(r["label"]), "score": round(x.score, 4),
         "top": x.rationale[0].sentence[:160] if x.rationale else None}
        for r, x in zip(rows, scores) if (x.score >= threshold) != bool(r["label"])
    ]


def evaluate_rows(model: ClaimModel, rows: Sequence[dict], threshold: Optional[float] = None) -> Dict:
    threshold = model.threshold if threshold is None else threshold
    pages = [normalize_page(r["text"]) for r in rows]
    scores = model.score_pages(pages, threshold=threshold)
    y = np.array([int(r["label"]) for r in rows])
    s = np.array([x.score for x in scores])
    from regenwatch.training.split import page_language

    langs = np.array([page_language(r) for r in rows])
    english = langs == "en"
    return {
        "page": page_metrics(y, s, threshold),
        "page_english": metrics_where(y, s, english, threshold),
        "page_other_languages": metrics_where(y, s, ~english, threshold),
        "by_language": metrics_by_group(y, s, langs, threshold),
        "recall_by_kind": recall_by_kind(rows, scores, threshold),
        "rationale": rationale_report(rows, scores, threshold),
        "sentence": sentence_report(sentence_counts(model, pages, rows)),
        "errors": error_list(rows, scores, threshold),
        "scores": {r["id"]: round(x.score, 4) for r, x in zip(rows, scores)},
    }


def robustness_report(model: ClaimModel, rows: Sequence[dict], threshold: Optional[float] = None,
                      tolerance: float = 0.05) -> Dict:
    """Per rendering: how many pages keep their decision and score (within tolerance)."""
    from regenwatch.training.renderings import RENDERINGS

    threshold = model.threshold if threshold is None else threshold
    plain = np.array([s.score for s in model.score_pages([normalize_page(r["text"]) for r in rows])])
    out = {}
    for name, render in RENDERINGS.items():
        pages = [normalize_page(render(r["text"])) for r in rows]
        scores = np.array([s.score for s in model.score_pages(pages)])
        diff = np.abs(scores - plain)
        same = (scores >= threshold) == (plain >= threshold)
        out[name] = {
            "pages": len(rows),
            "same_decision": int(same.sum()),
            "within_tolerance": int((diff <= tolerance).sum()),
            "max_abs_score_diff": round(float(diff.max()), 4) if len(diff) else 0.0,
            "outliers": [rows[i]["id"] for i in np.flatnonzero((diff > tolerance) | ~same)],
        }
    return out


def format_report(report: Dict, title: str) -> str:
    p = report["page"]
    lines = [title,
             f"  pages {p['pages']} (positives {p['positives']}), threshold {p['threshold']:.4f}",
             f"  precision {p['precision']:.3f}  recall {p['recall']:.3f}  F1 {p['f1']:.3f}  "
             f"PR-AUC {p['pr_auc'] if p['pr_auc'] is not None else 'n/a'}  ECE {p['ece']:.3f}"]
    for name in ("page_english", "page_other_languages"):
        m = report.get(name)
        if m:
            lines.append(f"  {name[5:].replace('_', ' ')}: {m['pages']} pages ({m['positives']} flagged), precision "
                         f"{m['precision']:.3f} recall {m['recall']:.3f} F1 {m['f1']:.3f} PR-AUC {m['pr_auc']}")
    if report.get("recall_by_kind"):
        lines.append("  recall by kind: " + ", ".join(
            f"{k} {v['found']}/{v['positives']}" for k, v in report["recall_by_kind"].items()))
    if report.get("by_language"):
        lines.append("  by language (pages, flagged, PR-AUC, recall): " + ", ".join(
            f"{k} {v['pages']}/{v['positives']}/{v['pr_auc']}/{v['recall']}" for k, v in report["by_language"].items()))
    if "rationale" in report:
        r = report["rationale"]
        lines.append(f"  rationale quotes gold evidence: {r['evidence_hit_rate']}  "
                     f"gold claim share of its sentences: {r.get('claim_sentence_share')}  "
                     f"repeated sentences: {r.get('repeated_sentences')}  "
                     f"categories overlap gold: {r['category_overlap_rate']}  severity agrees: {r['severity_agreement']}")
    if "sentence" in report:
        lines.append("  sentence-level F1 (support):")
        for c, v in report["sentence"].items():
            lines.append(f"    {c:<30} F1 {v['f1']:.3f}  P {v['precision']:.3f}  R {v['recall']:.3f}  ({v['support']})")
    for name, r in report.get("robustness", {}).items():
        lines.append(f"  rendering {name:<10} same decision {r['same_decision']}/{r['pages']}, "
                     f"score within 0.05 {r['within_tolerance']}/{r['pages']}, max diff {r['max_abs_score_diff']}"
                     + (f", outliers {', '.join(r['outliers'][:10])}" if r["outliers"] else ""))
    for e in report.get("errors", [])[:20]:
        lines.append(f"  error: {e['id']} label {e['label']} score {e['score']}: {e['top']}")
    return "\n".join(lines)


def build_parser(parser: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="regenwatch evaluate", description=__doc__,
                                               formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, nargs="+",
                        help="Labeled page files (JSON Lines, dev-set format), measured together; e.g. the real "
                             "held-out split: training/heldout/real/*.jsonl.")
    parser.add_argument("--model", default="default", help="Model artifact URI; 'default' is the shipped model.")
    parser.add_argument("--threshold", type=float, default=None, help="Override the manifest's threshold.")
    parser.add_argument("--json", default=None, help="Also write the full report as JSON to this path.")
    parser.add_argument("--renderings", action="store_true",
                        help="Also score every page rewritten with Cyrillic look-alikes, zero-width characters "
                             "and real-world HTML, and report decision/score stability.")
    return parser


def evaluate_command(args: argparse.Namespace) -> int:
    loaded = load_model(args.model)
    rows = [validate_page_row(r, f"{path}:{i}") for path in args.data for i, r in enumerate(read_jsonl(path), 1)]
    report = evaluate_rows(loaded.model, rows, args.threshold)
    report["model_version"] = loaded.version
    if args.renderings:
        report["robustness"] = robustness_report(loaded.model, rows, args.threshold)
    print(format_report(report, f"evaluation of model {loaded.version} on {', '.join(args.data)}"))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return evaluate_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
