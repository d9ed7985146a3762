"""Streaming moderation: ``regenwatch stream``.

The batch job's moderation, :class:`~regenwatch.pipelines.transforms.ModeratePages`,
runs unchanged between an unbounded source and per-window Avro outputs::

    ReadPageStream         Pub/Sub subscription (--input_subscription), or a watched
                           folder (--input glob, fileio.MatchContinuously)
                           -> (pages, dead letters)
    ModeratePageStream     DeduplicatePages (id + content SHA-256, in the global window)
                           -> WindowInto(FixedWindows(--window_seconds))
                           -> ModeratePages (ScoreBatchFn hot-swaps a promoted model
                              every --model_refresh_seconds)
                           -> ModerationOutputs per window, dead letters windowed too
    WriteWindowedOutputs   <output>/{flagged,decisions,deadletter}-<window start>-<window end>
                           -00000-of-00001.avro, with the batch job's schemas

A window's files are written once the watermark passes the window's end. Data
behind the watermark (possible with Pub/Sub, never with the watched folder,
whose event time is the poll time) is dropped by the runner's default
allowed lateness of zero; Dataflow counts it as droppedDueToLateness.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, List, Optional, Tuple

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import FixedWindows, GlobalWindow
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Duration, Timestamp

from regenwatch.models.artifact import load_model
from regenwatch.pipelines.dofns import (
    DEAD_LETTER,
    NAMESPACE,
    ParseJsonLineFn,
    ReadJsonlRangeFn,
    ReadAvroFileFn,
    ReadWarcFileFn,
    UnsupportedFileFn,
)
from regenwatch.pipelines.options import (
    RegenwatchOptions,
    absolute_local_paths,
    record_limits,
    stream_model_refresh_seconds,
    validate_stream_options,
)
from regenwatch.pipelines.pagecost import DEFAULT_MAX_PAGE_WORK
from regenwatch.pipelines.pages import Page, RecordLimits, dead_letter
from regenwatch.pipelines.transforms import OUTPUT_PREFIXES, ModeratePages, ModerationOutputs, input_format
from regenwatch.schemas import load_schema

# Local runners (Beam 2.77, measured). The Python DirectRunner
# (BundleBasedDirectRunner) runs TestStream, reads Pub/Sub and fires each
# window as the watermark passes it, but cannot run MatchContinuously (its
# Watch transform fails the runner's GroupByKey replacement). The FnApiRunner
# runs MatchContinuously until --stop_after_seconds and writes every window at
# the end; it does not run TestStream.
LOCAL_STREAM_RUNNER = "apache_beam.runners.direct.direct_runner.BundleBasedDirectRunner"
LOCAL_WATCH_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"


# ---------------------------------------------------------------------------
# Pure helpers

def dedup_key(page: Page) -> Tuple[str, Page]:
    """(id + content SHA-256, page): a re-delivered page has the same key, an edited page a new one."""
    return f"{page.id}\x00{page.content_sha256()}", page


def _compact_utc(ts: Timestamp) -> str:
    return ts.to_utc_datetime().strftime("%Y%m%dT%H%M%SZ")


def window_file_name(prefix: str, window, shard_index: Optional[int], total_shards: Optional[int]) -> str:
    """<prefix>-<start>-<end>-SSSSS-of-NNNNN.avro; times in UTC, no ':' so any filesystem takes them."""
    parts = [prefix]
    if window != GlobalWindow():
        parts += [_compact_utc(window.start), _compact_utc(window.end)]
    if shard_index is not None and total_shards is not None:
        parts.append(f"{int(shard_index):05d}-of-{int(total_shards):05d}")
    return "-".join(parts) + ".avro"


class WindowFileNaming:
    """fileio file_naming callable (picklable) for one output prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self, window, pane, shard_index, total_shards, compression, destination):
        return window_file_name(self.prefix, window, shard_index, total_shards)


# ---------------------------------------------------------------------------
# Sink and DoFns

