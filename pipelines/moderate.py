"""The batch moderation job: ``build_pipeline(p, options)`` and ``run(argv)``."""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult

from regenwatch.models.artifact import load_model
from regenwatch.pipelines.dofns import NAMESPACE
from regenwatch.pipelines.options import RegenwatchOptions, absolute_local_paths, validate_options
from regenwatch.pipelines.transforms import (
    ModeratePages,
    ReadPages,
    WriteModerationOutputs,
    output_files,
    remove_previous_outputs,
)

# DirectRunner in Beam 2.77 first tries to download the Prism runner binary,
# which fails on machines without internet access and then falls back after a
# delay. The FnApiRunner-based BundleBasedDirectRunner path is what we want
# locally, so 'DirectRunner' is mapped to it explicitly.
LOCAL_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"


def build_pipeline(p: beam.Pipeline, options: RegenwatchOptions) -> dict:
    """Read -> moderate -> write; returns the write results by output name."""
    pages, read_dead = p | "ReadPages" >> ReadPages(options.input, options.max_page_bytes)
    moderated = pages | "ModeratePages" >> ModeratePages(
        model_uri=options.model,
        threshold=options.threshold,
        max_bytes=options.max_page_bytes,
        max_sentences=options.max_sentences,
        batch_size=options.batch_size,
    )
    all_dead = (read_dead, moderated.dead_letters) | "AllDeadLetters" >> beam.Flatten()
    return moderated._replace(dead_letters=all_dead) | "WriteOutputs" >> WriteModerationOutputs(options.output)


@dataclass
class RunSummary:
    pages_read: int = 0
    decided: int = 0
    flagged: Dict[str, int] = field(default_factory=dict)
    dead_letters: Dict[str, int] = field(default_factory=dict)
    files: Dict[str, List[str]] = field(default_factory=dict)

    @property
    def dead_total(self) -> int:
        return sum(self.dead_letters.values())

    def render(self) -> str:
        flagged_total = sum(self.flagged.values())
        lines = [
            "regenwatch run summary",
            f"  pages read     {self.pages_read}",
            f"  decided        {self.decided}",
            f"  flagged        {flagged_total}  (high {self.flagged.get('high', 0)}, "
            f"medium {self.flagged.get('medium', 0)}, low {self.flagged.get('low', 0)})",
            f"  dead-lettered  {self.dead_total}"
            + (f"  ({', '.join(f'{k} {v}' for k, v in sorted(self.dead_letters.items()) if v)})" if self.dead_total else ""),
        ]
        for name, paths in self.files.items():
            lines.append(f"  {name:<14} {', '.join(paths) if paths else '(none)'}")
        return "\n".join(lines)


def summarize(result: PipelineResult, output_dir: Optional[str]) -> RunSummary:
    """Counters of a finished run (committed where the runner has them)."""
    from apache_beam.metrics.metric import MetricsFilter

    counters = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + (value or 0)
    summary = RunSummary(
        pages_read=counters.get("pages_read", 0),
        decided=counters.get("pages_decided", 0),
        flagged={s: counters.get(f"flagged_{s}", 0) for s in ("high", "medium", "low")},
        dead_letters={k[len("dead_letter_"):]: v for k, v in counters.items() if k.startswith("dead_letter_")},
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


def run(argv: Optional[List[str]] = None, save_main_session: bool = False) -> PipelineResult:
    """Build and run the batch job; waits for it and prints the summary."""
    options = make_options(argv)
    opts = options.view_as(RegenwatchOptions)
    validate_options(opts)
    # Workers run elsewhere (another directory, another machine): no relative paths.
    absolute_local_paths(opts)
    # Fail at submission, not on a worker, when the model is unusable.
    load_model(opts.model)
    removed = remove_previous_outputs(opts.output)
    if removed:
        logging.info("removed %d output files of an earlier run in %s", removed, opts.output)
    p = beam.Pipeline(options=options)
    build_pipeline(p, opts)
    result = p.run()
    result.wait_until_finish()
    summary = summarize(result, opts.output)
    result.summary = summary  # for callers such as the CLI and tests
    print(summary.render(), file=sys.stderr)
    return result
