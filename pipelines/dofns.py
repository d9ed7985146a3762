"""DoFns: thin per-element wrappers around the pure functions.

Each emits good elements on the main output and failures on the
``DEAD_LETTER`` tagged output, counting both; ``ScoreBatchFn`` loads the model
once per worker process in ``setup()`` and, in streaming, can swap it for a
newly promoted one.
"""
from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from regenwatch.models.artifact import (
    LoadedModel,
    ModelLoadError,
    checked_manifest,
    load_model,
    read_manifest,
    resolve_model_uri,
)
from regenwatch.models.text import PageError, looks_like_html, normalize_page
from regenwatch.pipelines.bounded import (
    ExpansionGuard,
    avro_block_limit,
    avro_guard,
    install_bounded_avro_codecs,
    jsonl_lines,
)
from regenwatch.pipelines.pagecost import DEFAULT_MAX_PAGE_WORK, page_work, quick_bound
from regenwatch.pipelines.pages import (
    InputError,
    Page,
    RecordLimits,
    dead_letter,
    decision_record,
    duplicate_dead_letter,
    encodable,
    flagged_record,
    iter_warc_pages,
    now_millis,
    page_from_json_line,
    page_from_record,
    page_ref,
)

# Per-record isolation. Where one record (a line, an Avro record, a WARC
# record, a page, a batch's page) is handled, ``except Exception`` is
# deliberate: whatever one record raises, of any type (RecursionError from
# deep JSON, UnicodeEncodeError, MemoryError, a library's own bug), becomes
# that record's dead letter with its stage and the run goes on. Exceptions
# that are not Exception (KeyboardInterrupt, SystemExit) still end the run.

NAMESPACE = "regenwatch"
DEAD_LETTER = "dead_letter"
FLAGGED = "flagged"


def _dead_counter(stage: str):
    return Metrics.counter(NAMESPACE, f"dead_letter_{stage}")


def _limits(max_bytes: int, limits: Optional[RecordLimits]) -> RecordLimits:
    return limits if limits is not None else RecordLimits(max_bytes=max_bytes)


class ParseJsonLineFn(beam.DoFn):
    """(filename, line bytes[, byte offset]) -> Page, or a dead letter."""

    def __init__(self, max_bytes: int, limits: Optional[RecordLimits] = None):
        self.max_bytes = max_bytes
        self.limits = _limits(max_bytes, limits)
        self.read = Metrics.counter(NAMESPACE, "pages_read")
        self.blank = Metrics.counter(NAMESPACE, "blank_lines")
        self.dead = _dead_counter("parse")

    def process(self, element: Tuple):
        source, line = element[0], element[1]
        position = element[2] if len(element) > 2 else None
        if not line.strip():
            # A blank line carries no page: counted, not dead-lettered.
            self.blank.inc()
            return
        self.read.inc()
        try:
            page = page_from_json_line(line, source=source, position=position, limits=self.limits)
        except Exception as exc:  # pylint: disable=broad-except
            # Per-record isolation (see the top of this module).
            self.dead.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(line, "parse", exc, source=source))
            return
        yield page


class ReadJsonlRangeFn(beam.DoFn):
    """(path, start, end) -> (path, line bytes, byte offset) for each line starting in the byte range.

    Lines are read in 1 MiB chunks (pages.iter_jsonl_lines): a line over the
    page cap becomes a dead letter with its first 1 MiB, without ever being
    held whole. ``.gz`` files are inflated 1 MiB at a time under the file's
    expansion limits (pipelines/bounded.py). A file starting with a UTF-16 or
    UTF-32 byte-order mark is decoded to UTF-8 as it is read (whole, by the
    range that starts at 0; offsets are then in the UTF-8 text). A file that
    cannot be read on (a corrupt gzip, an expansion over the limits) ends in
    one dead letter; the lines before it are kept.
    """

    def __init__(self, max_bytes: int, limits: Optional[RecordLimits] = None):
        self.limits = _limits(max_bytes, limits)
        self.max_bytes = self.limits.max_bytes
        self.read = Metrics.counter(NAMESPACE, "pages_read")
        self.dead_parse = _dead_counter("parse")
        self.dead_read = _dead_counter("read")
        self.transcoded = Metrics.counter(NAMESPACE, "files_transcoded_to_utf8")

    def process(self, element: Tuple[str, int, Optional[int]]):
        path, start, end = element
        offset = start
        try:
            # Opened as bytes: .gz is inflated here (GunzipReader), never by
            # Beam's CompressedFile; compressed files are one range, never seeked into.
            with FileSystems.open(path, compression_type="uncompressed") as handle:
                for line in jsonl_lines(handle, path, self.limits, start, end,
                                        on_transcode=lambda codec: self.transcoded.inc()):
                    offset = line.offset
                    if not line.over_cap:
                        yield path, line.data, line.offset
                        continue
                    self.read.inc()
                    self.dead_parse.inc()
                    record = dead_letter(line.data, "parse", InputError(
                        f"line at byte {line.offset} has {line.length} bytes, far over the page cap of "
                        f"{self.max_bytes} characters (--max_page_bytes)"), source=path)
                    yield beam.pvalue.TaggedOutput(DEAD_LETTER, {**record, "raw_truncated": True})
        except Exception as exc:  # pylint: disable=broad-except
            # A corrupt or truncated compressed file (zlib.error, EOFError,
            # OSError...), or one over its expansion limits: the rest of the
            # file is one dead letter.
            self.read.inc()
            self.dead_read.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(
                f"{path} after byte {offset} of the uncompressed text", "read", exc, source=path))


