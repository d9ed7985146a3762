"""Composite transforms: ReadPages, ModeratePages, WriteModerationOutputs.

``ModeratePages`` is the domain transform: a PCollection of :class:`Page`
in, a :class:`ModerationOutputs` of decisions, flagged records and dead
letters out. Reading and writing are separate composites so streaming mode
and tests can feed and drain it their own way.
"""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Dict, List, NamedTuple, Optional

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from regenwatch.pipelines.clustering import AttachClusters, ComputeClusters, JoinClusters
from regenwatch.pipelines.dofns import (
    DEAD_LETTER,
    FLAGGED,
    NormalizeFn,
    ParseJsonLineFn,
    ReadAvroFileFn,
    ReadJsonlRangeFn,
    DropRedeliveriesFn,
    ReadWarcFileFn,
    ScoreBatchFn,
    UnsupportedFileFn,
)
from regenwatch.pipelines.pagecost import DEFAULT_MAX_PAGE_WORK
from regenwatch.pipelines.pages import COMPRESSED_SUFFIXES, RecordLimits, jsonl_range_bytes, jsonl_ranges
from regenwatch.pipelines.redelivery import ROW_BYTES as REDELIVERY_ROW_BYTES
from regenwatch.pipelines.redelivery import (
    RedeliveryMapCombineFn,
    file_index,
    redelivered_map_from_files,
    redelivery_row,
)
from regenwatch.pipelines.rowfiles import StageRows
from regenwatch.schemas import load_schema

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
AVRO_SUFFIXES = (".avro",)
WARC_SUFFIXES = (".warc", ".warc.gz")


def input_format(path: str) -> Optional[str]:
    lower = path.lower()
    for fmt, suffixes in (("jsonl", JSONL_SUFFIXES), ("avro", AVRO_SUFFIXES), ("warc", WARC_SUFFIXES)):
        if lower.endswith(suffixes):
            return fmt
    return None


def match_input_files(pattern: str) -> Dict[Optional[str], List[str]]:
    """Expand the input glob at submission and group the files by format."""
    result = FileSystems.match([pattern])[0]
    files = sorted(m.path for m in result.metadata_list)
    if not files:
        raise ValueError(f"--input {pattern!r} matches no files")
    groups: Dict[Optional[str], List[str]] = defaultdict(list)
    for path in files:
        groups[input_format(path)].append(path)
    return dict(groups)


class ModerationOutputs(NamedTuple):
    decisions: beam.PCollection
    flagged: beam.PCollection
    dead_letters: beam.PCollection


class ModerationOutputsWithClusters(NamedTuple):
    """ModeratePages(attach_clusters=False): flagged records without cluster fields, and
    ``clusters``, the cluster table(s) WriteModerationOutputs attaches while writing."""
    decisions: beam.PCollection
    flagged: beam.PCollection
    dead_letters: beam.PCollection
    clusters: beam.PCollection