class AvroRecordSink(fileio.FileSink):
    """fileio.FileSink writing dict records as an Avro container with a schema from schemas/."""

    def __init__(self, schema_name: str):
        self.schema_name = schema_name
        self._writer = None

    def open(self, fh):
        import fastavro.write

        # Same codec as the batch job's WriteToAvro.
        self._writer = fastavro.write.Writer(fh, load_schema(self.schema_name), codec="deflate")

    def write(self, record):
        self._writer.write(record)

    def flush(self):
        self._writer.flush()


class AvroSinkFactory:
    """WriteToFiles calls sink(destination) per file; a picklable callable, not a lambda."""

    def __init__(self, schema_name: str):
        self.schema_name = schema_name

    def __call__(self, destination):
        return AvroRecordSink(self.schema_name)


class DeduplicatePagesFn(beam.DoFn):
    """(dedup key, Page) -> the page the first time its key is seen within ``ttl_seconds`` of event time.

    State is per key in the global window; a watermark timer clears it
    ``ttl_seconds`` after the first delivery, so state stays bounded by the
    pages of the last ``ttl_seconds``. Duplicates are counted, not dead-lettered:
    they are not bad input, and the page was already decided.
    """

    SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, ttl_seconds: float):
        self.ttl_seconds = ttl_seconds
        self.duplicates = Metrics.counter(NAMESPACE, "duplicate_pages_dropped")

    def process(self, element, timestamp=beam.DoFn.TimestampParam,
                seen=beam.DoFn.StateParam(SEEN), expiry=beam.DoFn.TimerParam(EXPIRY)):
        _, page = element
        if seen.read():
            self.duplicates.inc()
            return
        seen.write(True)
        expiry.set(min(timestamp + Duration.of(self.ttl_seconds), MAX_TIMESTAMP))
        yield page

    @on_timer(EXPIRY)
    def expire(self, seen=beam.DoFn.StateParam(SEEN)):
        seen.clear()


class ReadStreamFileFn(beam.DoFn):
    """A matched file (fileio.ReadableFile) -> Pages, or dead letters, by its extension.

    The batch job's per-format DoFns do the reading, one whole file per
    element (a file that arrives is read once, not split into byte ranges).
    """

    def __init__(self, max_bytes: int, limits: Optional[RecordLimits] = None):
        self.max_bytes = max_bytes
        self.jsonl_lines = ReadJsonlRangeFn(max_bytes, limits)
        self.jsonl = ParseJsonLineFn(max_bytes, limits)
        self.avro = ReadAvroFileFn(max_bytes, limits)
        self.warc = ReadWarcFileFn(max_bytes, limits)
        self.unsupported = UnsupportedFileFn()
        self.dead_read = Metrics.counter(NAMESPACE, "dead_letter_read")

    def process(self, readable_file):
        path = readable_file.metadata.path
        fmt = input_format(path)
        if fmt == "jsonl":
            # The batch job's line reader: 1 MiB reads, a line over the cap
            # dead-lettered with its first 1 MiB without ever being held whole,
            # a corrupt compressed file one dead letter after the lines before it.
            for out in self.jsonl_lines.process((path, 0, None)):
                if isinstance(out, beam.pvalue.TaggedOutput):
                    yield out
                else:
                    yield from self.jsonl.process(out)
        elif fmt == "avro":
            yield from self.avro.process(readable_file)
        elif fmt == "warc":
            yield from self.warc.process(readable_file)
        else:
            for record in self.unsupported.process(path):
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, record)


# ---------------------------------------------------------------------------
# Composites

class ParsePageMessages(beam.PTransform):
    """(source, message bytes) -> (pages, dead letters); one page per message, as JSON."""

    def __init__(self, max_bytes: int, limits: Optional[RecordLimits] = None):
        super().__init__()
        self.max_bytes = max_bytes
        self.limits = limits

    def expand(self, messages):
        parsed = messages | "ParseMessages" >> beam.ParDo(ParseJsonLineFn(self.max_bytes, self.limits)).with_outputs(
            DEAD_LETTER, main="pages")
        return parsed.pages, parsed[DEAD_LETTER]


