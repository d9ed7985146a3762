"""The batch moderation job: ``build_pipeline(p, options)`` and ``run(argv)``.

``run`` is safe to schedule: each run writes into staging and publishes one
complete set of outputs into its run directory with a ``_SUCCESS`` marker
written last (pipelines/publish.py); a rerun of the same ``--run_id``
replaces that set; a killed run leaves nothing a reader would pick up.
"""
from __future__ import annotations

import datetime
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult

from regenwatch.models.artifact import load_model
from regenwatch.pipelines.dofns import NAMESPACE, verified_model
from regenwatch.pipelines.options import RegenwatchOptions, absolute_local_paths, record_limits, validate_options
from regenwatch.pipelines import publish
from regenwatch.pipelines.transforms import (
    REDELIVERY_KEY_PASS,
    DropRedeliveries,
    ModeratePages,
    ReadPages,
    WriteModerationOutputs,
    output_files,
)

# Under the run's staging directory: where build_pipeline stages run-wide rows.
ROW_STAGING = "_rows"

# DirectRunner in Beam 2.77 first tries to download the Prism runner binary,
# which fails on machines without internet access and then falls back after a
# delay. The FnApiRunner-based BundleBasedDirectRunner path is what we want
# locally, so 'DirectRunner' is mapped to it explicitly: to LocalRunner, the
# FnApiRunner with multi_processing workers forked from the launcher instead
# of started as fresh interpreters (pipelines/localrunner.py).
LOCAL_RUNNER = "regenwatch.pipelines.localrunner.LocalRunner"


def build_pipeline(p: beam.Pipeline, options: RegenwatchOptions, output_dir: Optional[str] = None,
                   model_sha256: Optional[str] = None) -> dict:
    """Read -> drop re-deliveries -> moderate -> write; returns the write results by output name.

    ``output_dir`` defaults to ``--output``; :func:`run` passes its staging
    directory, and ``model_sha256``, the digest of the model it verified, so
    workers load that model or none.
    """
    output_dir = output_dir or options.output
    # Run-wide per-page rows (re-delivery keys, cluster sketches) are staged
    # here rather than held in memory; "_" hides them from readers, and
    # publishing removes the staging directory with them.
    row_staging = FileSystems.join(output_dir, ROW_STAGING)
    limits = record_limits(options)
    pages, read_dead = p | "ReadPages" >> ReadPages(options.input, options.max_page_bytes, limits)
    # A re-delivered page (same id, same content) is decided once; see
    # pipelines/pages.py, "Duplicate ids".
    pages, duplicates = pages | "DropRedeliveries" >> DropRedeliveries(
        options.input, options.max_page_bytes, staging=row_staging, limits=limits)
    moderated = pages | "ModeratePages" >> ModeratePages(
        model_uri=options.model,
        threshold=options.threshold,
        max_bytes=options.max_page_bytes,
        max_sentences=options.max_sentences,
        max_page_work=options.max_page_work,
        batch_size=options.batch_size,
        model_sha256=model_sha256,
        # Cluster fields are attached while writing (WriteClusteredFlagged),
        # so flagged records stream to disk instead of waiting in memory.
        attach_clusters=False,
        row_staging=row_staging,
    )
    all_dead = (read_dead, duplicates, moderated.dead_letters) | "AllDeadLetters" >> beam.Flatten()
    return moderated._replace(dead_letters=all_dead) | "WriteOutputs" >> WriteModerationOutputs(output_dir)


@dataclass
class RunSummary:
    pages_read: int = 0
    decided: int = 0
    flagged: Dict[str, int] = field(default_factory=dict)
    dead_letters: Dict[str, int] = field(default_factory=dict)
    files: Dict[str, List[str]] = field(default_factory=dict)
    counters: Dict[str, int] = field(default_factory=dict)
    # Set by run(): the run and what a scheduler should act on.
    run_id: Optional[str] = None
    run_dir: Optional[str] = None
    records: Dict[str, int] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)

    @property
    def dead_total(self) -> int:
        return sum(self.dead_letters.values())

    @property
    def failed_total(self) -> int:
        """Dead letters that are failures: re-delivered duplicates are not."""
        return self.dead_total - self.dead_letters.get("duplicate", 0)

    @property
    def dead_letter_ratio(self) -> float:
        return self.failed_total / self.pages_read if self.pages_read else 0.0

    def render(self) -> str:
        flagged_total = sum(self.flagged.values())
        lines = [
            "regenwatch run summary" + (f"  (run {self.run_id})" if self.run_id else ""),
            f"  pages read     {self.pages_read}",
            f"  decided        {self.decided}",
            f"  flagged        {flagged_total}  (high {self.flagged.get('high', 0)}, "
            f"medium {self.flagged.get('medium', 0)}, low {self.flagged.get('low', 0)})",
            f"  dead-lettered  {self.dead_total}"
            + (f"  ({', '.join(f'{k} {v}' for k, v in sorted(self.dead_letters.items()) if v)})" if self.dead_total else ""),
        ]
        if self.counters.get("warc_records_not_pages"):
            lines.append(f"  WARC records that are not pages (skipped)  {self.counters['warc_records_not_pages']}")
        for name, paths in self.files.items():
            lines.append(f"  {name:<14} {', '.join(paths) if paths else '(none)'}")
        if self.run_dir:
            lines.append(f"  complete when  {self.run_dir.rstrip('/')}/{publish.SUCCESS} exists")
        lines.extend(f"  PROBLEM: {problem}" for problem in self.problems)
        return "\n".join(lines)


