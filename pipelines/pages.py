"""Pure functions between raw input and output records (no Beam here).

Input records become :class:`Page`; anything wrong with one raises
:class:`InputError` with a reason, which the DoFns turn into dead letters.
Output records are plain dicts shaped by the Avro schemas in ``schemas/``.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from regenwatch.models.classifier import PageScore, severity_for
from regenwatch.models.text import DEFAULT_MAX_CONTENT_CHARS, NormalizedPage, PageError

DEAD_LETTER_RAW_LIMIT = 1024 * 1024
DEFAULT_MAX_PAGE_BYTES = DEFAULT_MAX_CONTENT_CHARS
SUPPORTED_CONTENT_TYPES = ("text/html", "text/plain", "application/xhtml+xml")
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class RecordLimits:
    """What one input record may carry (each an option of ``regenwatch run``); over a limit it is a dead letter.

    ``title`` is an optional input field that regenwatch does not use; it is
    bounded like the others so that no field of any size rides along.
    """

    max_bytes: int = DEFAULT_MAX_PAGE_BYTES
    max_id_chars: int = 1024
    max_url_chars: int = 8192
    max_title_chars: int = 4096
    max_content_type_chars: int = 256
    max_fetched_at_chars: int = 256
    # A compressed file (.jsonl.gz, .warc.gz, Avro blocks) that expands past
    # either is read up to there and ends in a dead letter (pipelines/bounded.py).
    # Text pages gzip 4-15x; one repeated letter ~1,000x.
    max_expanded_bytes: int = 16 * 1024 ** 3
    max_expansion_ratio: float = 100.0

    def field_limit(self, key: str) -> Optional[int]:
        return {"id": self.max_id_chars, "url": self.max_url_chars, "title": self.max_title_chars,
                "content_type": self.max_content_type_chars, "fetched_at": self.max_fetched_at_chars}.get(key)


DEFAULT_LIMITS = RecordLimits()
# Which option sets each field's limit (named in the reasons).
_LIMIT_OPTIONS = {"id": "--max_id_chars", "url": "--max_url_chars", "title": "--max_title_chars",
                  "content_type": "--max_content_type_chars", "fetched_at": "--max_fetched_at_chars"}


def lone_surrogate(text: str) -> Optional[int]:
    """Index of the first lone surrogate (not valid Unicode, not encodable as UTF-8), else None.

    JSON's "\\ud800" escape decodes to one; Avro strings must be UTF-8.
    """
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def utf8_safe(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes: always valid UTF-8."""
    if lone_surrogate(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def replace_lone_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (what a UTF-8 decoder shows for bad bytes)."""
    if lone_surrogate(text) is None:
        return text
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)


class InputError(PageError):
    """An input record that is not a valid page."""

    stage = "parse"


@dataclass(frozen=True)
class Page:
    id: str
    content: str
    url: Optional[str] = None
    fetched_at: Optional[str] = None
    content_type: Optional[str] = None
    source: Optional[str] = None
    # Where in ``source`` the record starts: byte offset of a JSON line or a
    # WARC record, index of an Avro record. With source it names one input
    # record, so the copies of a re-delivered page can be told apart.
    position: Optional[int] = None

    def content_sha256(self) -> str:
        return hashlib.sha256(self.content.encode("utf-8", "surrogatepass")).hexdigest()

    def to_json(self) -> str:
        """The page as a JSON record (what a dead letter carries as ``raw``)."""
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None and k != "position"},
                          ensure_ascii=False)


def now_millis() -> int:
    return int(time.time() * 1000)


def _checked_field(key: str, value: str, limits: RecordLimits) -> str:
    """A page's identifying string field, within its length limit and valid Unicode."""
    limit = limits.field_limit(key)
    if limit is not None and len(value) > limit:
        raise InputError(f"field '{key}' has {len(value)} characters, over the limit of {limit} "
                         f"({_LIMIT_OPTIONS[key]})")
    bad = lone_surrogate(value)
    if bad is not None:
        # An id or URL must round-trip exactly (verdicts and reviewers find
        # pages by it), so it is refused rather than repaired.
        raise InputError(f"field '{key}' is not valid Unicode: lone surrogate U+{ord(value[bad]):04X} at "
                         f"character {bad}")
    return value


def _optional_str(record: Dict[str, Any], key: str, limits: RecordLimits = DEFAULT_LIMITS) -> Optional[str]:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"field '{key}' must be a string or null, got {type(value).__name__}")
    return _checked_field(key, value, limits)