class ReadPages(beam.PTransform):
    """Input files -> (pages, dead letters). Files are matched at construction.

    ``limits`` (pages.RecordLimits, default: ``max_bytes`` and the other
    defaults) bounds every record and every compressed file.
    """

    def __init__(self, pattern: str, max_bytes: int, limits: Optional[RecordLimits] = None):
        super().__init__()
        self.pattern = pattern
        self.limits = limits if limits is not None else RecordLimits(max_bytes=max_bytes)
        self.max_bytes = self.limits.max_bytes

    def expand(self, pbegin):
        groups = match_input_files(self.pattern)
        pages, dead = [], []
        if groups.get("jsonl"):
            sizes = {m.path: m.size_in_bytes for m in FileSystems.match([self.pattern])[0].metadata_list}
            # Enough ranges for every worker to get a share (pages.JSONL_TARGET_RANGES).
            range_bytes = jsonl_range_bytes(sum(
                sizes.get(path) or 0 for path in groups["jsonl"] if not path.lower().endswith(COMPRESSED_SUFFIXES)))
            # Not ReadAllFromText: its buffer grows by re-concatenation, so a
            # 20 MB line took seconds and a one-line file was held whole.
            lines = (
                pbegin
                # reshuffle=False: Create's own Reshuffle (for more than one
                # element) would be a second one before ReshuffleJsonl, one
                # more stage and bundle for nothing.
                | "JsonlRanges" >> beam.Create(
                    [r for path in groups["jsonl"] for r in jsonl_ranges(path, sizes.get(path), range_bytes)],
                    reshuffle=False)
                # One range per element; break fusion so ranges spread over workers.
                | "ReshuffleJsonl" >> beam.Reshuffle()
                # Bytes, not str: invalid UTF-8 must reach the parser and
                # become a dead letter instead of failing the read.
                | "ReadJsonlLines" >> beam.ParDo(ReadJsonlRangeFn(self.max_bytes, self.limits)).with_outputs(
                    DEAD_LETTER, main="lines")
            )
            parsed = lines.lines | "ParseJsonl" >> beam.ParDo(
                ParseJsonLineFn(self.max_bytes, self.limits)).with_outputs(DEAD_LETTER, main="pages")
            pages.append(parsed.pages)
            dead.extend([lines[DEAD_LETTER], parsed[DEAD_LETTER]])
        for fmt, fn in (("avro", ReadAvroFileFn), ("warc", ReadWarcFileFn)):
            if groups.get(fmt):
                read = (
                    pbegin
                    | f"{fmt.title()}Files" >> beam.Create(groups[fmt], reshuffle=False)  # reshuffled below
                    | f"Match{fmt.title()}" >> fileio.MatchAll()
                    | f"Open{fmt.title()}" >> fileio.ReadMatches()
                    # One file per element; break fusion so files spread over workers.
                    | f"Reshuffle{fmt.title()}" >> beam.Reshuffle()
                    | f"Read{fmt.title()}" >> beam.ParDo(fn(self.max_bytes, self.limits)).with_outputs(
                        DEAD_LETTER, main="pages")
                )
                pages.append(read.pages)
                dead.append(read[DEAD_LETTER])
        if groups.get(None):
            dead.append(
                pbegin
                | "UnsupportedFiles" >> beam.Create(groups[None], reshuffle=False)  # one dead letter each: no need
                | "DeadLetterUnsupported" >> beam.ParDo(UnsupportedFileFn())
            )
        all_pages = tuple(pages) | "AllPages" >> beam.Flatten() if len(pages) != 1 else pages[0]
        if not pages:
            all_pages = pbegin | "NoPages" >> beam.Create([])
        if not dead:
            dead.append(pbegin | "NoReadDeadLetters" >> beam.Create([]))
        all_dead = tuple(dead) | "ReadDeadLetters" >> beam.Flatten()
        return all_pages, all_dead


class ModeratePages(beam.PTransform):
    """Pages -> ModerationOutputs(decisions, flagged, dead_letters).

    Normalize each page, batch pages for the model, score and explain each
    batch with one model call. Every page ends as exactly one decision or one
    dead letter.
    """

    def __init__(self, model_uri: str = "default", threshold: Optional[float] = None,
                 max_bytes: int = 5 * 1024 * 1024, max_sentences: int = 2000, batch_size: int = 64,
                 model_refresh_seconds: float = 0.0, cluster: bool = True, model_sha256: Optional[str] = None,
                 attach_clusters: bool = True, row_staging: Optional[str] = None,
                 max_page_work: int = DEFAULT_MAX_PAGE_WORK):
        super().__init__()
        # Pages estimated to cost more to normalize are dead letters (pipelines/pagecost.py).
        self.max_page_work = max_page_work
        self.model_uri = model_uri
        # Pins the model verified at submission (batch): see ScoreBatchFn.
        self.model_sha256 = model_sha256
        # > 0 (streaming): ScoreBatchFn swaps in a newly promoted model; 0 reads it once.
        self.model_refresh_seconds = model_refresh_seconds
        self.threshold = threshold
        self.max_bytes = max_bytes
        self.max_sentences = max_sentences
        self.batch_size = batch_size
        # Near-duplicate clustering of the run's pages (pipelines/clustering.py)
        # adds cluster_id/cluster_size to flagged records; off, they keep the
        # schema defaults (null, 1).
        self.cluster = cluster
        # False: flagged records come out without cluster fields and the
        # cluster table comes out as ``clusters``, for a writer that attaches
        # it without holding the flagged records in memory (the batch job).
        self.attach_clusters = attach_clusters
        # Batch only: a directory where the clustering stages its per-page
        # rows instead of combining them in memory (pipelines/rowfiles.py).
        self.row_staging = row_staging

    def expand(self, pages):
        normalized = pages | "Normalize" >> beam.ParDo(
            NormalizeFn(self.max_bytes, self.max_sentences, self.max_page_work)).with_outputs(
            DEAD_LETTER, main="pages")
        scored = (
            normalized.pages
            # Fixed batches of --batch_size (the last one of a bundle shorter).
            # BatchElements' adaptive sizing aims at a 5% per-batch overhead
            # from a regression over noisy timings: on a 2,000-page run it
            # scored 46-70 batches of 1 to 64 pages instead of 32 of 64, and
            # score_pages costs ~40 ms/page alone vs ~25 in batches of 64.
            | "Batch" >> beam.BatchElements(min_batch_size=self.batch_size, max_batch_size=self.batch_size)
            | "Score" >> beam.ParDo(ScoreBatchFn(
                self.model_uri, self.threshold, refresh_seconds=self.model_refresh_seconds,
                expected_sha256=self.model_sha256)).with_outputs(
                DEAD_LETTER, FLAGGED, main="decisions")
        )
        dead = (normalized[DEAD_LETTER], scored[DEAD_LETTER]) | "ModerationDeadLetters" >> beam.Flatten()
        flagged = scored[FLAGGED]
        if self.cluster:
            clusters = normalized.pages | "ComputeClusters" >> ComputeClusters(staging=self.row_staging)
            if not self.attach_clusters:
                return ModerationOutputsWithClusters(decisions=scored.decisions, flagged=flagged,
                                                     dead_letters=dead, clusters=clusters)
            flagged = (flagged, clusters) | "JoinClusters" >> JoinClusters()
        return ModerationOutputs(decisions=scored.decisions, flagged=flagged, dead_letters=dead)