class ReadPageStream(beam.PTransform):
    """PBegin -> (pages, dead letters) from a Pub/Sub subscription or a watched file glob."""

    def __init__(self, max_bytes: int, subscription: Optional[str] = None, pattern: Optional[str] = None,
                 poll_seconds: float = 10.0, stop_after_seconds: float = 0.0, limits: Optional[RecordLimits] = None):
        super().__init__()
        self.limits = limits
        if bool(subscription) == bool(pattern):
            raise ValueError("exactly one of subscription and pattern is required")
        self.max_bytes = max_bytes
        self.subscription = subscription
        self.pattern = pattern
        self.poll_seconds = poll_seconds
        self.stop_after_seconds = stop_after_seconds

    def expand(self, pbegin):
        if self.subscription:
            subscription = self.subscription
            return (
                pbegin
                | "ReadPubSub" >> beam.io.ReadFromPubSub(subscription=subscription)
                | "WithSource" >> beam.Map(lambda data: (subscription, data))
                | "Parse" >> ParsePageMessages(self.max_bytes, self.limits)
            )
        # Start and stop are fixed when the pipeline is built: MatchContinuously's
        # own default start is the time its module was imported.
        start = Timestamp.now()
        stop = start + Duration.of(self.stop_after_seconds) if self.stop_after_seconds > 0 else MAX_TIMESTAMP
        read = (
            pbegin
            | "WatchFiles" >> fileio.MatchContinuously(
                self.pattern, interval=self.poll_seconds, start_timestamp=start, stop_timestamp=stop,
                # A file rewritten with more pages is read again; the pages it
                # already had are then removed by DeduplicatePages.
                match_updated_files=True)
            | "OpenFiles" >> fileio.ReadMatches()
            | "ReadFiles" >> beam.ParDo(ReadStreamFileFn(self.max_bytes, self.limits)).with_outputs(
                DEAD_LETTER, main="pages")
        )
        return read.pages, read[DEAD_LETTER]


class DeduplicatePages(beam.PTransform):
    """Pages -> pages without re-deliveries (same id and content within ``ttl_seconds``)."""

    def __init__(self, ttl_seconds: float):
        super().__init__()
        self.ttl_seconds = ttl_seconds

    def expand(self, pages):
        return (
            pages
            | "KeyByIdAndContent" >> beam.Map(dedup_key).with_output_types(Tuple[str, Any])
            | "DropRedelivered" >> beam.ParDo(DeduplicatePagesFn(self.ttl_seconds))
        )


class ModeratePageStream(beam.PTransform):
    """(pages, read dead letters) -> ModerationOutputs in fixed windows."""

    def __init__(self, window_seconds: float, dedup_seconds: float, model_uri: str = "default",
                 threshold: Optional[float] = None, max_bytes: int = 5 * 1024 * 1024,
                 max_sentences: int = 2000, batch_size: int = 64, model_refresh_seconds: float = 60.0,
                 max_page_work: int = DEFAULT_MAX_PAGE_WORK):
        super().__init__()
        self.window_seconds = window_seconds
        self.dedup_seconds = dedup_seconds
        self.moderate = dict(model_uri=model_uri, threshold=threshold, max_bytes=max_bytes,
                             max_sentences=max_sentences, batch_size=batch_size,
                             model_refresh_seconds=model_refresh_seconds, max_page_work=max_page_work)

    def expand(self, inputs):
        pages, read_dead = inputs
        windowed = (
            pages
            | "Deduplicate" >> DeduplicatePages(self.dedup_seconds)
            | "Window" >> beam.WindowInto(FixedWindows(self.window_seconds))
        )
        moderated = windowed | "ModeratePages" >> ModeratePages(**self.moderate)
        windowed_read_dead = read_dead | "WindowReadDeadLetters" >> beam.WindowInto(FixedWindows(self.window_seconds))
        dead = (windowed_read_dead, moderated.dead_letters) | "AllDeadLetters" >> beam.Flatten()
        return moderated._replace(dead_letters=dead)


