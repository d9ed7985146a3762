"""Reading compressed and non-UTF-8 input with memory bounded by design (pure, no Beam).

* :class:`GunzipReader`: gzip (``.jsonl.gz``) decompressed ``read(n)`` at a
  time with ``zlib``'s ``max_length``, so a read never returns, nor holds,
  more than ``n`` expanded bytes, whatever the compression ratio. Beam's
  ``CompressedFile`` decompresses whole 16 MiB reads of compressed bytes: a
  1 GiB line of one letter (1 MiB gzipped) came out of one read whole, and a
  run over it took 2.3 GB.
* :class:`ExpansionGuard`: the limits of one file's expansion, total
  (``--max_expanded_bytes``) and ratio (``--max_expansion_ratio``); over
  either, :class:`DecompressionLimit` is raised and the rest of the file is
  one dead letter (stage ``read``) with the reason.
* Avro blocks (``deflate``, ``bzip2``, ``xz``, ``null``): fastavro inflates
  a block whole, so its codec readers are replaced (:func:`install_bounded_avro_codecs`)
  by ones that refuse a block over :data:`avro_block_limit` bytes and count
  what they inflate against the file's guard.
* :func:`sniff_bom` and :func:`transcoding_reader`: JSON Lines written as
  UTF-16 or UTF-32 with a byte-order mark are decoded to UTF-8 as they are
  read, a chunk at a time.
"""
from __future__ import annotations

import bz2
import codecs
import contextlib
import io
import lzma
import threading
import zlib
from typing import Callable, Iterator, Optional

from regenwatch.pipelines.pages import DEFAULT_LIMITS, InputError, JsonlLine, RecordLimits, iter_jsonl_lines

# --max_expanded_bytes and --max_expansion_ratio defaults (pages.RecordLimits).
# The ratio is judged only once a file has expanded past RATIO_GRACE_BYTES,
# so a small file of repeated records is never refused for its ratio.
DEFAULT_MAX_EXPANDED_BYTES = DEFAULT_LIMITS.max_expanded_bytes
DEFAULT_MAX_EXPANSION_RATIO = DEFAULT_LIMITS.max_expansion_ratio
RATIO_GRACE_BYTES = 8 * 1024 * 1024
# Compressed bytes read per call.
RAW_CHUNK = 64 * 1024


class DecompressionLimit(InputError):
    """A compressed file that expands past --max_expanded_bytes or --max_expansion_ratio."""

    stage = "read"


class ExpansionGuard:
    """Counts one file's expanded and compressed bytes and raises past either limit."""

    def __init__(self, max_expanded: int = DEFAULT_MAX_EXPANDED_BYTES,
                 max_ratio: float = DEFAULT_MAX_EXPANSION_RATIO, what: str = "file"):
        self.max_expanded = max_expanded
        self.max_ratio = max_ratio
        self.what = what
        self.expanded = 0
        self.compressed = 0

    def add(self, expanded: int, compressed: int) -> None:
        self.expanded += expanded
        self.compressed += compressed
        if self.expanded > self.max_expanded:
            raise DecompressionLimit(
                f"{self.what} expands past {self.max_expanded:,} bytes (--max_expanded_bytes) after "
                f"{self.compressed:,} compressed bytes; the rest of it is not read")
        if self.expanded > RATIO_GRACE_BYTES and self.expanded > self.max_ratio * max(self.compressed, 1):
            raise DecompressionLimit(
                f"{self.what} expands {self.expanded / max(self.compressed, 1):,.0f}x ({self.expanded:,} bytes "
                f"from {self.compressed:,}), over --max_expansion_ratio {self.max_ratio:g}: a decompression "
                "bomb or a degenerate file; the rest of it is not read")