def summarize(result: PipelineResult, output_dir: Optional[str]) -> RunSummary:
    """Counters of a finished run (committed where the runner has them)."""
    from apache_beam.metrics.metric import MetricsFilter

    counters = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        if REDELIVERY_KEY_PASS in (c.key.step or "").split("/"):
            continue  # the keys-only first read of DropRedeliveries: not pages of the run
        value = c.committed if c.committed is not None else c.attempted
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + (value or 0)
    summary = RunSummary(
        pages_read=counters.get("pages_read", 0),
        decided=counters.get("pages_decided", 0),
        flagged={s: counters.get(f"flagged_{s}", 0) for s in ("high", "medium", "low")},
        dead_letters={k[len("dead_letter_"):]: v for k, v in counters.items() if k.startswith("dead_letter_")},
        counters=counters,
    )
    if output_dir:
        summary.files = output_files(output_dir)
    return summary


def make_options(argv: Optional[List[str]] = None) -> PipelineOptions:
    options = PipelineOptions(argv)
    std = options.view_as(StandardOptions)
    if std.runner in (None, "DirectRunner", "direct"):
        std.runner = LOCAL_RUNNER
    return options


def _accounting_problems(summary: RunSummary) -> List[str]:
    """Pages in = decisions + dead letters, checked on the records actually written."""
    written = summary.records.get("decisions", 0) + summary.records.get("dead_letters", 0)
    if not summary.counters:
        logging.warning("the runner reported no metrics: pages in = decisions + dead letters not checked")
        return []
    if written != summary.pages_read:
        return [f"{summary.pages_read} inputs read but {summary.records.get('decisions', 0)} decisions + "
                f"{summary.records.get('dead_letters', 0)} dead letters written: pages were lost"]
    return []


def run(argv: Optional[List[str]] = None, save_main_session: bool = False) -> PipelineResult:
    """Build and run the batch job; waits for it, publishes its outputs and prints the summary.

    Submission-time failures (options, model) happen before anything is
    written. A run that fails leaves the run directory as it was. After a
    finished run, ``result.summary.problems`` lists what should make a
    scheduler alert (dead letters over ``--max_dead_letter_ratio``, lost
    pages); the outputs are published either way, and ``_SUCCESS`` records
    the problems.
    """
    started_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    options = make_options(argv)
    opts = options.view_as(RegenwatchOptions)
    validate_options(opts)
    # Workers run elsewhere (another directory, another machine): no relative paths.
    absolute_local_paths(opts)
    # Fail at submission, not on a worker, when the model is unusable.
    loaded = load_model(opts.model)
    layout = publish.RunLayout.create(opts.output, getattr(opts, "run_id", None), opts.input)
    removed = publish.clean_stale(layout)
    if removed:
        logging.warning("removed what an earlier, unfinished attempt of run %s left: %s",
                        layout.run_id, ", ".join(removed))
    p = beam.Pipeline(options=options)
    build_pipeline(p, opts, output_dir=layout.staging_dir, model_sha256=loaded.manifest["sha256"])
    try:
        # An in-process worker (in-memory runner) decides with the model just verified.
        with verified_model(opts.model, loaded):
            result = p.run()
            state = result.wait_until_finish()
        if str(state) not in ("DONE", "PipelineState.DONE"):
            raise RuntimeError(f"the pipeline ended in state {state}")
    except BaseException:
        # Failed or interrupted: keep the published outputs of the previous
        # run as they are, and leave no staging behind.
        publish.discard_staging(layout)
        raise
    summary = summarize(result, None)
    staged = publish.staged_outputs(layout)
    summary.records = {name: publish.count_records(paths) for name, paths in staged.items()}
    summary.run_id, summary.run_dir = layout.run_id, layout.run_dir
    summary.problems = _accounting_problems(summary)
    ratio_cap = opts.max_dead_letter_ratio
    if summary.dead_letter_ratio > ratio_cap:
        summary.problems.append(
            f"{summary.failed_total} of {summary.pages_read} inputs dead-lettered "
            f"({summary.dead_letter_ratio:.1%}), over --max_dead_letter_ratio {ratio_cap}")
    summary.files = publish.publish(layout, _marker(summary, opts, loaded, started_at))
    result.summary = summary  # for callers such as the CLI and tests
    print(summary.render(), file=sys.stderr)
    return result


def _marker(summary: RunSummary, opts: RegenwatchOptions, loaded, started_at: str) -> Dict[str, Any]:
    """The ``_SUCCESS`` content: enough for a scheduler or an auditor to trust the run without reading it."""
    from regenwatch.schemas import schema_version

    return {
        "run_id": summary.run_id,
        "status": "complete" if not summary.problems else "complete_with_problems",
        "problems": summary.problems,
        "started_at": started_at,
        "input": opts.input,
        "run_dir": summary.run_dir,
        "model_version": loaded.version,
        "model_sha256": loaded.manifest["sha256"],
        "threshold": opts.threshold if opts.threshold is not None else loaded.manifest.get("threshold"),
        "records": summary.records,
        "counts": {
            "pages_read": summary.pages_read,
            "decided": summary.decided,
            "flagged": summary.flagged,
            "dead_letters": summary.dead_letters,
            "dead_letter_ratio": round(summary.dead_letter_ratio, 6),
            "max_dead_letter_ratio": opts.max_dead_letter_ratio,
        },
        "counters": summary.counters,
        "schema_versions": {name: schema_version(name) for name in ("flagged", "decision", "deadletter")},
    }