def page_from_record(record: Any, source: Optional[str] = None, max_bytes: int = DEFAULT_MAX_PAGE_BYTES,
                     position: Optional[int] = None, limits: Optional[RecordLimits] = None) -> Page:
    """Validate a decoded record (JSON object or Avro record) into a Page.

    ``limits`` bounds each field (its ``max_bytes`` wins over ``max_bytes``).
    Lone surrogates (JSON "\\ud800" escapes) are refused in id, url,
    fetched_at, content_type and title, and replaced by U+FFFD in content,
    so every string of a Page is valid UTF-8.
    """
    limits = limits or (DEFAULT_LIMITS if max_bytes == DEFAULT_LIMITS.max_bytes else RecordLimits(max_bytes=max_bytes))
    max_bytes = limits.max_bytes
    if not isinstance(record, dict):
        raise InputError(f"a page must be a JSON object, got {type(record).__name__}")
    if "id" not in record or record["id"] is None:
        raise InputError("missing required field 'id'")
    page_id = record["id"]
    if not isinstance(page_id, str) or not page_id.strip():
        raise InputError(f"field 'id' must be a non-empty string, got {type(page_id).__name__}")
    page_id = _checked_field("id", page_id, limits)
    if "content" not in record or record["content"] is None:
        raise InputError("missing required field 'content'")
    content = record["content"]
    if not isinstance(content, str):
        raise InputError(f"field 'content' must be a string, got {type(content).__name__}")
    if len(content) > max_bytes:
        raise InputError(f"content has {len(content)} characters, over the cap of {max_bytes} (--max_page_bytes)")
    if not content.strip():
        raise InputError("field 'content' is empty or whitespace only")
    content = replace_lone_surrogates(content)
    _optional_str(record, "title", limits)
    content_type = _optional_str(record, "content_type", limits)
    if content_type is not None:
        base = content_type.split(";")[0].strip().lower()
        if base not in SUPPORTED_CONTENT_TYPES:
            raise InputError(f"unsupported content_type {content_type!r}; expected text/html or text/plain")
        content_type = base
    return Page(
        id=page_id,
        content=content,
        url=_optional_str(record, "url", limits),
        fetched_at=_optional_str(record, "fetched_at", limits),
        content_type=content_type,
        source=source,
        position=position,
    )


def page_from_json_line(line: bytes, source: Optional[str] = None, max_bytes: int = DEFAULT_MAX_PAGE_BYTES,
                        position: Optional[int] = None, limits: Optional[RecordLimits] = None) -> Page:
    """One JSON Lines line (bytes) -> Page.

    A UTF-8 byte-order mark at the start of the line is dropped (Windows
    tools write one at the start of a file; concatenated files carry it
    mid-file). The standard library's refusals that are not syntax errors
    (an integer of more than 4,300 digits, nesting deeper than the
    recursion limit) are InputErrors like any invalid JSON.
    """
    limits = limits or RecordLimits(max_bytes=max_bytes)
    max_bytes = limits.max_bytes
    # Checked before decoding so a 20 MB line costs no JSON parse.
    if len(line) > max_bytes * 4:
        raise InputError(f"line has {len(line)} bytes, far over the page cap of {max_bytes} (--max_page_bytes)")
    if line.startswith(UTF8_BOM):
        line = line[len(UTF8_BOM):]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"line is not valid UTF-8: {exc}") from exc
    try:
        record = json.loads(text)
    except RecursionError as exc:
        raise InputError(f"invalid JSON: nested deeper than the parser's limit ({exc})") from exc
    except ValueError as exc:
        raise InputError(f"invalid JSON: {exc}") from exc
    return page_from_record(record, source=source, position=position, limits=limits)


