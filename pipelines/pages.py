"""Pure functions between raw input and output records (no Beam here).

Input records become :class:`Page`; anything wrong with one raises
:class:`InputError` with a reason, which the DoFns turn into dead letters.
Output records are plain dicts shaped by the Avro schemas in ``schemas/``.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence

from regenwatch.models.classifier import PageScore, severity_for
from regenwatch.models.text import DEFAULT_MAX_CONTENT_CHARS, NormalizedPage, PageError

DEAD_LETTER_RAW_LIMIT = 1024 * 1024
DEFAULT_MAX_PAGE_BYTES = DEFAULT_MAX_CONTENT_CHARS
SUPPORTED_CONTENT_TYPES = ("text/html", "text/plain", "application/xhtml+xml")


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

    def content_sha256(self) -> str:
        return hashlib.sha256(self.content.encode("utf-8", "surrogatepass")).hexdigest()

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, ensure_ascii=False)


def now_millis() -> int:
    return int(time.time() * 1000)


def _optional_str(record: Dict[str, Any], key: str) -> Optional[str]:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"field '{key}' must be a string or null, got {type(value).__name__}")
    return value


def page_from_record(record: Any, source: Optional[str] = None, max_bytes: int = DEFAULT_MAX_PAGE_BYTES) -> Page:
    """Validate a decoded record (JSON object or Avro record) into a Page."""
    if not isinstance(record, dict):
        raise InputError(f"a page must be a JSON object, got {type(record).__name__}")
    if "id" not in record or record["id"] is None:
        raise InputError("missing required field 'id'")
    page_id = record["id"]
    if not isinstance(page_id, str) or not page_id.strip():
        raise InputError(f"field 'id' must be a non-empty string, got {type(page_id).__name__}")
    if "content" not in record or record["content"] is None:
        raise InputError("missing required field 'content'")
    content = record["content"]
    if not isinstance(content, str):
        raise InputError(f"field 'content' must be a string, got {type(content).__name__}")
    if not content.strip():
        raise InputError("field 'content' is empty or whitespace only")
    if len(content) > max_bytes:
        raise InputError(f"content has {len(content)} characters, over the cap of {max_bytes} (--max_page_bytes)")
    content_type = _optional_str(record, "content_type")
    if content_type is not None:
        base = content_type.split(";")[0].strip().lower()
        if base not in SUPPORTED_CONTENT_TYPES:
            raise InputError(f"unsupported content_type {content_type!r}; expected text/html or text/plain")
        content_type = base
    return Page(
        id=page_id,
        content=content,
        url=_optional_str(record, "url"),
        fetched_at=_optional_str(record, "fetched_at"),
        content_type=content_type,
        source=source,
    )


def page_from_json_line(line: bytes, source: Optional[str] = None, max_bytes: int = DEFAULT_MAX_PAGE_BYTES) -> Page:
    """One JSON Lines line (bytes) -> Page."""
    # Checked before decoding so a 20 MB line costs no JSON parse.
    if len(line) > max_bytes * 4:
        raise InputError(f"line has {len(line)} bytes, far over the page cap of {max_bytes} (--max_page_bytes)")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"line is not valid UTF-8: {exc}") from exc
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise InputError(f"invalid JSON: {exc}") from exc
    return page_from_record(record, source=source, max_bytes=max_bytes)


def raw_for_dead_letter(raw: Any) -> tuple:
    """(string, truncated) for a dead letter's raw field, capped at 1 MiB of UTF-8."""
    if isinstance(raw, Page):
        raw = raw.to_json()
    if isinstance(raw, bytes):
        data = raw[:DEAD_LETTER_RAW_LIMIT]
        return data.decode("utf-8", "replace"), len(raw) > DEAD_LETTER_RAW_LIMIT
    if not isinstance(raw, str):
        try:
            raw = json.dumps(raw, ensure_ascii=False, default=repr)
        except (TypeError, ValueError):
            raw = repr(raw)
    data = raw.encode("utf-8", "replace")
    if len(data) <= DEAD_LETTER_RAW_LIMIT:
        return raw, False
    return data[:DEAD_LETTER_RAW_LIMIT].decode("utf-8", "ignore"), True


def dead_letter(raw: Any, stage: str, error: BaseException | str, source: Optional[str] = None,
                page_id: Optional[str] = None) -> Dict[str, Any]:
    text, truncated = raw_for_dead_letter(raw)
    if isinstance(error, BaseException):
        error = f"{type(error).__name__}: {error}"
    if isinstance(raw, Page):
        page_id = page_id or raw.id
        source = source or raw.source
    return {
        "raw": text,
        "raw_truncated": truncated,
        "stage": stage,
        "error": str(error)[:10000],
        "id": page_id,
        "source": source,
        "failed_at": now_millis(),
    }


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


def iter_warc_pages(stream, source: Optional[str] = None, max_bytes: int = DEFAULT_MAX_PAGE_BYTES) -> Iterator[Any]:
    """Pages from a WARC stream (.warc or .warc.gz): yields Page or (raw, error) for bad records.

    Only ``response`` records with an HTML or text payload are pages; request,
    metadata, warcinfo and image/script responses are not (they are skipped and
    counted by the caller, not dead-lettered).
    """
    from warcio.archiveiterator import ArchiveIterator

    for record in ArchiveIterator(stream, arc2warc=True):
        if record.rec_type != "response":
            yield ("skip", record.rec_type)
            continue
        record_id = record.rec_headers.get_header("WARC-Record-ID") or ""
        url = record.rec_headers.get_header("WARC-Target-URI")
        date = record.rec_headers.get_header("WARC-Date")
        ctype = ""
        if record.http_headers is not None:
            ctype = (record.http_headers.get_header("Content-Type") or "").lower()
        base = ctype.split(";")[0].strip()
        if base and not (base.startswith("text/") or base == "application/xhtml+xml"):
            yield ("skip", base)
            continue
        payload = record.content_stream().read(max_bytes * 4 + 1)
        raw_desc = {"warc_record_id": record_id, "url": url, "content_type": ctype}
        if len(payload) > max_bytes * 4:
            yield (raw_desc, InputError(f"WARC payload over {max_bytes * 4} bytes"))
            continue
        charset = "utf-8"
        if "charset=" in ctype:
            charset = ctype.split("charset=")[-1].split(";")[0].strip() or "utf-8"
        try:
            content = payload.decode(charset)
        except (UnicodeDecodeError, LookupError):
            content = payload.decode("utf-8", "replace")
        try:
            yield page_from_record(
                {"id": record_id.strip("<>"), "content": content, "url": url, "fetched_at": date,
                 "content_type": "text/html" if "html" in base else ("text/plain" if base else None)},
                source=source, max_bytes=max_bytes)
        except InputError as exc:
            yield ({**raw_desc, "content": content[:DEAD_LETTER_RAW_LIMIT]}, exc)
