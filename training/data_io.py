"""Reading the labeled sample set shipped in training/data/.

Two kinds of files, both JSON Lines:

* page files (``*pages*.jsonl``): ``id, text, label, severity, categories,
  evidence[{sentence, category}]`` (the dev-set format);
* sentence files (``sentences_*.jsonl``): ``id, text, label, categories``.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Iterable, List, Sequence, Tuple

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


# Where a labeled page comes from. "real": rewritten from one real web page
# (training/data/real/, the seeds' file, reviewers' verdicts, --extra files);
# "authored": written by hand for the set (training/data/authored/), a
# training aid whose effect is measured on real pages but never the measure.
REAL, AUTHORED = "real", "authored"


def origin_of(path: str) -> str:
    """A page file's origin, by where it lives: the authored/ folder holds the written pages."""
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    return AUTHORED if "authored" in parts[:-1] else REAL


@dataclass
class SampleSet:
    pages: List[dict] = field(default_factory=list)
    sentences: List[Tuple[str, List[str]]] = field(default_factory=list)
    files: List[str] = field(default_factory=list)
    # Per page, REAL or AUTHORED (origin_of its file).
    origins: List[str] = field(default_factory=list)

    def real_mask(self):
        """Boolean array: which pages are real pages (the ones every headline figure is measured on)."""
        import numpy as np

        return np.array([o == REAL for o in self.origins], dtype=bool)

    def sha256(self) -> str:
        """Hash of the training data as used (order-independent per file list)."""
        digest = hashlib.sha256()
        for path in sorted(self.files):
            with open(path, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
        return digest.hexdigest()


def read_jsonl(path: str) -> List[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: invalid JSON: {exc}") from exc
    return rows


def validate_page_row(row: dict, where: str) -> dict:
    for key in ("id", "text", "label"):
        if key not in row:
            raise ValueError(f"{where}: labeled page has no '{key}'")
    if row["label"] not in (0, 1):
        raise ValueError(f"{where}: label must be 0 or 1")
    row.setdefault("evidence", [])
    row.setdefault("categories", [])
    return row


# The real held-out split (training/split.py): never trained or tuned on.
HELDOUT_REAL_DIR = os.path.join(os.path.dirname(DATA_DIR), "heldout", "real")


def heldout_real_files() -> List[str]:
    """The real held-out split's files (training/heldout/real/*.jsonl)."""
    return sorted(glob.glob(os.path.join(HELDOUT_REAL_DIR, "*.jsonl")))


def default_files() -> List[str]:
    files = sorted(glob.glob(os.path.join(DATA_DIR, "*pages*.jsonl")))
    # Real pages, training part only: the held-out part is in ../heldout/real/
    # (training/split.py) and is never trained or tuned on.
    files += sorted(glob.glob(os.path.join(DATA_DIR, "real", "*.jsonl")))
    files += sorted(glob.glob(os.path.join(DATA_DIR, "authored", "*.jsonl")))
    return files


def load_sample_set(paths: Sequence[str] | None = None, extra: Iterable[str] = ()) -> SampleSet:
    """The shipped sample set (or the given files) plus any extra labeled files."""
    files = list(paths) if paths else default_files()
    files += list(extra)
    sample = SampleSet(files=files)
    for path in files:
        for n, row in enumerate(read_jsonl(path), 1):
            where = f"{path}:{n}"
            if "evidence" in row or "severity" in row:
                sample.pages.append(validate_page_row(row, where))
                sample.origins.append(origin_of(path))
            elif "text" in row and "label" in row:
                cats = list(row.get("categories") or [])
                if row["label"] and not cats:
                    raise ValueError(f"{where}: a claim sentence needs at least one category")
                sample.sentences.append((row["text"], cats if row["label"] else []))
            else:
                raise ValueError(f"{where}: neither a labeled page nor a labeled sentence")
    return sample