# --------------------------------------------------------------------------
# JSON Lines, read in chunks with a cap per line

# Bytes read per call: memory per reader is one chunk plus the line being
# assembled (at most the line cap), whatever the file size.
JSONL_READ_CHUNK = 1 << 20
# Uncompressed files are cut into byte ranges of at most this size, read in parallel.
JSONL_RANGE_BYTES = 64 * 1024 * 1024
# ... and into at least this many ranges over the whole input, down to ranges
# of JSONL_MIN_RANGE_BYTES. The local runner deals a stage's input to its
# workers element by element (by key after a Reshuffle), and a range is one
# element: with one range per file, an input of 1 file (under 64 MiB) kept
# 1 of 2 workers busy, and 8 files of 250 pages dealt 4 and 4 left the
# workers 5% apart (long pages fall unevenly). Smaller ranges cost one open,
# seek and 1 MiB read each.
JSONL_TARGET_RANGES = 32
JSONL_MIN_RANGE_BYTES = 256 * 1024
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".deflate", ".zst", ".lzma", ".xz")


@dataclass(frozen=True)
class JsonlLine:
    offset: int      # of the line's first byte in the (uncompressed) file
    data: bytes      # the line without its end of line; only a prefix when over_cap
    length: int      # bytes of the whole line, end of line included
    over_cap: bool