class ReadAvroFileFn(beam.DoFn):
    """A matched .avro file -> Pages (streamed record by record), or dead letters.

    Blocks are read through pipelines/bounded.py's codec readers: a block
    over its size limit, or a file over its expansion limits, ends the file
    in one dead letter.
    """

    def __init__(self, max_bytes: int, limits: Optional[RecordLimits] = None):
        self.limits = _limits(max_bytes, limits)
        self.max_bytes = self.limits.max_bytes
        self.read = Metrics.counter(NAMESPACE, "pages_read")
        self.dead_parse = _dead_counter("parse")
        self.dead_read = _dead_counter("read")

    def setup(self):
        install_bounded_avro_codecs()

    def process(self, readable_file):
        import fastavro

        install_bounded_avro_codecs()  # idempotent; also when called without setup()
        path = readable_file.metadata.path
        index = 0
        guard = ExpansionGuard(self.limits.max_expanded_bytes, self.limits.max_expansion_ratio, what=path)
        try:
            with FileSystems.open(path, compression_type="uncompressed") as handle, \
                    avro_guard(guard, avro_block_limit(self.max_bytes)):
                for index, record in enumerate(fastavro.reader(handle)):
                    self.read.inc()
                    try:
                        page = page_from_record(record, source=path, position=index, limits=self.limits)
                    except Exception as exc:  # pylint: disable=broad-except
                        # Per-record isolation (see the top of this module).
                        self.dead_parse.inc()
                        yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(record, "parse", exc, source=path))
                        continue
                    yield page
        except Exception as exc:  # pylint: disable=broad-except
            # A corrupt or truncated container: what was read is kept, the
            # rest of the file becomes one dead letter naming where it broke.
            # Broad on purpose: fuzzing fastavro with corrupt files raised
            # ValueError, EOFError, IndexError, KeyError, zlib.error,
            # UnicodeDecodeError and SchemaParseException; a bad file is
            # input, and input never crashes a run.
            self.read.inc()
            self.dead_read.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(
                f"{path} after record {index}", "read", exc, source=path))


class ReadWarcFileFn(beam.DoFn):
    """A matched .warc / .warc.gz file -> Pages from its response records."""

    def __init__(self, max_bytes: int, limits: Optional[RecordLimits] = None):
        self.limits = _limits(max_bytes, limits)
        self.max_bytes = self.limits.max_bytes
        self.read = Metrics.counter(NAMESPACE, "pages_read")
        self.skipped = Metrics.counter(NAMESPACE, "warc_records_not_pages")
        self.dead_parse = _dead_counter("parse")
        self.dead_read = _dead_counter("read")

    def process(self, readable_file):
        path = readable_file.metadata.path
        try:
            with FileSystems.open(path, compression_type="uncompressed") as handle:
                guard = ExpansionGuard(self.limits.max_expanded_bytes, self.limits.max_expansion_ratio, what=path)
                for item in iter_warc_pages(handle, source=path, size=readable_file.metadata.size_in_bytes,
                                            limits=self.limits, guard=guard):
                    if isinstance(item, Page):
                        self.read.inc()
                        yield item
                    elif item[0] == "skip":
                        self.skipped.inc()
                    else:
                        stage = getattr(item[1], "stage", "parse")
                        self.read.inc()
                        (self.dead_read if stage == "read" else self.dead_parse).inc()
                        yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(item[0], stage, item[1], source=path))
        except Exception as exc:  # pylint: disable=broad-except
            # The rest of a truncated or corrupt file: one dead letter. Broad
            # on purpose: besides ArchiveLoadFailed, warcio raises
            # AttributeError, ValueError or zlib.error on corrupt headers and
            # members (found by fuzzing); a bad file never crashes a run.
            self.read.inc()
            self.dead_read.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(path, "read", exc, source=path))