class WriteWindowedAvro(beam.PTransform):
    """Windowed records -> one Avro file per window under ``directory``."""

    def __init__(self, directory: str, schema_name: str, shards: int = 1):
        super().__init__()
        self.directory = directory
        self.schema_name = schema_name
        self.shards = shards

    def expand(self, records):
        return records | fileio.WriteToFiles(
            path=self.directory,
            file_naming=WindowFileNaming(OUTPUT_PREFIXES[self.schema_name]),
            sink=AvroSinkFactory(self.schema_name),
            shards=self.shards,
        )


class WriteWindowedOutputs(beam.PTransform):
    """ModerationOutputs (windowed) -> per-window flagged/decisions/deadletter Avro files."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def expand(self, outputs: ModerationOutputs):
        return {
            "flagged": outputs.flagged | "WriteFlagged" >> WriteWindowedAvro(self.directory, "flagged"),
            "decisions": outputs.decisions | "WriteDecisions" >> WriteWindowedAvro(self.directory, "decision"),
            "dead_letters": outputs.dead_letters | "WriteDeadLetters" >> WriteWindowedAvro(
                self.directory, "deadletter"),
        }


# ---------------------------------------------------------------------------
# Pipeline

def build_stream_pipeline(p: beam.Pipeline, opts: RegenwatchOptions) -> dict:
    pages, read_dead = p | "ReadPageStream" >> ReadPageStream(
        opts.max_page_bytes, subscription=opts.input_subscription,
        pattern=None if opts.input_subscription else opts.input,
        poll_seconds=opts.poll_seconds, stop_after_seconds=opts.stop_after_seconds, limits=record_limits(opts))
    moderated = (pages, read_dead) | "ModeratePageStream" >> ModeratePageStream(
        window_seconds=opts.window_seconds,
        dedup_seconds=opts.dedup_seconds,
        model_uri=opts.model,
        threshold=opts.threshold,
        max_bytes=opts.max_page_bytes,
        max_sentences=opts.max_sentences,
        max_page_work=opts.max_page_work,
        batch_size=opts.batch_size,
        model_refresh_seconds=stream_model_refresh_seconds(opts),
    )
    return moderated | "WriteWindows" >> WriteWindowedOutputs(opts.output)


def make_stream_options(argv: Optional[List[str]] = None) -> PipelineOptions:
    options = PipelineOptions(argv)
    std = options.view_as(StandardOptions)
    std.streaming = True
    if std.runner in (None, "DirectRunner", "direct"):
        # Beam 2.77's DirectRunner first tries to download the Prism runner
        # (no network on many hosts), so a local runner is picked by source.
        subscription = options.view_as(RegenwatchOptions).input_subscription
        std.runner = LOCAL_STREAM_RUNNER if subscription else LOCAL_WATCH_RUNNER
    return options


def run(argv: Optional[List[str]] = None) -> PipelineResult:
    """Submit the streaming job and wait: until cancelled, or until --stop_after_seconds for a folder."""
    options = make_stream_options(argv)
    opts = options.view_as(RegenwatchOptions)
    validate_stream_options(opts)
    absolute_local_paths(opts)
    # Fail at submission, not on a worker, when the model is unusable.
    loaded = load_model(opts.model)
    source = opts.input_subscription or f"{opts.input} (polled every {opts.poll_seconds:g}s)"
    print(f"regenwatch stream: {source} -> {opts.output}, {opts.window_seconds:g}s windows, "
          f"model {loaded.version}", file=sys.stderr)
    p = beam.Pipeline(options=options)
    build_stream_pipeline(p, opts)
    result = p.run()
    result.wait_until_finish()
    logging.info("regenwatch stream finished in state %s", result.state)
    return result