def jsonl_range_bytes(total_bytes: int) -> int:
    """Range size for an input of ``total_bytes`` uncompressed JSONL bytes (see JSONL_TARGET_RANGES)."""
    cap = JSONL_RANGE_BYTES
    wanted = -(-max(total_bytes, 0) // JSONL_TARGET_RANGES)
    return max(min(cap, JSONL_MIN_RANGE_BYTES), min(cap, wanted))


def jsonl_ranges(path: str, size: Optional[int], range_bytes: Optional[int] = None
                 ) -> List[Tuple[str, int, Optional[int]]]:
    """(path, start, end) byte ranges of a JSONL file; one open-ended range when compressed or of unknown size."""
    range_bytes = range_bytes or JSONL_RANGE_BYTES
    if size is None or path.lower().endswith(COMPRESSED_SUFFIXES) or size <= range_bytes:
        return [(path, 0, None)]
    return [(path, start, min(start + range_bytes, size)) for start in range(0, size, range_bytes)]


def iter_jsonl_lines(read, start: int = 0, end: Optional[int] = None, max_line_bytes: int = DEFAULT_MAX_PAGE_BYTES * 4,
                     keep_bytes: int = DEAD_LETTER_RAW_LIMIT) -> Iterator[JsonlLine]:
    """The lines that start in [start, end) of a byte stream, read ``JSONL_READ_CHUNK`` at a time.

    ``read(n)`` reads the stream, positioned at ``start - 1`` when ``start`` >
    0 (that byte decides whether the first line read belongs to the previous
    range: the same rule as Beam's text source). A line longer than
    ``max_line_bytes`` is not assembled: its first ``keep_bytes`` are kept
    for the dead letter and the rest is counted and dropped, so neither time
    nor memory grows with the length of a hostile line (Beam's ReadFromText
    grew its buffer by re-concatenation: a 20 MB line took seconds, a
    one-line 1 GB file would have been held whole).
    """
    pieces: List[bytes] = []
    length = kept = 0
    over = False
    pos = start - 1 if start > 0 else 0
    skip_first = start > 0

    def take_line() -> Optional[JsonlLine]:
        nonlocal pieces, length, kept, over, pos, skip_first
        line_start, line_length, line_over = pos, length, over
        data = b"".join(pieces)
        pieces, length, kept, over = [], 0, 0, False
        pos += line_length
        if skip_first:
            skip_first = False
            return None
        if line_over:
            return JsonlLine(line_start, data[:keep_bytes], line_length, True)
        if data.endswith(b"\n"):
            data = data[:-1]
        if data.endswith(b"\r"):
            data = data[:-1]
        return JsonlLine(line_start, data, line_length, False)

    def add(piece: bytes) -> None:
        nonlocal length, kept, over, pieces
        length += len(piece)
        if skip_first:
            return  # the previous range's line: only its length matters
        if over:
            if kept < keep_bytes:
                pieces.append(piece[:keep_bytes - kept])
                kept += len(pieces[-1])
            return
        pieces.append(piece)
        kept += len(piece)
        if length > max_line_bytes:
            over = True
            pieces = [b"".join(pieces)[:keep_bytes]]
            kept = len(pieces[0])

    while True:
        if end is not None and not pieces and not skip_first and pos >= end:
            return  # the next line starts in the next range
        chunk = read(JSONL_READ_CHUNK)
        if not chunk:
            break
        at = 0
        while at < len(chunk):
            nl = chunk.find(b"\n", at)
            if nl < 0:
                add(chunk[at:])
                break
            add(chunk[at:nl + 1])
            at = nl + 1
            line = take_line()
            if line is not None:
                if end is not None and line.offset >= end:
                    return
                yield line
    if pieces or length:
        line = take_line()
        if line is not None and (end is None or line.offset < end):
            yield line


def _raw_text(raw: Any) -> str:
    """Any raw input as text, without raising (a hostile object's __repr__ included)."""
    if isinstance(raw, Page):
        return raw.to_json()
    if isinstance(raw, str):
        return raw
    # Broad on purpose, twice: a decoded record can hold anything, and input
    # never fails a run, not even through a value's own repr().
    try:
        return json.dumps(raw, ensure_ascii=False, default=repr)
    except Exception:  # pylint: disable=broad-except
        pass
    try:
        return repr(raw)
    except Exception:  # pylint: disable=broad-except
        return f"<unprintable {type(raw).__name__}>"


def raw_for_dead_letter(raw: Any) -> tuple:
    """(string, truncated) for a dead letter's raw field: valid UTF-8, capped at 1 MiB of it."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        # Invalid bytes (and a character cut at the cap) become U+FFFD.
        return raw[:DEAD_LETTER_RAW_LIMIT].decode("utf-8", "replace"), len(raw) > DEAD_LETTER_RAW_LIMIT
    text = _raw_text(raw)
    # Lone surrogates (a JSON "\\ud800" escape) are written as their escape, so
    # the field is valid UTF-8 for Avro and the reader still sees what came in.
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= DEAD_LETTER_RAW_LIMIT:
        return data.decode("utf-8"), False
    return data[:DEAD_LETTER_RAW_LIMIT].decode("utf-8", "ignore"), True


def dead_letter(raw: Any, stage: str, error: BaseException | str, source: Optional[str] = None,
                page_id: Optional[str] = None) -> Dict[str, Any]:
    """The dead-letter record of one input: every string valid UTF-8, whatever the input or error held."""
    text, truncated = raw_for_dead_letter(raw)
    if isinstance(error, BaseException):
        try:
            message = str(error)
        except Exception:  # pylint: disable=broad-except
            # An exception whose message cannot be formed is still a reason.
            message = "(no message)"
        error = f"{type(error).__name__}: {message}" if message else type(error).__name__
    if isinstance(raw, Page):
        page_id = page_id or raw.id
        source = source or raw.source
    return {
        "raw": text,
        "raw_truncated": truncated,
        "stage": stage,
        "error": utf8_safe(str(error)[:10000]),
        "id": utf8_safe(page_id[:DEAD_LETTER_ID_LIMIT]) if isinstance(page_id, str) else None,
        "source": utf8_safe(source) if isinstance(source, str) else None,
        "failed_at": now_millis(),
    }


# A dead letter's id field is a label, not the page: an over-long id (itself
# the reason of the dead letter) is cut here and kept whole in raw.
DEAD_LETTER_ID_LIMIT = 4096


def encodable(record: Dict[str, Any], parsed_schema: Any) -> None:
    """Raises when ``record`` would not encode with the (fastavro-parsed) schema, as the writer would.

    Run on every output record before it reaches the writer, so a record
    that would fail the write (and with it the run) becomes its page's dead
    letter instead.
    """
    import io

    import fastavro

    fastavro.schemaless_writer(io.BytesIO(), parsed_schema, record)


def decision_record(page: Page, score: PageScore, threshold: float, model_version: str,
                    processed_at: int) -> Dict[str, Any]:
    flagged = score.score >= threshold
    return {
        "id": page.id,
        "url": page.url,
        "score": score.score,
        "flagged": flagged,
        "severity": severity_for(score.categories) if flagged else None,
        "model_version": model_version,
        "content_sha256": page.content_sha256(),
        "processed_at": processed_at,
    }


# Neighbouring sentences kept on each side of a rationale sentence so a
# reviewer reads the claim in context. Neighbours rather than the page text:
# a page may be 5 MB, while this bounds a flagged record to
# max_rationale x 4 sentences of at most MAX_SENTENCE_CHARS each (~12 KB with
# the defaults) whatever the page size; the full page stays in the inputs,
# referenced by content_sha256.
CONTEXT_SENTENCES = 2


def sentence_context(sentences: Sequence[str], sentence: str, n: int = CONTEXT_SENTENCES) -> Dict[str, List[str]]:
    """Up to n sentences before and after the first occurrence of sentence."""
    try:
        i = list(sentences).index(sentence)
    except ValueError:
        return {"context_before": [], "context_after": []}
    return {"context_before": list(sentences[max(0, i - n):i]),
            "context_after": list(sentences[i + 1:i + 1 + n])}


def flagged_record(page: Page, normalized: NormalizedPage, score: PageScore, threshold: float,
                   model_version: str, processed_at: int) -> Dict[str, Any]:
    return {
        "id": page.id,
        "url": page.url,
        "fetched_at": page.fetched_at,
        "score": score.score,
        "threshold": threshold,
        "severity": severity_for(score.categories),
        "categories": list(score.categories),
        "rationale": [
            {
                "sentence": item.sentence,
                "categories": list(item.categories),
                "category_scores": list(item.category_scores),
                "category": item.category,
                "score": item.score,
                "category_score": item.category_score,
                "terms": list(item.terms),
                **sentence_context(normalized.sentences, item.sentence),
            }
            for item in score.rationale
        ],
        "signals": list(normalized.signals),
        "model_version": model_version,
        "content_sha256": page.content_sha256(),
        "processed_at": processed_at,
    }


# Response payloads that are pages; images, scripts, stylesheets, PDFs... in
# a response record are not pages (skipped and counted, not dead-lettered).
WARC_PAGE_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
# warcio does not count the CRLF CRLF that ends the last record in its length.
_WARC_TRAILER_SLACK = 4
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?([A-Za-z0-9._:-]{1,40})""", re.IGNORECASE)


