"""Fixed-size rows staged to files: run-wide state that does not grow in memory.

Two steps of the batch job need to see every page of the run at once:
finding re-delivered copies (pipelines/redelivery.py) and clustering near
duplicates (pipelines/clustering.py). Each reduces a page to one small
fixed-size row (28 and 136 bytes). Combining the rows in memory still costs
the local runner several copies of them (accumulator, its encoding between
stages, the merge, the arrays built from it): ~150 MB more at 200,000 pages.
Here the rows are written to files as they are produced, and the step that
needs them all reads back only the columns it sorts (8 bytes of a digest, 4
bytes of a band) and fetches the few whole rows it then compares, so what is
in memory is a few bytes per page at a time.

* pure: :class:`RowSource` (rows in memory) and :class:`RowFiles` (rows in
  staged files), both offering ``column`` and ``rows_at``;
* DoFn: :class:`WriteRowFilesFn` (rows -> one file per bundle);
* composite: :class:`StageRows` (rows -> the sorted list of the written files,
  one element, ``[]`` for no rows).

The files go under the run's staging directory, which publishing removes
with everything else staged (pipelines/publish.py).
"""
from __future__ import annotations

import uuid
from typing import Dict, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

# Rows buffered before a write, and read per chunk: bounds the buffers to ~1 MiB.
CHUNK_BYTES = 1 << 20
ROW_FILE_SUFFIX = ".rows"


