"""The LIMIT: the pipeline's work as a plain batched Python loop, and the cheap anchor.

``plain_loop`` does what ReadPages -> DropRedeliveries -> ModeratePages ->
WriteModerationOutputs do, with the same pure functions
(``regenwatch.pipelines.pages``, ``normalize_page``, ``score_pages``,
``regenwatch.pipelines.redelivery``, ``regenwatch.pipelines.clustering``)
and the same Avro schemas and codec, but no Beam: a keys-only first read for
the re-delivered copies (``redelivery_row`` per page, ``redelivered_map``),
then read lines, parse, drop re-delivered copies, normalize, one sketch row
per normalized page (``sketch_row``), score batches of 64, build the
records, build the cluster table (``build_cluster_table``) and give the
flagged records their cluster (``with_cluster``), write three Avro files with
the same records the pipeline writes. Whatever the pipeline costs above this
loop is Beam overhead (and the pipeline's way of doing the same work: the
rows staged to files and read back, the flagged records staged and re-read;
the loop keeps the rows and the flagged records in memory).

``StageClock`` attributes wall time to stages exclusively (a stage nested in
another is subtracted from the outer one). The model's internals are timed
from outside by wrapping methods on the loaded instance (see
:func:`instrument`); nothing in ``models/`` is changed.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import fastavro
import numpy as np

from regenwatch.models.classifier import PageScore
from regenwatch.models.text import DEFAULT_MAX_SENTENCES, PageError, normalize_page
from regenwatch.pipelines import clustering
from regenwatch.pipelines.pages import (
    DEFAULT_MAX_PAGE_BYTES,
    InputError,
    dead_letter,
    decision_record,
    duplicate_dead_letter,
    flagged_record,
    now_millis,
    page_from_json_line,
    page_ref,
)
from regenwatch.pipelines.redelivery import file_index, redelivered_map, redelivery_row
from regenwatch.schemas import load_schema

STAGES = ("parse", "dedup", "normalize", "featurize", "score", "rationale", "cluster", "write")
# Beam's WriteToAvro default codec; the same here so "write" costs the same.
AVRO_CODEC = "deflate"
BATCH_SIZE = 64  # the pipeline's --batch_size default


class StageClock:
    """Exclusive wall time per stage; stages may nest.

    ``timer`` is the clock read (``time.perf_counter`` by default: wall time;
    ``time.process_time`` gives CPU seconds of the process, as
    bench/model_parts.py uses); ``names`` the stages listed even when unused.
    """

    def __init__(self, timer=time.perf_counter, names: Sequence[str] = STAGES):
        self.timer = timer
        self.totals: Dict[str, float] = {name: 0.0 for name in names}
        self.calls: Dict[str, int] = {name: 0 for name in names}
        self._stack: List[str] = []
        self._mark = 0.0

    @property
    def current(self) -> Optional[str]:
        """The innermost stage being timed, if any."""
        return self._stack[-1] if self._stack else None

    def enter(self, name: str) -> None:
        now = self.timer()
        if self._stack:
            self.totals[self._stack[-1]] += now - self._mark
        self._stack.append(name)
        self.calls[name] = self.calls.get(name, 0) + 1
        self._mark = now

    def exit(self) -> None:
        now = self.timer()
        name = self._stack.pop()
        self.totals[name] = self.totals.get(name, 0.0) + now - self._mark
        self._mark = now

    @contextmanager
    def stage(self, name: str):
        self.enter(name)
        try:
            yield
        finally:
            self.exit()

    def wrap(self, fn, name: str):
        def timed(*args, **kwargs):
            self.enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.exit()
        return timed


class _NoClock:
    """Stand-in when stage timing is off (same call shape, no work)."""

    @contextmanager
    def stage(self, name: str):
        yield


# Methods of the model that turn sentences into feature rows (document
# building such as entity masking, then the vectorizer); the estimators'
# predict_proba calls nested in them are re-attributed to "score".
FEATURIZE_METHODS = ("_sentence_probs",)


def _estimators(model):
    """Fitted sub-objects of the model: values of parts_ (lists flattened) and fitted attributes."""
    seen, out = set(), []
    candidates = list((getattr(model, "parts_", None) or {}).items())
    candidates += [(name, value) for name, value in sorted(vars(model).items()) if name.endswith("_")]
    for name, value in candidates:
        items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for idx, obj in items:
            if obj is None or obj is model or isinstance(obj, (str, bytes, int, float, dict)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            out.append((name if idx is None else f"{name}[{idx}]", obj))
    return out


def instrument(model, clock: StageClock) -> List[str]:
    """Wrap the model's featurization, estimators and rationale on this instance; returns what was hooked.

    featurize = FEATURIZE_METHODS + every fitted featurizer's transform;
    score = every estimator's predict_proba + the rest of score_pages (page
    features, page model); rationale = _rationale. Unknown internals fall
    into "score", so a refactored model is still timed, only more coarsely.
    """
    hooked = []
    for name in FEATURIZE_METHODS:
        if callable(getattr(model, name, None)):
            setattr(model, name, clock.wrap(getattr(model, name), "featurize"))
            hooked.append(f"{name}=featurize")
    n_est = 0
    for name, obj in _estimators(model):
        if callable(getattr(obj, "predict_proba", None)):
            obj.predict_proba = clock.wrap(obj.predict_proba, "score")
            n_est += 1
        elif callable(getattr(obj, "transform", None)):
            # A fitted featurizer (TfidfVectorizer or the model's own): text -> feature rows.
            obj.transform = clock.wrap(obj.transform, "featurize")
            hooked.append(f"{name}.transform=featurize")
    if n_est:
        hooked.append(f"predict_proba of {n_est} estimators=score")
    if callable(getattr(model, "_rationale", None)):
        model._rationale = clock.wrap(model._rationale, "rationale")
        hooked.append("_rationale=rationale")
    return hooked


def _lines(path: str):
    """(byte offset, line) of each non-blank line, the terminator stripped, as the pipeline's reader gives them."""
    with open(path, "rb") as handle:
        offset = 0
        for line in iter(handle.readline, b""):
            position, offset = offset, offset + len(line)
            line = line.rstrip(b"\r\n") if line.endswith(b"\n") else line
            if line.strip():
                yield position, line


