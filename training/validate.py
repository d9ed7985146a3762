"""Checks that a labeled page file says what the labeling policy says it must.

``python -m regenwatch.training.validate [--strict] FILE.jsonl [...]`` prints one line
per problem and exits 1 if there is any; with no file it checks the shipped
sample set. The test suite runs the same checks on every shipped file, so a
page whose evidence the sentence splitter cuts differently (and which would
then teach the sentence models a wrong label) cannot land unnoticed.

What is checked, per page:

* ``id``, ``text``, ``label`` present; ``label`` 0 or 1; ids unique across
  the files checked together;
* a flagged page (except the seeds, which train the page model only) lists
  evidence; an unflagged one lists none, no categories and no severity;
* every evidence sentence is an exact substring of the text, its category is
  a policy category, and the splitter keeps it as one sentence of the
  normalized page (otherwise label_sentences would fall back to containment
  matching, or fail to match at all);
* ``categories`` are the evidence's categories, ``severity`` follows them
  (POLICY.md: high if disease_treatment or regulatory_misrepresentation).
"""
from __future__ import annotations

import sys
from typing import Dict, Iterable, List, Optional, Sequence

from regenwatch.models.classifier import CATEGORIES, quoted_within, severity_for
from regenwatch.models.text import normalize_page, sentence_key
from regenwatch.training.data_io import default_files, read_jsonl


def page_problems(row: dict, strict: bool = False) -> List[str]:
    """What is wrong with one labeled page row (empty if nothing).

    An evidence sentence must be one sentence of the normalized page, or,
    unless strict, match one the way label_sentences matches it
    (classifier.quoted_within: one contains the other, both long: collected pages'
    annotators sometimes quoted two sentences, or one without its
    "Advantages:" lead-in). Files written for the set are checked strictly.
    """
    problems: List[str] = []
    for key in ("id", "text", "label"):
        if key not in row:
            return [f"no '{key}'"]
    if row["label"] not in (0, 1):
        return ["label must be 0 or 1"]
    evidence = row.get("evidence") or []
    categories = row.get("categories") or []
    seed = row.get("kind") == "seed"
    if row["label"] == 0:
        if evidence or categories:
            problems.append("an unflagged page lists evidence or categories")
        if row.get("severity"):
            problems.append("an unflagged page has a severity")
        return problems
    if not evidence:
        if not seed:
            problems.append("a flagged page lists no evidence")
        return problems
    sentences = {sentence_key(s) for s in normalize_page(row["text"]).sentences}
    for item in evidence:
        sentence, category = item.get("sentence", ""), item.get("category")
        if category not in CATEGORIES:
            problems.append(f"unknown category {category!r}")
        if sentence not in row["text"]:
            problems.append(f"evidence is not in the text: {sentence[:70]!r}")
        elif not _matched(sentence_key(sentence), sentences, strict):
            problems.append(f"the splitter does not keep this evidence whole: {sentence[:70]!r}")
    ev_categories = sorted({item.get("category") for item in evidence}, key=_category_order)
    if sorted(set(categories), key=_category_order) != ev_categories:
        problems.append(f"categories {categories} are not the evidence's {ev_categories}")
    expected = severity_for(ev_categories)
    if row.get("severity") != expected:
        problems.append(f"severity {row.get('severity')!r}, the policy says {expected!r}")
    return problems


def _matched(key: str, sentences, strict: bool) -> bool:
    if key in sentences:
        return True
    return not strict and any(quoted_within(key, s) for s in sentences)


def _category_order(name: Optional[str]) -> int:
    return CATEGORIES.index(name) if name in CATEGORIES else len(CATEGORIES)


def file_problems(paths: Sequence[str], strict: bool = False) -> List[str]:
    """'path:line: id: problem' lines for the page rows of the given files (sentence rows are skipped)."""
    out: List[str] = []
    seen: Dict[str, str] = {}
    for path in paths:
        for n, row in enumerate(read_jsonl(path), 1):
            if "evidence" not in row and "severity" not in row:
                continue  # a standalone labeled sentence
            where = f"{path}:{n}: {row.get('id')}"
            if row.get("id") in seen:
                out.append(f"{where}: id already used at {seen[row['id']]}")
            seen.setdefault(row.get("id"), f"{path}:{n}")
            out.extend(f"{where}: {p}" for p in page_problems(row, strict))
    return out


def main(argv: Optional[Iterable[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    strict = "--strict" in args
    paths = [a for a in args if a != "--strict"] or default_files()
    problems = file_problems(paths, strict)
    for line in problems:
        print(line)
    print(f"{len(problems)} problem(s) in {len(paths)} file(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