class RowSource:
    """Rows of ``row_bytes`` bytes in one buffer (the in-memory form of :class:`RowFiles`)."""

    def __init__(self, rows, row_bytes: int):
        if len(rows) % row_bytes:
            raise ValueError(f"rows must be {row_bytes} bytes each, got {len(rows)} bytes")
        self.row_bytes = row_bytes
        self._table = np.frombuffer(rows, dtype=np.uint8).reshape(-1, row_bytes)

    def __len__(self) -> int:
        return len(self._table)

    def column(self, start: int, stop: int) -> np.ndarray:
        """Bytes [start, stop) of every row: a C-contiguous (n, stop - start) uint8 array."""
        return np.ascontiguousarray(self._table[:, start:stop])

    def rows_at(self, indices: np.ndarray) -> np.ndarray:
        """The whole rows at ``indices`` (in that order): (len(indices), row_bytes) uint8."""
        return self._table[np.asarray(indices, dtype=np.int64)]

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RowFiles(RowSource):
    """Rows stored in files (in the given order, each file a whole number of rows), read through FileSystems."""

    def __init__(self, paths: Sequence[str], row_bytes: int):
        self.row_bytes = row_bytes
        self.paths = list(paths)
        sizes = []
        if self.paths:
            for result in FileSystems.match(self.paths):
                if len(result.metadata_list) != 1:
                    raise FileNotFoundError(f"staged row file {result.pattern} is missing")
                sizes.append(result.metadata_list[0].size_in_bytes)
        for path, size in zip(self.paths, sizes):
            if size % row_bytes:
                raise ValueError(f"{path}: {size} bytes is not a whole number of {row_bytes}-byte rows")
        counts = np.asarray([size // row_bytes for size in sizes], dtype=np.int64)
        # starts[k] = global index of file k's first row.
        self._starts = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        self._handles: Dict[int, object] = {}

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _open(self, k: int):
        handle = self._handles.get(k)
        if handle is None:
            if len(self._handles) >= 32:  # bounded: a run can have one file per bundle
                self._handles.pop(next(iter(self._handles))).close()
            handle = FileSystems.open(self.paths[k], mime_type="application/octet-stream",
                                      compression_type=CompressionTypes.UNCOMPRESSED)
            self._handles[k] = handle
        return handle

    def column(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((len(self), stop - start), dtype=np.uint8)
        chunk_rows = max(1, CHUNK_BYTES // self.row_bytes)
        for k, path in enumerate(self.paths):
            pos = int(self._starts[k])
            end = int(self._starts[k + 1])
            with FileSystems.open(path, mime_type="application/octet-stream",
                                  compression_type=CompressionTypes.UNCOMPRESSED) as f:
                while pos < end:
                    want = min(chunk_rows, end - pos)
                    data = f.read(want * self.row_bytes)
                    if len(data) != want * self.row_bytes:
                        raise IOError(f"{path}: short read (the file changed while being read)")
                    out[pos:pos + want] = np.frombuffer(data, dtype=np.uint8).reshape(want, self.row_bytes)[:, start:stop]
                    pos += want
        return out

    def rows_at(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), self.row_bytes), dtype=np.uint8)
        if not len(indices):
            return out
        if indices.min() < 0 or indices.max() >= len(self):
            raise IndexError("row index out of range")
        # Read in index order (forward seeks within each file), place in the caller's order.
        order = np.argsort(indices, kind="stable")
        files = np.searchsorted(self._starts, indices[order], side="right") - 1
        for rank, (i, k) in enumerate(zip(indices[order], files)):
            handle = self._open(int(k))
            handle.seek((int(i) - int(self._starts[k])) * self.row_bytes)
            data = handle.read(self.row_bytes)
            if len(data) != self.row_bytes:
                raise IOError(f"{self.paths[k]}: short read")
            out[order[rank]] = np.frombuffer(data, dtype=np.uint8)
        return out

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()


class RowBufferCombineFn(beam.CombineFn):
    """Fixed-size rows -> one flat ``bytearray`` (the in-memory form of :class:`StageRows`).

    Subclasses turn the buffer into their output in ``extract_output``.
    """

    def create_accumulator(self):
        return bytearray()

    def add_input(self, acc, row):
        acc += row
        return acc

    def merge_accumulators(self, accumulators):
        merged = bytearray()
        for acc in accumulators:
            merged += acc
        return merged


def row_source(rows, row_bytes: int) -> RowSource:
    """bytes / bytearray -> RowSource; a RowSource (or RowFiles) is returned as is."""
    return rows if isinstance(rows, RowSource) else RowSource(rows, row_bytes)


class WriteRowFilesFn(beam.DoFn):
    """Rows -> ``<directory>/<prefix>-<uuid>.rows``, one file per bundle; outputs the file's path.

    A retried bundle writes a new file and only the paths that come out are
    read, so a failed attempt's file is ignored (and removed with the staging
    directory).
    """

    def __init__(self, directory: str, prefix: str, row_bytes: int):
        self.directory = directory
        self.prefix = prefix
        self.row_bytes = row_bytes

    def start_bundle(self):
        self._buffer = bytearray()
        self._file = None
        self._path = None

    def _flush(self):
        if self._file is None:
            self._path = FileSystems.join(self.directory, f"{self.prefix}-{uuid.uuid4().hex}{ROW_FILE_SUFFIX}")
            self._file = FileSystems.create(self._path, mime_type="application/octet-stream",
                                            compression_type=CompressionTypes.UNCOMPRESSED)
        self._file.write(bytes(self._buffer))
        self._buffer = bytearray()

    def process(self, row: bytes):
        if len(row) != self.row_bytes:
            raise ValueError(f"a {self.prefix} row must be {self.row_bytes} bytes, got {len(row)}")
        self._buffer += row
        if len(self._buffer) >= CHUNK_BYTES:
            self._flush()

    def finish_bundle(self):
        if self._buffer:
            self._flush()
        if self._file is not None:
            self._file.close()
            path, self._file, self._path = self._path, None, None
            yield GlobalWindows.windowed_value(path)


class StageRows(beam.PTransform):
    """Fixed-size rows -> one element: the sorted list of files holding them (``[]`` for none). Batch only."""

    def __init__(self, directory: str, prefix: str, row_bytes: int):
        super().__init__()
        self.directory = directory
        self.prefix = prefix
        self.row_bytes = row_bytes

    def expand(self, rows):
        return (
            rows
            | "WriteRowFiles" >> beam.ParDo(WriteRowFilesFn(self.directory, self.prefix, self.row_bytes))
            | "AllRowFiles" >> beam.combiners.ToList()
            # File order fixes the row order; sorting makes it independent of bundle timing.
            | "SortRowFiles" >> beam.Map(sorted)
        )


__all__ = ["RowBufferCombineFn", "RowFiles", "RowSource", "StageRows", "WriteRowFilesFn", "row_source"]