class GunzipReader:
    """``read(n)`` over gzip data (one or more members) from ``read_raw``; never more than n bytes out.

    A file cut inside a member raises EOFError; bytes after the last member
    that are not a gzip member raise ``zlib.error`` (zero padding is allowed),
    as the gzip module does. Both end the file in one dead letter upstream.
    """

    def __init__(self, read_raw: Callable[[int], bytes], guard: Optional[ExpansionGuard] = None,
                 raw_chunk: int = RAW_CHUNK):
        self._read_raw = read_raw
        self._guard = guard or ExpansionGuard()
        self._raw_chunk = raw_chunk
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""       # compressed bytes not yet given to the inflater
        self._member_started = False
        self._done = False
        self._error: Optional[BaseException] = None

    def _next_raw(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return self._read_raw(self._raw_chunk)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            raise ValueError("GunzipReader reads in bounded pieces: pass a size")
        if self._error is not None:
            raise self._error
        out = []
        wanted = n
        while wanted > 0 and not self._done:
            inflater = self._inflater
            if inflater.eof:
                rest = inflater.unused_data
                if not rest:
                    rest = self._read_raw(self._raw_chunk)
                if not rest.strip(b"\0"):
                    # Zero padding (or nothing) after the last member.
                    while rest:
                        rest = self._read_raw(self._raw_chunk)
                        if rest.strip(b"\0"):
                            self._error = zlib.error("bytes after the last gzip member are not a gzip member")
                            break
                    self._done = True
                    break
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._pending = rest
                self._member_started = False
                continue
            data = inflater.unconsumed_tail or self._next_raw()
            if not data:
                if self._member_started:
                    # What came out before the cut is returned first; the next read raises.
                    self._error = EOFError("compressed file ended before the end of its gzip stream (truncated)")
                self._done = True
                break
            self._member_started = True
            fed = len(data)
            piece = inflater.decompress(data, wanted)
            consumed = fed - len(inflater.unconsumed_tail) - (len(inflater.unused_data) if inflater.eof else 0)
            self._guard.add(len(piece), max(consumed, 0))
            if piece:
                out.append(piece)
                wanted -= len(piece)
        return b"".join(out)


# --------------------------------------------------------------------------
# Byte-order marks

# UTF-32 before UTF-16: FF FE 00 00 starts with FF FE.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def sniff_bom(head: bytes) -> Optional[tuple]:
    """(codec, BOM length) when ``head`` (a file's first 4 bytes) starts with a UTF-16/32 BOM, else None.

    A UTF-8 BOM is not reported: UTF-8 files are read as they are, and the
    JSON Lines parser drops the BOM from the line it starts.
    """
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec, len(bom)
    return None


def transcoding_reader(read: Callable[[int], bytes], codec: str) -> Callable[[int], bytes]:
    """``read(n)`` of UTF-8 bytes from a stream in ``codec`` (after its BOM), decoded a chunk at a time.

    Each call decodes at most ``n`` source bytes, so it returns at most 2n
    UTF-8 bytes for UTF-16 (4n/4 for UTF-32). Code units that are not valid
    (a lone surrogate in UTF-16) pass as surrogates and become invalid UTF-8
    in their line only, which is then that line's dead letter.
    """
    decoder = codecs.getincrementaldecoder(codec)("surrogatepass")
    finished = False

    def read_utf8(n: int) -> bytes:
        nonlocal finished
        while not finished:
            data = read(max(4, n // 2))
            text = decoder.decode(data, final=not data)
            if not data:
                finished = True
            if text:
                return text.encode("utf-8", "surrogatepass")
        return b""

    return read_utf8


def _prepend(head: bytes, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """read(n) that returns ``head`` first, then what ``read`` returns."""
    pending = [head] if head else []

    def read_more(n: int) -> bytes:
        if pending:
            return pending.pop()
        return read(n)

    return read_more


def jsonl_lines(handle, path: str, limits: RecordLimits = DEFAULT_LIMITS, start: int = 0,
                end: Optional[int] = None, on_transcode: Optional[Callable[[str], None]] = None) -> Iterator[JsonlLine]:
    """The lines of a JSON Lines file opened as raw bytes (``compression_type="uncompressed"``), bounded.

    ``.gz`` is inflated by :class:`GunzipReader` under the file's expansion
    limits; a file that starts with a UTF-16/32 BOM is decoded to UTF-8 as it
    is read, whole, by the range that starts at 0 (other ranges of it yield
    nothing); lines over 4x ``limits.max_bytes`` come out ``over_cap`` with
    their first 1 MiB only. The pipeline's reader (dofns.ReadJsonlRangeFn)
    and the commands that read page and verdict files outside Beam use this.
    """
    cap = limits.max_bytes * 4
    if path.lower().endswith(".gz"):
        guard = ExpansionGuard(limits.max_expanded_bytes, limits.max_expansion_ratio, what=path)
        read = GunzipReader(handle.read, guard).read
    else:
        read = handle.read
    if start > 0:
        # Uncompressed files only (compressed files are one range, never seeked into).
        if sniff_bom(handle.read(4)):
            return  # the range at 0 reads this file whole: its bytes cannot be cut at "\n"
        handle.seek(start - 1)
        yield from iter_jsonl_lines(handle.read, start, end, max_line_bytes=cap)
        return
    head = read(4)
    bom = sniff_bom(head)
    if bom:
        codec, length = bom
        if on_transcode is not None:
            on_transcode(codec)
        read, end = transcoding_reader(_prepend(head[length:], read), codec), None
    else:
        read = _prepend(head, read)
    yield from iter_jsonl_lines(read, 0, end, max_line_bytes=cap)


# --------------------------------------------------------------------------
# Avro blocks

# The largest Avro block (compressed or not) read: a block holds records up to
# the writer's sync interval (16 KB-1 MB in practice) plus one record, and
# a record is refused past 4x --max_page_bytes anyway.
DEFAULT_AVRO_BLOCK_LIMIT = 64 * 1024 * 1024
_avro_state = threading.local()


def avro_block_limit(max_bytes: int) -> int:
    """Largest Avro block (bytes, before and after its codec) for a page cap of ``max_bytes`` characters."""
    return max(DEFAULT_AVRO_BLOCK_LIMIT, 4 * max_bytes + (1 << 20))


@contextlib.contextmanager
def avro_guard(guard: ExpansionGuard, block_limit: int = DEFAULT_AVRO_BLOCK_LIMIT) -> Iterator[None]:
    """While the block runs (in this thread), Avro blocks count against ``guard`` and are capped."""
    previous = getattr(_avro_state, "current", None)
    _avro_state.current = (guard, block_limit)
    try:
        yield
    finally:
        _avro_state.current = previous


def _current() -> tuple:
    return getattr(_avro_state, "current", None) or (None, DEFAULT_AVRO_BLOCK_LIMIT)


def _read_long(fo) -> int:
    byte = fo.read(1)
    if not byte:
        raise EOFError("Avro block header cut short")
    b = byte[0]
    n, shift = b & 0x7F, 7
    while b & 0x80:
        byte = fo.read(1)
        if not byte:
            raise EOFError("Avro block header cut short")
        b = byte[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise ValueError("Avro long longer than 10 bytes")
    return (n >> 1) ^ -(n & 1)


def _block_bytes(fo, limit: int) -> bytes:
    size = _read_long(fo)
    if size < 0:
        raise ValueError(f"Avro block of negative size {size}")
    if size > limit:
        raise DecompressionLimit(f"Avro block of {size:,} bytes, over the limit of {limit:,} "
                                 "(4x --max_page_bytes, at least 64 MiB)")
    data = fo.read(size)
    if len(data) < size:
        raise EOFError(f"Avro block cut short: {len(data)} of {size} bytes")
    return data


def _inflate(decompressor, data: bytes, limit: int, guard: Optional[ExpansionGuard]) -> io.BytesIO:
    out = decompressor.decompress(data, limit + 1)
    if len(out) > limit:
        raise DecompressionLimit(f"Avro block expands past {limit:,} bytes (from {len(data):,}); "
                                 "not read further")
    if guard is not None:
        guard.add(len(out), len(data))
    return io.BytesIO(out)


def _null_block(fo):
    guard, limit = _current()
    data = _block_bytes(fo, limit)
    if guard is not None:
        guard.add(len(data), len(data))
    return io.BytesIO(data)


def _deflate_block(fo):
    guard, limit = _current()
    return _inflate(zlib.decompressobj(-15), _block_bytes(fo, limit), limit, guard)


def _bzip2_block(fo):
    guard, limit = _current()
    return _inflate(bz2.BZ2Decompressor(), _block_bytes(fo, limit), limit, guard)


def _xz_block(fo):
    guard, limit = _current()
    return _inflate(lzma.LZMADecompressor(), _block_bytes(fo, limit), limit, guard)


_BOUNDED_CODECS = {"null": _null_block, "deflate": _deflate_block, "bzip2": _bzip2_block, "xz": _xz_block}


def install_bounded_avro_codecs() -> None:
    """Replace fastavro's whole-block codec readers by the bounded ones (idempotent, process-wide).

    fastavro looks codecs up in ``fastavro.read.BLOCK_READERS`` (its
    documented place for codecs); the bounded readers read the same bytes
    and give the same records, and with no guard set (other readers of Avro
    in the process) they only cap a block at 64 MiB.
    """
    import fastavro.read

    fastavro.read.BLOCK_READERS.update(_BOUNDED_CODECS)