# Step name of DropRedeliveries' first pass: its reads are not the run's
# reads, and moderate.summarize leaves its counters out.
REDELIVERY_KEY_PASS = "RedeliveryKeyPass"


class DropRedeliveries(beam.PTransform):
    """Pages -> (pages, duplicate dead letters): each (id, content) is decided once.

    A first pass reads the input again, keys only: one 28-byte row per page
    (16 bytes of the (id, content SHA-256) digest, the file's index, the
    record's position) combined into one flat buffer; one sort finds the
    re-delivered copies (pipelines/redelivery.py). The map of copies ->
    decided copy (duplicates only) is a side input of the filter on the real
    pass, so the pages themselves stream from reader to writer
    (pipelines/pages.py, "Duplicate ids"). The cost is reading the input
    twice and 28 bytes per page.
    """

    def __init__(self, pattern: str, max_bytes: int, staging: Optional[str] = None,
                 limits: Optional[RecordLimits] = None):
        super().__init__()
        self.pattern = pattern
        self.max_bytes = max_bytes
        # The key pass must read exactly the pages the real pass reads.
        self.limits = limits
        # A directory: the rows are staged to files there instead of being
        # combined in memory (pipelines/rowfiles.py): memory stays flat.
        self.staging = staging

    def expand(self, pages):
        key_pages, _ = pages.pipeline | REDELIVERY_KEY_PASS >> ReadPages(self.pattern, self.max_bytes, self.limits)
        files = [path for paths in match_input_files(self.pattern).values() for path in paths]
        index = file_index(files)
        rows = key_pages | "KeyRows" >> beam.Map(redelivery_row, index)
        if self.staging:
            redelivered = (
                rows
                | "StageKeyRows" >> StageRows(self.staging, "redelivery", REDELIVERY_ROW_BYTES)
                | "RedeliveredCopies" >> beam.Map(redelivered_map_from_files, sorted(set(files)))
            )
        else:
            redelivered = rows | "RedeliveredCopies" >> beam.CombineGlobally(
                RedeliveryMapCombineFn(files)).without_defaults()
        kept = pages | "DropRedelivered" >> beam.ParDo(
            DropRedeliveriesFn(), redelivered=beam.pvalue.AsSingleton(redelivered, default_value={})).with_outputs(
            DEAD_LETTER, main="pages")
        return kept.pages, kept[DEAD_LETTER]


OUTPUT_PREFIXES = {"flagged": "flagged", "decision": "decisions", "deadletter": "deadletter"}


class WriteAvro(beam.PTransform):
    """Records -> <directory>/<prefix>-SSSSS-of-NNNNN.avro with a schema from schemas/.

    The output is the PCollection of the written file names.
    """

    def __init__(self, directory: str, schema_name: str, num_shards: int = 0, codec: str = "deflate"):
        super().__init__()
        self.directory = directory
        self.schema_name = schema_name
        self.num_shards = num_shards
        self.codec = codec

    def expand(self, records):
        return records | beam.io.WriteToAvro(
            FileSystems.join(self.directory, OUTPUT_PREFIXES[self.schema_name]),
            schema=load_schema(self.schema_name),
            file_name_suffix=".avro",
            num_shards=self.num_shards,
            codec=self.codec,
        )


