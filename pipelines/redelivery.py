"""Finding re-delivered pages with state that stays small: 28 bytes per page.

A re-delivery is the same (id, content) seen again (pipelines/pages.py,
"Duplicate ids"). The batch job finds them in a keys-only first pass over the
input. Grouping ``(key, (file, position))`` pairs costs the local runner
~0.7 KB per page in Python objects (410 MB at 200,000 pages); here each page
is one fixed-size row in a ``bytearray`` accumulator, and one numpy sort
finds the copies:

    row = 16 bytes of the (id, content) digest | uint32 file index | int64 position

The output maps each re-delivered copy's (file, position) to the copy that is
decided (the first in input order: file name, then position), for
duplicates only, so it is as small as the duplicates are few.

Pure functions first, then the CombineFn that the ``DropRedeliveries``
composite (pipelines/transforms.py) runs over the first pass.
"""
from __future__ import annotations

import struct
from typing import Dict, List, Sequence

import apache_beam as beam
import numpy as np

from regenwatch.pipelines.pages import Page, RecordRef, page_ref, redelivered_copies, redelivery_key
from regenwatch.pipelines.rowfiles import RowBufferCombineFn, RowFiles, row_source

KEY_BYTES = 16
_ROW = struct.Struct("<16sIq")
ROW_BYTES = _ROW.size  # 28


def file_index(files: Sequence[str]) -> Dict[str, int]:
    """Source -> index in the sorted file list (index order == file-name order); '' (no file) is last."""
    ordered = sorted(set(files))
    index = {path: i for i, path in enumerate(ordered)}
    index.setdefault("", len(ordered))
    return index


def redelivery_row(page: Page, files: Dict[str, int]) -> bytes:
    """The page's 28-byte row. A source outside the matched files is a bug in the reader, not bad input."""
    source, position = page_ref(page)
    try:
        index = files[source]
    except KeyError:
        raise ValueError(f"page {page.id!r} comes from {source!r}, which is not one of the matched input files")
    return _ROW.pack(redelivery_key(page)[:KEY_BYTES], index, position)


def redelivered_map(rows, files: Sequence[str]) -> Dict[RecordRef, RecordRef]:
    """Rows of a run -> {re-delivered copy: decided copy}, first copy in input order decided.

    ``rows`` is the rows' bytes or a :class:`~regenwatch.pipelines.rowfiles.RowSource`
    (:class:`~regenwatch.pipelines.rowfiles.RowFiles` for staged rows).
    ``files`` is the sorted file list the rows' indices point into (see
    :func:`file_index`; the extra last index is the empty source).

    Only the first 8 bytes of every key are in memory at once: sorting them
    finds the candidate copies (equal first halves); their whole rows are
    then fetched and grouped by the full 16-byte key.
    """
    source = row_source(rows, ROW_BYTES)
    if not len(source):
        return {}
    hi = source.column(0, 8).view(">u8").ravel()
    order = np.argsort(hi, kind="stable")
    sorted_hi = hi[order]
    del hi
    same = sorted_hi[1:] == sorted_hi[:-1]
    candidate = np.zeros(len(order), dtype=bool)
    candidate[1:] |= same
    candidate[:-1] |= same
    candidates = np.sort(order[candidate])
    del order, sorted_hi, same, candidate
    names = sorted(set(files)) + [""]
    copies: Dict[bytes, List[RecordRef]] = {}
    for row in source.rows_at(candidates):
        key, index, position = _ROW.unpack(row.tobytes())
        copies.setdefault(key, []).append((names[index], position))
    # The rule itself (first copy in input order decided) is pages.redelivered_copies.
    return {copy: decided for refs in copies.values() for copy, decided in redelivered_copies(refs)}


def redelivered_map_from_files(paths: Sequence[str], files: Sequence[str]) -> Dict[RecordRef, RecordRef]:
    """:func:`redelivered_map` over rows staged to files (pipelines/rowfiles.py)."""
    with RowFiles(paths, ROW_BYTES) as source:
        return redelivered_map(source, files)


class RedeliveryMapCombineFn(RowBufferCombineFn):
    """Rows -> {re-delivered copy: decided copy}. The accumulator is a flat bytearray (28 bytes per page)."""

    def __init__(self, files: Sequence[str]):
        self.files = sorted(set(files))

    def extract_output(self, acc) -> Dict[RecordRef, RecordRef]:
        return redelivered_map(acc, self.files)


__all__ = ["ROW_BYTES", "RedeliveryMapCombineFn", "file_index", "redelivered_map", "redelivered_map_from_files",
           "redelivery_row"]
