"""Label agreement between the collected pages' labels and a blind second annotator.

``python -m regenwatch.training.agreement`` compares
training/annotation/second_annotator_*.jsonl (one line per page: id, label,
categories, severity, evidence, note; labeled from id, title and text only)
with the labels of the same pages in the training and held-out files, and
prints Cohen's kappa, agreement and the disagreements. Disagreements are
settled by the policy in the labeled files (their ``notes`` say so); the
annotation files keep the second annotator's original labels.
"""
from __future__ import annotations

import glob
import os
import sys
from typing import Dict, Sequence, Tuple

from regenwatch.training.data_io import DATA_DIR, default_files, heldout_real_files, read_jsonl

ANNOTATION_DIR = os.path.join(os.path.dirname(DATA_DIR), "annotation")


def cohen_kappa(pairs: Sequence[Tuple[int, int]]) -> float:
    """Cohen's kappa of two binary labelings (1.0 when both are constant and equal)."""
    n = len(pairs)
    if not n:
        raise ValueError("no pairs")
    observed = sum(a == b for a, b in pairs) / n
    pa = sum(a for a, _ in pairs) / n
    pb = sum(b for _, b in pairs) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def agreement(first: Dict[str, dict], second: Sequence[dict], adjudicated: Dict[str, dict]) -> Dict:
    """Agreement of the first labels as they were before adjudication with the second annotator's.

    adjudicated: id -> {first, second, final, reason}; the labeled files hold
    the final label, which must be the one recorded there.
    """
    pairs, disagreements, severity_pairs = [], [], []
    for row in second:
        gold = first.get(row["id"])
        if gold is None:
            raise ValueError(f"{row['id']}: annotated page not in the labeled files")
        label = int(gold["label"])
        adj = adjudicated.get(row["id"])
        if adj is not None:
            if int(adj["final"]) != label:
                raise ValueError(f"{row['id']}: the adjudicated label {adj['final']} is not the file's {label}")
            label = int(adj["first"])
        pairs.append((label, int(row["label"])))
        if label != int(row["label"]):
            disagreements.append({"id": row["id"], "first": label, "second": int(row["label"]),
                                  "final": int(gold["label"]), "reason": (adj or {}).get("reason")})
        elif label == 1:
            severity_pairs.append(gold.get("severity") == row.get("severity"))
    return {"pages": len(pairs), "agreement": round(sum(a == b for a, b in pairs) / len(pairs), 4),
            "kappa": round(cohen_kappa(pairs), 4),
            "severity_agreement_on_both_flagged": f"{sum(severity_pairs)}/{len(severity_pairs)}",
            "disagreements": disagreements}


def main() -> int:
    files = default_files() + heldout_real_files()
    first = {r["id"]: r for f in files for r in read_jsonl(f) if "label" in r and "evidence" in r}
    rc = 0
    adjudicated = {r["id"]: r for r in read_jsonl(os.path.join(ANNOTATION_DIR, "adjudications.jsonl"))}
    for path in sorted(glob.glob(os.path.join(ANNOTATION_DIR, "second_annotator_*.jsonl"))):
        report = agreement(first, read_jsonl(path), adjudicated)
        print(f"{os.path.basename(path)}: {report['pages']} pages, agreement {report['agreement']}, "
              f"Cohen's kappa {report['kappa']}, severity on pages both flagged {report['severity_agreement_on_both_flagged']}")
        for d in report["disagreements"]:
            print(f"  {d['id']}: first {d['first']}, second {d['second']}, final {d['final']}: {d['reason']}")
            if d["reason"] is None:
                rc = 1  # a disagreement nobody settled
    return rc


if __name__ == "__main__":
    sys.exit(main())