class WarcReadError(InputError):
    """A WARC file or record that cannot be read whole (truncated or corrupt)."""

    stage = "read"


def _declared_charset(content_type: str) -> Optional[str]:
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


def decode_payload(payload: bytes, declared: Optional[str] = None) -> str:
    """HTTP payload -> text: the declared charset, else a <meta> charset, else UTF-8, else cp1252.

    Undeclared legacy pages are usually windows-1252 (the WHATWG default for
    the Western web); decoding them as UTF-8 with replacement would destroy
    every accented letter.
    """
    meta = _META_CHARSET.search(payload[:2048])
    for charset in (declared, meta.group(1).decode("ascii") if meta else None):
        if not charset:
            continue
        try:
            return payload.decode(charset, "replace")
        except (LookupError, UnicodeError, ValueError):
            continue  # an unknown or non-text codec name: try the next source
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("cp1252", "replace")


def _warc_record_item(record, source: Optional[str], limits: RecordLimits, position: int) -> Any:
    """One WARC record -> Page, ("skip", reason) or (raw description, InputError)."""
    max_bytes = limits.max_bytes
    if record.rec_type != "response":
        return ("skip", record.rec_type or "unknown record type")
    record_id = record.rec_headers.get_header("WARC-Record-ID") or ""
    url = record.rec_headers.get_header("WARC-Target-URI")
    date = record.rec_headers.get_header("WARC-Date")
    if record.http_headers is not None:
        ctype = record.http_headers.get_header("Content-Type") or ""
        status = record.http_headers.get_statuscode()
        # Redirects and error pages are the server's boilerplate, not the
        # content at that URL.
        if not (status or "").startswith("2"):
            return ("skip", f"status {status}")
    else:
        # A non-HTTP response (dns:, ftp:): the record's own type describes it.
        ctype = record.rec_headers.get_header("Content-Type") or ""
    base = ctype.split(";")[0].strip().lower()
    if base and base not in WARC_PAGE_TYPES:
        return ("skip", base)
    limit = max_bytes * 4
    payload = record.content_stream().read(limit + 1)
    raw_desc = {"warc_record_id": record_id, "url": url, "content_type": ctype, "source": source}
    if len(payload) > limit:
        return (raw_desc, InputError(f"WARC payload over {limit} bytes"))
    content = decode_payload(payload, _declared_charset(ctype))
    try:
        return page_from_record(
            {"id": record_id.strip("<>"), "content": content, "url": url, "fetched_at": date,
             "content_type": ("text/plain" if base == "text/plain" else "text/html") if base else None},
            source=source, position=position, limits=limits)
    except InputError as exc:
        return ({**raw_desc, "content": content[:DEAD_LETTER_RAW_LIMIT]}, exc)


