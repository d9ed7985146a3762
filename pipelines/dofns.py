"""DoFns: thin per-element wrappers around the pure functions.

Each emits good elements on the main output and failures on the
``DEAD_LETTER`` tagged output, counting both; ``ScoreBatchFn`` loads the model
once per worker in ``setup()``.
"""
from __future__ import annotations

import logging
from typing import Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from regenwatch.models.artifact import load_model
from regenwatch.models.text import PageError, normalize_page
from regenwatch.pipelines.pages import (
    InputError,
    Page,
    dead_letter,
    decision_record,
    flagged_record,
    iter_warc_pages,
    now_millis,
    page_from_json_line,
    page_from_record,
)

NAMESPACE = "regenwatch"
DEAD_LETTER = "dead_letter"
FLAGGED = "flagged"


def _dead_counter(stage: str):
    return Metrics.counter(NAMESPACE, f"dead_letter_{stage}")


class ParseJsonLineFn(beam.DoFn):
    """(filename, line bytes) -> Page, or a dead letter."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.read = Metrics.counter(NAMESPACE, "pages_read")
        self.blank = Metrics.counter(NAMESPACE, "blank_lines")
        self.dead = _dead_counter("parse")

    def process(self, element: Tuple[str, bytes]):
        source, line = element
        if not line.strip():
            # A blank line carries no page: counted, not dead-lettered.
            self.blank.inc()
            return
        self.read.inc()
        try:
            yield page_from_json_line(line, source=source, max_bytes=self.max_bytes)
        except InputError as exc:
            self.dead.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(line, "parse", exc, source=source))


class ReadAvroFileFn(beam.DoFn):
    """A matched .avro file -> Pages (streamed record by record), or dead letters."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.read = Metrics.counter(NAMESPACE, "pages_read")
        self.dead_parse = _dead_counter("parse")
        self.dead_read = _dead_counter("read")

    def process(self, readable_file):
        import fastavro

        path = readable_file.metadata.path
        index = 0
        try:
            with FileSystems.open(path) as handle:
                for index, record in enumerate(fastavro.reader(handle)):
                    self.read.inc()
                    try:
                        yield page_from_record(record, source=path, max_bytes=self.max_bytes)
                    except InputError as exc:
                        self.dead_parse.inc()
                        yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(record, "parse", exc, source=path))
        except (ValueError, OSError, EOFError, StopIteration) as exc:
            # A corrupt or truncated container: what was read is kept, the
            # rest of the file becomes one dead letter naming where it broke.
            self.read.inc()
            self.dead_read.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(
                f"{path} after record {index}", "read", exc, source=path))


class ReadWarcFileFn(beam.DoFn):
    """A matched .warc / .warc.gz file -> Pages from its response records."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.read = Metrics.counter(NAMESPACE, "pages_read")
        self.skipped = Metrics.counter(NAMESPACE, "warc_records_not_pages")
        self.dead_parse = _dead_counter("parse")
        self.dead_read = _dead_counter("read")

    def process(self, readable_file):
        from warcio.exceptions import ArchiveLoadFailed

        path = readable_file.metadata.path
        try:
            with FileSystems.open(path, compression_type="uncompressed") as handle:
                for item in iter_warc_pages(handle, source=path, max_bytes=self.max_bytes):
                    if isinstance(item, Page):
                        self.read.inc()
                        yield item
                    elif item[0] == "skip":
                        self.skipped.inc()
                    else:
                        self.read.inc()
                        self.dead_parse.inc()
                        yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(item[0], "parse", item[1], source=path))
        except (ArchiveLoadFailed, ValueError, OSError, EOFError) as exc:
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


class NormalizeFn(beam.DoFn):
    """Page -> (Page, NormalizedPage), or a dead letter (stage 'normalize')."""

    def __init__(self, max_bytes: int, max_sentences: int):
        self.max_bytes = max_bytes
        self.max_sentences = max_sentences
        self.dead = _dead_counter("normalize")
        self.obfuscated = Metrics.counter(NAMESPACE, "pages_obfuscated")

    def process(self, page: Page):
        try:
            normalized = normalize_page(page.content, page.content_type, max_chars=self.max_bytes,
                                        max_sentences=self.max_sentences)
        except PageError as exc:
            self.dead.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(page, "normalize", exc))
            return
        if normalized.signals:
            self.obfuscated.inc()
        yield page, normalized


class ScoreBatchFn(beam.DoFn):
    """A batch of (Page, NormalizedPage) -> decision records, plus flagged records tagged FLAGGED.

    The model is verified and loaded once per worker in setup(); a batch is
    scored with one vectorized call. If a batch fails, its pages are scored one
    by one so that only the page at fault becomes a dead letter.
    """

    def __init__(self, model_uri: str, threshold: Optional[float]):
        self.model_uri = model_uri
        self.threshold_override = threshold
        self.decided = Metrics.counter(NAMESPACE, "pages_decided")
        self.dead = _dead_counter("score")
        self.flag_counters = {s: Metrics.counter(NAMESPACE, f"flagged_{s}") for s in ("high", "medium", "low")}
        self.batch_sizes = Metrics.distribution(NAMESPACE, "score_batch_size")

    def setup(self):
        loaded = load_model(self.model_uri)
        self.model = loaded.model
        self.model_version = loaded.version
        self.threshold = (self.threshold_override if self.threshold_override is not None
                          else float(loaded.manifest.get("threshold", 0.5)))
        logging.info("regenwatch model %s loaded from %s (threshold %.3f)",
                     self.model_version, self.model_uri, self.threshold)

    def _emit(self, page, normalized, score, processed_at):
        self.decided.inc()
        decision = decision_record(page, score, self.threshold, self.model_version, processed_at)
        if decision["flagged"]:
            self.flag_counters[decision["severity"]].inc()
            yield beam.pvalue.TaggedOutput(FLAGGED, flagged_record(
                page, normalized, score, self.threshold, self.model_version, processed_at))
        yield decision

    def process(self, batch: List[Tuple[Page, object]]):
        self.batch_sizes.update(len(batch))
        processed_at = now_millis()
        try:
            scores = self.model.score_pages([n for _, n in batch], threshold=self.threshold)
        except (ValueError, TypeError, ArithmeticError, MemoryError) as exc:
            logging.warning("batch of %d failed (%s); scoring pages one by one", len(batch), exc)
            yield from self._one_by_one(batch, processed_at)
            return
        for (page, normalized), score in zip(batch, scores):
            yield from self._emit(page, normalized, score, processed_at)

    def _one_by_one(self, batch, processed_at) -> Iterable:
        for page, normalized in batch:
            try:
                [score] = self.model.score_pages([normalized], threshold=self.threshold)
            except (ValueError, TypeError, ArithmeticError, MemoryError) as exc:
                self.dead.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(page, "score", exc))
                continue
            yield from self._emit(page, normalized, score, processed_at)