def redelivered_copies(files: Sequence[str], max_bytes: int = DEFAULT_MAX_PAGE_BYTES) -> Dict[tuple, tuple]:
    """DropRedeliveries' keys-only first pass without Beam: {re-delivered copy: decided copy}.

    The same pure functions as the pipeline (``redelivery_row`` per parsed
    page, ``redelivered_map`` over the run's rows); lines that do not parse
    give no row, as in the pipeline's first pass.
    """
    index = file_index(files)
    rows = bytearray()
    for path in files:
        for position, line in _lines(path):
            try:
                page = page_from_json_line(line, source=path, max_bytes=max_bytes, position=position)
            except InputError:
                continue
            rows += redelivery_row(page, index)
    return redelivered_map(rows, files)


@dataclass
class LoopResult:
    pages_read: int = 0
    decided: int = 0
    flagged: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    stages: Dict[str, float] = field(default_factory=dict)
    files: Dict[str, str] = field(default_factory=dict)


class _AvroOut:
    """The three outputs, named as WriteToAvro names a single shard."""

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self.handles, self.writers, self.paths = {}, {}, {}
        for name, prefix, schema in (("decisions", "decisions", "decision"), ("flagged", "flagged", "flagged"),
                                     ("dead_letters", "deadletter", "deadletter")):
            path = os.path.join(directory, f"{prefix}-00000-of-00001.avro")
            self.paths[name] = path
            self.handles[name] = open(path, "wb")
            self.writers[name] = fastavro.write.Writer(self.handles[name], load_schema(schema), codec=AVRO_CODEC)

    def write(self, name: str, record: dict) -> None:
        self.writers[name].write(record)

    def close(self) -> None:
        for name, writer in self.writers.items():
            writer.flush()
            self.handles[name].close()