def _declared_length(record) -> int:
    try:
        return max(int(record.length or 0), 0)
    except (TypeError, ValueError):
        return 0


class _CountingStream:
    """A raw stream that counts the bytes read from it (the compressed bytes of a .warc.gz)."""

    def __init__(self, stream):
        self._stream = stream
        self.count = 0

    def read(self, *args):
        data = self._stream.read(*args)
        self.count += len(data)
        return data

    def readline(self, *args):
        data = self._stream.readline(*args)
        self.count += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._stream, name)


def iter_warc_pages(stream, source: Optional[str] = None, max_bytes: int = DEFAULT_MAX_PAGE_BYTES,
                    size: Optional[int] = None, limits: Optional[RecordLimits] = None,
                    guard: Any = None) -> Iterator[Any]:
    """Pages from a WARC stream (.warc or .warc.gz), read record by record.

    Yields a Page for each ``response`` record with a 2xx status and an HTML or
    text payload (id from WARC-Record-ID, url from WARC-Target-URI, fetched_at
    from WARC-Date); ``(raw, InputError)`` for such a record that is not a
    valid page; ``("skip", reason)`` for records that are not pages (warcinfo,
    request, metadata, revisit, images, scripts, redirects), which the caller
    counts. When ``size`` (or the stream position) shows bytes after the last
    record that warcio could not read, raises :class:`WarcReadError`: a
    truncated gzip member otherwise ends the iteration silently.

    ``guard`` (a bounded.ExpansionGuard) is charged each record's declared
    length against the compressed bytes read so far, before the record is
    read: a .warc.gz that would expand past its limits stops there (warcio
    itself inflates 16 KiB of compressed bytes at a time, so memory is
    bounded either way; the guard bounds the time). An exception of any type
    while one record is turned into a page makes that record a dead letter.
    """
    from warcio.archiveiterator import ArchiveIterator

    limits = limits or RecordLimits(max_bytes=max_bytes)
    counted = _CountingStream(stream) if guard is not None else stream
    records = ArchiveIterator(counted, arc2warc=True)
    end = 0
    compressed = False
    charged = 0
    for record in records:
        if guard is not None:
            guard.add(_declared_length(record), counted.count - charged)
            charged = counted.count
        compressed = compressed or getattr(getattr(records, "reader", None), "decompressor", None) is not None
        if record.rec_type is None:
            if not record.rec_headers.headers:
                yield ("skip", "blank bytes between records")
                continue
            # Headers that stop before the record type: the file was cut.
            yield ({"warc_record_id": record.rec_headers.get_header("WARC-Record-ID"), "source": source},
                   WarcReadError("WARC record header incomplete: the file is truncated or corrupt"))
            continue
        # Records are contiguous: this one starts where the last one ended.
        try:
            item = _warc_record_item(record, source, limits, position=end)
        except Exception as exc:  # pylint: disable=broad-except
            # Per-record isolation: one record's failure (a payload warcio
            # cannot de-chunk, a codec that raises) is that record's dead
            # letter; the next record is read as usual.
            item = ({"warc_record_id": record.rec_headers.get_header("WARC-Record-ID"),
                     "url": record.rec_headers.get_header("WARC-Target-URI"), "source": source},
                    InputError(f"WARC record could not be read as a page: {type(exc).__name__}: {exc}"))
        # Reads the rest of the record, so raw_stream.limit is what never came.
        end = records.get_record_offset() + records.get_record_length()
        missing = getattr(record.raw_stream, "limit", 0)
        if missing and not (isinstance(item, tuple) and isinstance(item[1], InputError)):
            item = ({"warc_record_id": record.rec_headers.get_header("WARC-Record-ID"),
                     "url": record.rec_headers.get_header("WARC-Target-URI"), "source": source},
                    WarcReadError(f"WARC {record.rec_type} record truncated: {missing} of its "
                                  f"{record.length} bytes are missing"))
        yield item
    # A gzip member cut short ends warcio's iteration without an error; the
    # compressed bytes it never reached show it. (Uncompressed files cannot
    # hide a cut: the last record comes out truncated, caught above.)
    if not compressed:
        return
    if size is None:
        try:
            size = stream.tell()
        except (AttributeError, OSError, ValueError):
            return
    if size - end > _WARC_TRAILER_SLACK:
        raise WarcReadError(
            f"{size - end} bytes after the last complete record (which ends at byte {end}) could not "
            "be read as WARC records: the file is truncated or corrupt")