class UnsupportedFileFn(beam.DoFn):
    """A matched file whose extension names no supported format: one dead letter."""

    def __init__(self):
        self.read = Metrics.counter(NAMESPACE, "pages_read")
        self.dead = _dead_counter("read")

    def process(self, path: str):
        self.read.inc()
        self.dead.inc()
        yield dead_letter(path, "read", InputError(
            "unsupported file extension; expected .jsonl, .ndjson, .json, .avro, .warc or .warc.gz"),
            source=path)


class PageTooCostly(PageError):
    """A page whose estimated normalization work is over --max_page_work (pipelines/pagecost.py)."""


def check_page_work(page: Page, max_page_work: int) -> None:
    """Raises PageTooCostly when the page's estimated work (pagecost.page_work) is over the budget."""
    if page.content_type is None:
        is_html = looks_like_html(page.content)
    else:
        is_html = "html" in page.content_type.lower()
    if quick_bound(page.content, is_html) <= max_page_work:
        return  # far within the budget: no need for the scan
    work = page_work(page.content, is_html, stop_above=max_page_work)
    if work.total > max_page_work:
        raise PageTooCostly(f"normalizing this page would cost about {work.describe()}, over the budget of "
                            f"{max_page_work:,} (--max_page_work)")


class NormalizeFn(beam.DoFn):
    """Page -> (Page, NormalizedPage), or a dead letter (stage 'normalize').

    A page whose estimated work is over ``max_page_work`` is refused before
    it is parsed (PageTooCostly).
    """

    def __init__(self, max_bytes: int, max_sentences: int, max_page_work: int = DEFAULT_MAX_PAGE_WORK):
        self.max_bytes = max_bytes
        self.max_sentences = max_sentences
        self.max_page_work = max_page_work
        self.dead = _dead_counter("normalize")
        self.too_costly = Metrics.counter(NAMESPACE, "pages_over_work_budget")
        self.obfuscated = Metrics.counter(NAMESPACE, "pages_obfuscated")

    def process(self, page: Page):
        try:
            check_page_work(page, self.max_page_work)
            normalized = normalize_page(page.content, page.content_type, max_chars=self.max_bytes,
                                        max_sentences=self.max_sentences)
        except Exception as exc:  # pylint: disable=broad-except
            # Per-record isolation (see the top of this module).
            self.dead.inc()
            if isinstance(exc, PageTooCostly):
                self.too_costly.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(page, "normalize", exc))
            return
        if normalized.signals:
            self.obfuscated.inc()
        yield page, normalized


# Models the launcher of a run in this process has verified and loaded, by
# (artifact URI, SHA-256). With the in-memory runner the SDK harness runs in
# the launcher's process, and unpickling the model a second time there cost
# as much as the launcher's own load (pure-Python joblib unpickler; ~0.3-1.3
# CPU-s per load, 2 of the pipeline's fixed costs). Worker processes of other
# runners never see an entry and load as before.
_VERIFIED: Dict[Tuple[str, str], LoadedModel] = {}
_VERIFIED_LOCK = threading.Lock()


@contextlib.contextmanager
def verified_model(model_uri: Optional[str], loaded: LoadedModel) -> Iterator[None]:
    """While the block runs, ScoreBatchFn in this process reuses ``loaded`` (see ``_VERIFIED``)."""
    key = (resolve_model_uri(model_uri), loaded.manifest["sha256"])
    with _VERIFIED_LOCK:
        _VERIFIED[key] = loaded
    try:
        yield
    finally:
        with _VERIFIED_LOCK:
            if _VERIFIED.get(key) is loaded:
                del _VERIFIED[key]


def _reuse_verified(model_uri: str, expected_sha256: Optional[str]) -> Optional[LoadedModel]:
    """The launcher's model when it verified exactly ``expected_sha256`` at this URI, else None.

    The manifest at the URI is still read (and its HMAC checked when the key
    is set), so a model swapped since submission is refused as load_model
    would refuse it; only the unpickling is saved.
    """
    if expected_sha256 is None:
        return None
    artifact_uri = resolve_model_uri(model_uri)
    with _VERIFIED_LOCK:
        loaded = _VERIFIED.get((artifact_uri, expected_sha256))
    if loaded is None:
        return None
    checked_manifest(artifact_uri, expected_sha256)
    return loaded