# Where the batch job stages flagged records before their cluster fields are
# known (under the output directory: "_" hides it from readers of the outputs).
UNCLUSTERED_DIR = "_unclustered"


def _at_start(filename):
    # FinalizeWrite emits file names at the end of time; the records read from
    # them must land back in the global window's range to be written again.
    return beam.window.TimestampedValue(filename, beam.utils.timestamp.MIN_TIMESTAMP)


class _DeleteFilesFn(beam.DoFn):
    """(trigger) + file names (side input) -> deletes them and their directory when empty."""

    def __init__(self, directory: str):
        self.directory = directory

    def process(self, unused_trigger, paths):
        paths = sorted(set(paths))
        if paths:
            FileSystems.delete(paths)
        if "://" not in self.directory:
            try:
                os.rmdir(self.directory)
            except OSError:
                pass  # not empty (Beam's temporary directory still there) or already gone
        yield len(paths)


class WriteClusteredFlagged(beam.PTransform):
    """Flagged records + cluster table(s) -> flagged Avro with cluster fields, records never held in memory.

    The table is known only once every page of the run has been normalized;
    a side-input join would make the runner keep every flagged record until
    then (the local runner keeps them in memory: ~3 KB each). Instead the
    records are written as they are scored to ``_unclustered/`` (no
    compression: they are read once), the written files are read back with
    the table as a side input, and the final files are written; the staged
    files are deleted once the final write has finished. The cost is one more
    Avro write and read of the flagged records only.
    """

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def expand(self, inputs):
        flagged, tables = inputs
        staging = FileSystems.join(self.directory, UNCLUSTERED_DIR)
        staged = flagged | "StageUnclustered" >> WriteAvro(staging, "flagged", codec="null")
        written = (
            staged
            | "AtStart" >> beam.Map(_at_start)
            # One file per element; break fusion so files spread over workers.
            | "ReshuffleStaged" >> beam.Reshuffle()
            | "ReadUnclustered" >> beam.io.ReadAllFromAvro()
            | "AttachClusters" >> AttachClusters(tables)
            | "WriteFlagged" >> WriteAvro(self.directory, "flagged")
        )
        (
            written
            | "FinalWritten" >> beam.combiners.Count.Globally()
            | "DeleteUnclustered" >> beam.ParDo(_DeleteFilesFn(staging), beam.pvalue.AsList(staged))
        )
        return written


class WriteModerationOutputs(beam.PTransform):
    """ModerationOutputs -> the three Avro outputs under one directory.

    Given ModerationOutputsWithClusters, the flagged records get their cluster
    fields on the way (WriteClusteredFlagged).
    """

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def expand(self, outputs):
        if isinstance(outputs, ModerationOutputsWithClusters):
            flagged = (outputs.flagged, outputs.clusters) | "WriteClusteredFlagged" >> WriteClusteredFlagged(
                self.directory)
        else:
            flagged = outputs.flagged | "WriteFlagged" >> WriteAvro(self.directory, "flagged")
        return {
            "flagged": flagged,
            "decisions": outputs.decisions | "WriteDecisions" >> WriteAvro(self.directory, "decision"),
            "dead_letters": outputs.dead_letters | "WriteDeadLetters" >> WriteAvro(self.directory, "deadletter"),
        }


def output_files(directory: str) -> Dict[str, List[str]]:
    """The Avro files a run wrote, by output name."""
    found = {}
    for name, prefix in (("flagged", "flagged"), ("decisions", "decisions"), ("dead_letters", "deadletter")):
        result = FileSystems.match([FileSystems.join(directory, f"{prefix}-*.avro")])[0]
        found[name] = sorted(m.path for m in result.metadata_list)
    return found


def remove_previous_outputs(directory: str) -> int:
    """Delete earlier regenwatch outputs in the directory so a rerun replaces them."""
    stale = [p for paths in output_files(directory).values() for p in paths] if _exists(directory) else []
    if stale:
        FileSystems.delete(stale)
    return len(stale)


def _exists(directory: str) -> bool:
    try:
        return FileSystems.exists(directory)
    except (OSError, ValueError):
        return False


__all__ = [
    "DropRedeliveries",
    "ModeratePages",
    "ModerationOutputs",
    "ModerationOutputsWithClusters",
    "ReadPages",
    "WriteAvro",
    "WriteModerationOutputs",
    "input_format",
    "match_input_files",
    "output_files",
    "remove_previous_outputs",
    "os",
]