# --------------------------------------------------------------------------
# Duplicate ids
#
# What a duplicate ``id`` means (README, "Duplicate ids"): a page is the pair
# (id, content_sha256).
# * Same id, same content: a re-delivery (a crawler retry, an overlapping
#   input partition). The first copy in input order (file, then position in
#   it) is decided; every further copy becomes a dead letter with stage
#   "duplicate", so pages in = decisions + dead letters still holds exactly
#   and a reviewer never sees the same page twice.
# * Same id, different content: the page changed between fetches. Each
#   version is decided, and the decisions tell them apart by content_sha256.
# The copies are found before scoring from a first, keys-only pass over the
# input (transforms.DropRedeliveries): what is grouped is a 32-byte key and a
# file position per page, never page content or output records, so memory on
# a local runner grows by bytes per page, not by pages.

RecordRef = Tuple[str, int]


def redelivery_key(page: Page) -> bytes:
    """One digest per (id, content): equal for re-deliveries, different for new versions."""
    digest = hashlib.sha256(page.id.encode("utf-8", "surrogatepass"))
    digest.update(b"\0")
    digest.update(page.content_sha256().encode("ascii"))
    return digest.digest()


def page_ref(page: Page) -> RecordRef:
    return page.source or "", page.position if page.position is not None else -1


def redelivered_copies(refs: Sequence[RecordRef]) -> List[Tuple[RecordRef, RecordRef]]:
    """The copies of one page -> [(copy that is a re-delivery, copy that is decided)], first in input order kept."""
    ordered = sorted(set(refs))
    return [(ref, ordered[0]) for ref in ordered[1:]]


def duplicate_dead_letter(page: Page, decided: RecordRef) -> Dict[str, Any]:
    """The dead letter of a re-delivered copy; ``raw`` is the page as read."""
    source, position = decided
    return dead_letter(
        page, "duplicate",
        f"DuplicatePage: id {page.id!r} with the same content (sha256 {page.content_sha256()[:12]}...) is "
        f"decided once, from {source or 'the input'} at {position}; this copy is a re-delivery")