class _ModelHolder:
    """The model a worker process decides with, shared by its ScoreBatchFn instances.

    One per worker process and ScoreBatchFn (through ``apache_beam.utils.shared``),
    so threads share one copy of the model, and a runner that re-creates DoFn
    instances per bundle (the Python DirectRunner does) keeps the model it
    hot-swapped to instead of reloading whatever is at the path. ``current``
    is replaced, never mutated, so a batch reads it once and is decided by
    one model from start to end.
    """

    def __init__(self, loaded: LoadedModel, next_check: float):
        self.current = loaded
        self.next_check = next_check
        # (manifest SHA-256, artifact size, artifact mtime) of a candidate
        # that failed verification: it is not re-read every check, but a
        # rewrite of either file is verified afresh.
        self.refused: Optional[tuple] = None
        self.lock = threading.Lock()


class ScoreBatchFn(beam.DoFn):
    """A batch of (Page, NormalizedPage) -> decision records, plus flagged records tagged FLAGGED.

    The model is verified and loaded once per worker process in setup(); a
    batch is scored with one vectorized call. If a batch fails, its pages are
    scored one by one so that only the page at fault becomes a dead letter.

    Hot swap (``refresh_seconds`` > 0, streaming): at most every
    ``refresh_seconds`` by ``clock`` the manifest at the model path is read;
    when its SHA-256 differs from the model in use, the new artifact is loaded
    through :func:`load_model` (hash, HMAC and library checks) and replaces
    the old one for the next batch. A candidate that fails verification is
    refused (counter ``model_swaps_refused``, a warning naming the reason)
    and the old model keeps deciding. Every record carries the
    ``model_version`` that decided it. With ``refresh_seconds`` 0 (batch) the
    model path is read once, in setup().
    """

    def __init__(self, model_uri: str, threshold: Optional[float], refresh_seconds: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, expected_sha256: Optional[str] = None):
        self.model_uri = model_uri
        # The artifact digest the launcher verified (HMAC included, when it
        # has the key): a worker refuses, before unpickling, a model swapped
        # since submission, even without the key in its own environment.
        self.expected_sha256 = expected_sha256
        self.threshold_override = threshold
        self.refresh_seconds = float(refresh_seconds or 0.0)
        self.clock = clock
        self._shared = shared.Shared()
        self.decided = Metrics.counter(NAMESPACE, "pages_decided")
        self.dead = _dead_counter("score")
        self.dead_encode = _dead_counter("encode")
        self.flag_counters = {s: Metrics.counter(NAMESPACE, f"flagged_{s}") for s in ("high", "medium", "low")}
        self.batch_sizes = Metrics.distribution(NAMESPACE, "score_batch_size")
        self.swap_counter = Metrics.counter(NAMESPACE, "model_swaps")
        self.refused_counter = Metrics.counter(NAMESPACE, "model_swaps_refused")

    def _first_load(self) -> _ModelHolder:
        loaded = _reuse_verified(self.model_uri, self.expected_sha256)
        if loaded is not None:
            logging.info("regenwatch model %s from %s: the one the launcher verified", loaded.version,
                         self.model_uri)
        else:
            loaded = load_model(self.model_uri, expected_sha256=self.expected_sha256)
            logging.info("regenwatch model %s loaded from %s", loaded.version, self.model_uri)
        return _ModelHolder(loaded, self._next_check_after(self.clock()))

    def _next_check_after(self, now: float) -> float:
        return now + self.refresh_seconds if self.refresh_seconds > 0 else math.inf

    def setup(self):
        self.holder = self._shared.acquire(self._first_load)

    def _threshold(self, loaded: LoadedModel) -> float:
        if self.threshold_override is not None:
            return self.threshold_override
        return float(loaded.manifest.get("threshold", 0.5))

    def _candidate_key(self, artifact_uri: str, manifest: dict) -> tuple:
        try:
            [meta] = FileSystems.match([artifact_uri])[0].metadata_list
            return manifest["sha256"], meta.size_in_bytes, meta.last_updated_in_seconds
        except (OSError, ValueError, BeamIOError):
            return manifest["sha256"], None, None

    def maybe_refresh(self) -> LoadedModel:
        """The model to decide the next batch with, after a manifest check if one is due."""
        holder = self.holder
        if self.clock() < holder.next_check:
            return holder.current
        with holder.lock:
            now = self.clock()
            if now < holder.next_check:  # another thread checked meanwhile
                return holder.current
            holder.next_check = self._next_check_after(now)
            artifact_uri = resolve_model_uri(self.model_uri)
            try:
                manifest = read_manifest(artifact_uri)
            except ModelLoadError as exc:
                # Mid-promotion or a removed file: the model in use stays; the
                # next check looks again.
                logging.warning("model check: %s; still deciding with %s", exc, holder.current.version)
                return holder.current
            if manifest["sha256"] == holder.current.manifest["sha256"]:
                return holder.current
            key = self._candidate_key(artifact_uri, manifest)
            if key == holder.refused:
                return holder.current
            try:
                loaded = load_model(self.model_uri)
            except ModelLoadError as exc:
                holder.refused = key
                self.refused_counter.inc()
                logging.warning("model %s at %s refused, still deciding with %s: %s",
                                manifest.get("version"), artifact_uri, holder.current.version, exc)
                return holder.current
            logging.warning("model swapped: %s -> %s (%s)", holder.current.version, loaded.version, artifact_uri)
            holder.current = loaded
            holder.refused = None
            self.swap_counter.inc()
            return loaded

    def _schemas(self) -> dict:
        schemas = getattr(self, "_parsed_schemas", None)
        if schemas is None:
            import fastavro

            from regenwatch.schemas import load_schema

            schemas = self._parsed_schemas = {name: fastavro.parse_schema(load_schema(name))
                                              for name in ("decision", "flagged")}
        return schemas

    def _emit(self, loaded, threshold, page, normalized, score, processed_at):
        # Both records are built and encoded (as the writer will) before
        # either is emitted: a page whose records cannot be written becomes
        # one dead letter (stage "encode") instead of failing the write.
        try:
            decision = decision_record(page, score, threshold, loaded.version, processed_at)
            flagged = (flagged_record(page, normalized, score, threshold, loaded.version, processed_at)
                       if decision["flagged"] else None)
            schemas = self._schemas()
            encodable(decision, schemas["decision"])
            if flagged is not None:
                # Cluster fields are added later, with their schema defaults until then.
                encodable(flagged, schemas["flagged"])
        except Exception as exc:  # pylint: disable=broad-except
            # Per-record isolation (see the top of this module).
            self.dead_encode.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(page, "encode", exc))
            return
        self.decided.inc()
        if flagged is not None:
            self.flag_counters[decision["severity"]].inc()
            yield beam.pvalue.TaggedOutput(FLAGGED, flagged)
        yield decision

    def process(self, batch: List[Tuple[Page, object]]):
        self.batch_sizes.update(len(batch))
        loaded = self.maybe_refresh()
        threshold = self._threshold(loaded)
        processed_at = now_millis()
        try:
            scores = loaded.model.score_pages([n for _, n in batch], threshold=threshold)
            if len(scores) != len(batch):
                raise ValueError(f"the model scored {len(scores)} of {len(batch)} pages")
        except Exception as exc:  # pylint: disable=broad-except
            # One page can fail a vectorized batch: each is retried alone,
            # so only the page at fault becomes a dead letter.
            logging.warning("batch of %d failed (%s); scoring pages one by one", len(batch), exc)
            yield from self._one_by_one(loaded, threshold, batch, processed_at)
            return
        for (page, normalized), score in zip(batch, scores):
            yield from self._emit(loaded, threshold, page, normalized, score, processed_at)

    def _one_by_one(self, loaded, threshold, batch, processed_at) -> Iterable:
        for page, normalized in batch:
            try:
                [score] = loaded.model.score_pages([normalized], threshold=threshold)
            except Exception as exc:  # pylint: disable=broad-except
                # Per-record isolation (see the top of this module).
                self.dead.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(page, "score", exc))
                continue
            yield from self._emit(loaded, threshold, page, normalized, score, processed_at)


class DropRedeliveriesFn(beam.DoFn):
    """Page -> the page, or a dead letter (stage "duplicate") when it is a re-delivered copy.

    ``redelivered`` (a side input) maps each re-delivered copy, by (source,
    position), to the copy that is decided; it holds duplicates only.
    """

    def __init__(self):
        self.dead = _dead_counter("duplicate")

    def process(self, page: Page, redelivered):
        decided = redelivered.get(page_ref(page))
        if decided is None:
            yield page
            return
        self.dead.inc()
        yield beam.pvalue.TaggedOutput(DEAD_LETTER, duplicate_dead_letter(page, decided))
