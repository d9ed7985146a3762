"""The pipeline's per-record path, run outside Beam, for fuzzing.

Every example goes through the DoFns the pipeline runs, in their order,
without a runner: a reader (``ReadJsonlRangeFn`` + ``ParseJsonLineFn``,
``ReadAvroFileFn``, ``ReadWarcFileFn``), ``NormalizeFn``, ``ScoreBatchFn``
(which builds and encodes the decision and flagged records), and the
clustering sketch. Every record that comes out is encoded with its Avro
schema, as the writers would. :class:`Outcome` says how many inputs went in
and how many came out decided or dead.
"""
from __future__ import annotations

import io
import os
import types
from dataclasses import dataclass, field
from typing import List

import apache_beam as beam
import fastavro
from apache_beam.io.filesystem import FileMetadata

from regenwatch.pipelines.clustering import SketchRowFn
from regenwatch.pipelines.dofns import (
    DEAD_LETTER,
    FLAGGED,
    NormalizeFn,
    ParseJsonLineFn,
    ReadAvroFileFn,
    ReadJsonlRangeFn,
    ReadWarcFileFn,
    ScoreBatchFn,
)
from regenwatch.pipelines.pagecost import DEFAULT_MAX_PAGE_WORK
from regenwatch.pipelines.pages import Page, RecordLimits
from regenwatch.schemas import load_schema


@dataclass
class Outcome:
    inputs: int = 0          # records read (pages + read/parse dead letters), as pages_read counts them
    decided: int = 0
    dead: int = 0
    flagged: int = 0
    stages: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    decided_ids: List[str] = field(default_factory=list)

    def add(self, other: "Outcome") -> None:
        self.inputs += other.inputs
        self.decided += other.decided
        self.dead += other.dead
        self.flagged += other.flagged
        self.stages += other.stages
        self.errors += other.errors
        self.decided_ids += other.decided_ids

    @property
    def balanced(self) -> bool:
        return self.inputs == self.decided + self.dead


class Harness:
    def __init__(self, model_uri: str, limits: RecordLimits = RecordLimits(),
                 max_sentences: int = 2000, max_page_work: int = DEFAULT_MAX_PAGE_WORK):
        self.limits = limits
        self.parse = ParseJsonLineFn(limits.max_bytes, limits)
        self.lines = ReadJsonlRangeFn(limits.max_bytes, limits)
        self.avro = ReadAvroFileFn(limits.max_bytes, limits)
        self.warc = ReadWarcFileFn(limits.max_bytes, limits)
        self.normalize = NormalizeFn(limits.max_bytes, max_sentences, max_page_work)
        self.score = ScoreBatchFn(model_uri, 0.0)  # threshold 0: every decided page is also flagged
        self.score.setup()
        self.sketch = SketchRowFn()
        self.schemas = {name: fastavro.parse_schema(load_schema(name)) for name in ("deadletter", "decision", "flagged")}

    def _encode(self, name: str, record: dict) -> None:
        # What WriteAvro does to each record; raises if the run's write would fail.
        if name == "flagged":
            record = {"cluster_id": None, "cluster_size": 1, **record}
        fastavro.schemaless_writer(io.BytesIO(), self.schemas[name], record)

    def _dead(self, out: Outcome, record: dict) -> None:
        self._encode("deadletter", record)
        assert record["stage"] and record["error"], record
        out.dead += 1
        out.stages.append(record["stage"])
        out.errors.append(record["error"])

    def moderate(self, page: Page) -> Outcome:
        """One page through normalize, score (records built and encoded) and the cluster sketch."""
        out = Outcome()
        normalized = list(self.normalize.process(page))
        assert len(normalized) == 1, normalized
        item = normalized[0]
        if isinstance(item, beam.pvalue.TaggedOutput):
            assert item.tag == DEAD_LETTER
            self._dead(out, item.value)
            return out
        list(self.sketch.process(item))
        decisions = 0
        for result in self.score.process([item]):
            if isinstance(result, beam.pvalue.TaggedOutput):
                if result.tag == DEAD_LETTER:
                    self._dead(out, result.value)
                else:
                    assert result.tag == FLAGGED
                    self._encode("flagged", result.value)
                    out.flagged += 1
            else:
                self._encode("decision", result)
                out.decided_ids.append(result["id"])
                decisions += 1
        out.decided += decisions
        assert decisions + out.dead == 1, (decisions, out.dead)
        return out

    def _pages_and_dead(self, items) -> Outcome:
        out = Outcome()
        for item in items:
            if isinstance(item, beam.pvalue.TaggedOutput):
                assert item.tag == DEAD_LETTER, item.tag
                out.inputs += 1
                self._dead(out, item.value)
            else:
                assert isinstance(item, Page), item
                out.inputs += 1
                out.add(self.moderate(item))
        return out

    def line(self, line: bytes, source: str = "fuzz.jsonl") -> Outcome:
        """One JSON Lines line (or one Pub/Sub message)."""
        return self._pages_and_dead(self.parse.process((source, line, 0)))

    def jsonl_file(self, path: str) -> Outcome:
        def parsed():
            for item in self.lines.process((path, 0, None)):
                if isinstance(item, beam.pvalue.TaggedOutput):
                    yield item
                else:
                    yield from self.parse.process(item)
        return self._pages_and_dead(parsed())

    def _readable(self, path: str):
        return types.SimpleNamespace(metadata=FileMetadata(path, os.path.getsize(path)))

    def avro_file(self, path: str) -> Outcome:
        return self._pages_and_dead(self.avro.process(self._readable(path)))

    def warc_file(self, path: str) -> Outcome:
        return self._pages_and_dead(self.warc.process(self._readable(path)))

    def file(self, path: str) -> Outcome:
        lower = path.lower()
        if lower.endswith(".avro"):
            return self.avro_file(path)
        if lower.endswith((".warc", ".warc.gz")):
            return self.warc_file(path)
        return self.jsonl_file(path)
