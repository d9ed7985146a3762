"""The real held-out test split: a stratified, deterministic share of each real page file.

``python -m regenwatch.training.split --train-dir training/data/real
--test-dir training/heldout/real FILE.jsonl [...]`` writes, for each collected
file, its training part and its held-out part under the same name. The
held-out part is never trained or tuned on: every headline figure of the model
is measured on it (README, docs/MODEL.md), and the threshold is chosen on
out-of-fold scores of the training part only.

How pages are assigned: within a file, pages are ordered by stratum (kind,
label, language) and then by a hash of their id, and every ``1/fraction``-th
page of that order goes to the test part (systematic sampling). Every stratum
thus gives its share (to within one page) and the assignment of a page does not
depend on any other file, so adding a new batch later never moves a page of
an earlier one between train and test. Pages added to a file that was split
before keep the earlier split (``--keep DIR``: the folders' current files are
read for each page's side) and only the new pages are split among
themselves, so a page once measured on is never trained on afterwards.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from regenwatch.training.data_io import read_jsonl
from regenwatch.training.metrics import is_english

TEST_FRACTION = 0.25


def page_language(row: dict) -> str:
    """The page's ISO 639-1 language: its ``lang`` field, else 'en' or 'xx' by a function-word check."""
    lang = row.get("lang")
    if lang:
        return str(lang)
    return "en" if is_english(row.get("text", "")) else "xx"


def stratum(row: dict) -> Tuple[str, int, str]:
    return (str(row.get("kind")), int(row["label"]), page_language(row))


def _id_hash(row: dict) -> str:
    return hashlib.sha256(str(row["id"]).encode("utf-8")).hexdigest()


def split_rows(rows: Sequence[dict], fraction: float = TEST_FRACTION,
               previous: Optional[Dict[str, bool]] = None) -> Tuple[List[dict], List[dict]]:
    """(train, test) of one file's pages; test holds ceil-ish ``fraction`` of every stratum.

    previous: page id -> held out (True) or trained on (False) in an earlier
    split of the file; those pages keep their side, the others are split
    among themselves.
    """
    if not 0 < fraction < 1:
        raise ValueError("fraction must be in (0, 1)")
    previous = previous or {}
    kept_test = {r["id"] for r in rows if previous.get(r["id"]) is True}
    new = [r for r in rows if r["id"] not in previous]
    step = 1.0 / fraction
    ordered = sorted(new, key=lambda r: (stratum(r), _id_hash(r)))
    test_ids = set()
    # Systematic sampling over the stratum-ordered list: position i is a test
    # page when it crosses a multiple of step (the first page of the file is
    # one), so each stratum gets its share to within one page.
    nxt = 0.0
    for i, row in enumerate(ordered):
        if i >= nxt:
            test_ids.add(row["id"])
            nxt += step
    test_ids |= kept_test
    train = [r for r in rows if r["id"] not in test_ids]
    test = [r for r in rows if r["id"] in test_ids]
    return train, test


def _write(path: str, rows: Sequence[dict]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m regenwatch.training.split", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="Real labeled page files to split (each split on its own).")
    parser.add_argument("--train-dir", required=True, help="Where each file's training part is written.")
    parser.add_argument("--test-dir", required=True, help="Where each file's held-out part is written.")
    parser.add_argument("--fraction", type=float, default=TEST_FRACTION, help="Share of each file held out.")
    parser.add_argument("--keep", action="store_true",
                        help="Pages already in the train or test folder's file of the same name keep their side; "
                             "only pages new to the file are split.")
    args = parser.parse_args(argv)
    for path in args.files:
        rows = read_jsonl(path)
        name = os.path.basename(path)
        previous: Dict[str, bool] = {}
        if args.keep:
            for folder, held in ((args.train_dir, False), (args.test_dir, True)):
                old = os.path.join(folder, name)
                if os.path.exists(old):
                    previous.update({r["id"]: held for r in read_jsonl(old)})
        train, test = split_rows(rows, args.fraction, previous)
        _write(os.path.join(args.train_dir, name), train)
        _write(os.path.join(args.test_dir, name), test)
        print(f"{name}: {len(train)} train, {len(test)} held out", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
