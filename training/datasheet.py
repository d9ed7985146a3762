"""Counts and duplicate rates of the labeled sample set (for training/data/README.md).

``python -m regenwatch.training.datasheet`` prints the figures the datasheet
quotes, so they can be checked and refreshed whenever the data changes.
"""
from __future__ import annotations

import collections
import json
import re
import sys
from typing import Dict, List, Set

from regenwatch.models.classifier import CATEGORIES, label_sentences
from regenwatch.models.text import normalize_page, sentence_key
from regenwatch.training.data_io import REAL, heldout_real_files, load_sample_set, read_jsonl, validate_page_row
from regenwatch.training.split import page_language

_TOKEN = re.compile(r"\w+")


def _shingles(text: str, n: int) -> Set[tuple]:
    words = _TOKEN.findall(text.lower())
    return {tuple(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


def near_duplicate_rate(texts: List[str], n: int, threshold: float) -> float:
    """Share of texts whose word-n-gram Jaccard with some other text is >= threshold.

    Candidate pairs come from an inverted index over shingles, so the cost is
    far below all-pairs on sets of a few thousand sentences.
    """
    sh = [_shingles(t, n) for t in texts]
    index: Dict[tuple, List[int]] = collections.defaultdict(list)
    for i, s in enumerate(sh):
        for g in s:
            index[g].append(i)
    dup = set()
    for i, s in enumerate(sh):
        if not s:
            continue
        overlap: Dict[int, int] = collections.Counter()
        for g in s:
            postings = index[g]
            if len(postings) > 200:  # stop-shingles say nothing about duplication
                continue
            for j in postings:
                if j != i:
                    overlap[j] += 1
        for j, inter in overlap.items():
            if inter / len(s | sh[j]) >= threshold:
                dup.add(i)
                break
    return len(dup) / len(texts) if texts else 0.0


def corpus_counts(pages: List[dict], origins: List[str]) -> Dict:
    """Pages by origin (real or authored), and the real ones by kind, language and label."""
    real = [p for p, o in zip(pages, origins) if o == REAL]
    return {
        "by_origin": dict(collections.Counter(origins)),
        "real_by_label": dict(collections.Counter(int(p["label"]) for p in real)),
        "real_by_kind": dict(collections.Counter(str(p.get("kind")) for p in real).most_common()),
        "real_by_language": dict(collections.Counter(page_language(p) for p in real).most_common()),
        "real_not_english": sum(page_language(p) != "en" for p in real),
    }


def heldout_counts() -> Dict:
    """The real held-out split (training/heldout/real/), counted the same way."""
    pages = [validate_page_row(r, f) for f in heldout_real_files() for r in read_jsonl(f)]
    return {"pages": len(pages), **corpus_counts(pages, [REAL] * len(pages))}


def datasheet() -> Dict:
    sample = load_sample_set()
    rows = []
    for p in sample.pages:
        page = normalize_page(p["text"])
        for sent, cats in label_sentences(page, int(p["label"]), p.get("evidence")):
            rows.append((sent, cats, "page"))
    rows += [(s, c, "authored") for s, c in sample.sentences]
    per_cat = collections.Counter(c for _, cats, _ in rows for c in cats)
    keys = [sentence_key(s) for s, _, _ in rows]
    claims = [s for s, c, _ in rows if c]
    return {
        "pages": len(sample.pages),
        "pages_flagged": sum(p["label"] for p in sample.pages),
        "pages_by_kind": dict(collections.Counter(p.get("kind") for p in sample.pages)),
        "pages_by_severity": dict(collections.Counter(p.get("severity") for p in sample.pages)),
        "sentences": len(rows),
        "claim_sentences": sum(1 for _, c, _ in rows if c),
        "non_claim_sentences": sum(1 for _, c, _ in rows if not c),
        "authored_sentences": len(sample.sentences),
        "sentences_per_category": {c: per_cat.get(c, 0) for c in CATEGORIES},
        "exact_duplicate_sentence_rate": round(1 - len(set(keys)) / len(keys), 4),
        "claim_near_duplicate_rate_3gram_0.5": round(near_duplicate_rate(claims, 3, 0.5), 4),
        "page_near_duplicate_rate_5gram_0.3": round(near_duplicate_rate([p["text"] for p in sample.pages], 5, 0.3), 4),
        "training_data_sha256": sample.sha256(),
        "training_corpus": corpus_counts(sample.pages, sample.origins),
        "heldout_real": heldout_counts(),
    }


def main() -> int:
    json.dump(datasheet(), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