def plain_loop(files: Sequence[str], out_dir: str, model, threshold: float, model_version: str,
               batch_size: int = BATCH_SIZE, clock: Optional[StageClock] = None,
               max_bytes: int = DEFAULT_MAX_PAGE_BYTES, max_sentences: int = DEFAULT_MAX_SENTENCES,
               same_work: bool = True) -> LoopResult:
    """Parse, drop re-deliveries, normalize, score in batches, cluster, write Avro.

    Every input ends as a decision or a dead letter. With ``same_work``
    (default) the loop also does what the pipeline does beyond scoring, so
    both write the same records: re-delivered copies (same id and content as
    an earlier record in input order) become "duplicate" dead letters (a
    first, keys-only read of the input finds them, as DropRedeliveries'), and
    flagged records get their near-duplicate cluster, computed over every
    normalized page with words (as ComputeClusters; the table needs every
    page of the run, so flagged records are written at the end).
    ``same_work=False`` is the bare parse-normalize-score loop.
    """
    clk = clock or _NoClock()
    res = LoopResult()
    started = time.perf_counter()
    out = _AvroOut(out_dir)
    batch: list = []
    redelivered: Dict[tuple, tuple] = {}
    if same_work:
        # The keys-only first read of the input, as DropRedeliveries does.
        with clk.stage("dedup"):
            redelivered = redelivered_copies(files, max_bytes)
    # ComputeClusters' rows (one 136-byte row per normalized page with words), as ClusterTableCombineFn holds them.
    cluster_rows = bytearray() if same_work else None
    flagged_records: List[dict] = []

    def flush() -> None:
        processed_at = now_millis()
        with clk.stage("score"):
            try:
                scores = model.score_pages([n for _, n in batch], threshold=threshold)
                items = list(zip(batch, scores))
            except (ValueError, TypeError, ArithmeticError, MemoryError):
                # As ScoreBatchFn: one by one, so only the page at fault is lost.
                items = []
                for page, normalized in batch:
                    try:
                        items.append(((page, normalized), model.score_pages([normalized], threshold=threshold)[0]))
                    except (ValueError, TypeError, ArithmeticError, MemoryError) as exc:
                        with clk.stage("write"):
                            out.write("dead_letters", dead_letter(page, "score", exc))
                        res.dead_letters += 1
        with clk.stage("write"):
            for (page, normalized), score in items:
                decision = decision_record(page, score, threshold, model_version, processed_at)
                if decision["flagged"]:
                    record = flagged_record(page, normalized, score, threshold, model_version, processed_at)
                    if cluster_rows is None:
                        out.write("flagged", record)
                    else:
                        flagged_records.append(record)
                    res.flagged += 1
                out.write("decisions", decision)
                res.decided += 1
        batch.clear()

    for path in files:
        lines = _lines(path)
        while True:
            with clk.stage("parse"):
                item = next(lines, None)
                if item is None:
                    break
                position, line = item
                res.pages_read += 1
                try:
                    page = page_from_json_line(line, source=path, max_bytes=max_bytes, position=position)
                except InputError as exc:
                    page = None
                    dead = dead_letter(line, "parse", exc, source=path)
            if page is None:
                with clk.stage("write"):
                    out.write("dead_letters", dead)
                res.dead_letters += 1
                continue
            if redelivered:
                with clk.stage("dedup"):
                    # As DropRedeliveriesFn.
                    decided = redelivered.get(page_ref(page))
                    if decided is not None:
                        out.write("dead_letters", duplicate_dead_letter(page, decided))
                        res.dead_letters += 1
                        res.duplicates += 1
                        continue
            with clk.stage("normalize"):
                try:
                    normalized = normalize_page(page.content, page.content_type, max_chars=max_bytes,
                                                max_sentences=max_sentences)
                except PageError as exc:
                    normalized = None
                    dead = dead_letter(page, "normalize", exc)
            if normalized is None:
                with clk.stage("write"):
                    out.write("dead_letters", dead)
                res.dead_letters += 1
                continue
            if cluster_rows is not None:
                with clk.stage("cluster"):
                    # As SketchRowFn.
                    row = clustering.sketch_row(page.id, page.content_sha256(), normalized.text)
                    if row is not None:
                        cluster_rows += row
            batch.append((page, normalized))
            if len(batch) >= batch_size:
                flush()
    if batch:
        flush()
    if cluster_rows is not None:
        with clk.stage("cluster"):
            # As ClusterTableCombineFn, then AttachClusterFn on each flagged record.
            table = clustering.build_cluster_table(cluster_rows) if cluster_rows else None
            clustered = [clustering.with_cluster(record, table) for record in flagged_records]
        with clk.stage("write"):
            for record in clustered:
                out.write("flagged", record)
    with clk.stage("write"):
        out.close()
    res.seconds = time.perf_counter() - started
    res.files = dict(out.paths)
    if clock is not None:
        res.stages = dict(clock.totals)
    return res


# --------------------------------------------------------------------------
# The cheap anchor


class PageAnchor:
    """Page-level TF-IDF (word 1-2 grams) + logistic regression: no sentences, no rationale.

    The same vectorizer settings as the full model's, over the whole
    normalized page text, so the difference in cost is the sentence-level
    modeling and the rationale.
    """

    def __init__(self, C: float = 4.0, max_features: int = 60000, threshold: float = 0.5):
        self.C = C
        self.max_features = max_features
        self.threshold = threshold

    def fit(self, texts: Sequence[str], y: Sequence[int]) -> "PageAnchor":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        vec = TfidfVectorizer(lowercase=True, ngram_range=(1, 2), min_df=2, max_df=0.9, sublinear_tf=True,
                              max_features=self.max_features, token_pattern=r"(?u)\b\w[\w'’-]*\b",
                              dtype=np.float32)
        X = vec.fit_transform(texts)
        self.lr_ = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000, solver="liblinear")
        self.lr_.fit(X, np.asarray(y, dtype=int))
        # Named like ClaimModel's parts_ so instrument() times its featurization.
        self.parts_ = {"vec": vec}
        return self

    def score_pages(self, pages, threshold: Optional[float] = None) -> List[PageScore]:
        if not pages:
            return []
        X = self.parts_["vec"].transform([p.text for p in pages])
        scores = self.lr_.predict_proba(X)[:, 1]
        return [PageScore(score=float(s), categories=[], rationale=[]) for s in scores]


def train_anchor(sample=None) -> PageAnchor:
    """Fit the anchor on the labeled pages of the sample set (normalized as the pipeline does)."""
    from regenwatch.training.data_io import load_sample_set

    sample = sample or load_sample_set()
    texts = [normalize_page(p["text"]).text for p in sample.pages]
    return PageAnchor().fit(texts, [p["label"] for p in sample.pages])
