"""Pipeline options of ``regenwatch run``.

Every flag has ``help=``; checks that involve several fields or the
filesystem run in :func:`validate_options` at submission, never on workers.
"""
from __future__ import annotations

import os

from apache_beam.options.pipeline_options import PipelineOptions

from regenwatch.models.text import DEFAULT_MAX_SENTENCES
from regenwatch.pipelines.pagecost import DEFAULT_MAX_PAGE_WORK
from regenwatch.pipelines.pages import DEFAULT_LIMITS, DEFAULT_MAX_PAGE_BYTES, RecordLimits


class RegenwatchOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input",
            help="Input file glob (local path or gs://...). The format is chosen per file by "
                 "extension: .jsonl/.ndjson/.json (optionally .gz), .avro, .warc/.warc.gz.",
        )
        parser.add_argument(
            "--output",
            help="Output directory; receives flagged-*.avro, decisions-*.avro, deadletter-*.avro and, "
                 "last, _SUCCESS (under <output>/<run_id>/ when --run_id is given).",
        )
        parser.add_argument(
            "--run_id",
            default=None,
            help="(run) Name of this run, e.g. the schedule date 2026-11-22: outputs are published to "
                 "<output>/<run_id>/, and a rerun with the same id replaces them. Without it the "
                 "outputs go to <output> itself and the id is derived from --input and --output.",
        )
        parser.add_argument(
            "--model",
            default="default",
            help="Model artifact URI (.joblib with a .manifest.json beside it); 'default' is the "
                 "model shipped inside the installed package.",
        )
        parser.add_argument(
            "--threshold",
            type=float,
            default=None,
            help="Page decision threshold in [0, 1]; defaults to the threshold in the model manifest.",
        )
        parser.add_argument(
            "--max_page_bytes",
            type=int,
            default=DEFAULT_MAX_PAGE_BYTES,
            help="Pages with more content characters than this become dead letters.",
        )
        parser.add_argument(
            "--max_sentences",
            type=int,
            default=DEFAULT_MAX_SENTENCES,
            help="Sentences scored per page at most (bounds work on pathological pages).",
        )
        # What one record may carry (issue 15); over a limit, the record is a dead letter.
        parser.add_argument(
            "--max_id_chars",
            type=int,
            default=DEFAULT_LIMITS.max_id_chars,
            help="Records whose id has more characters than this become dead letters.",
        )
        parser.add_argument(
            "--max_url_chars",
            type=int,
            default=DEFAULT_LIMITS.max_url_chars,
            help="Records whose url has more characters than this become dead letters.",
        )
        parser.add_argument(
            "--max_title_chars",
            type=int,
            default=DEFAULT_LIMITS.max_title_chars,
            help="Records whose optional title field (not used by the model) has more characters "
                 "than this become dead letters.",
        )
        parser.add_argument(
            "--max_content_type_chars",
            type=int,
            default=DEFAULT_LIMITS.max_content_type_chars,
            help="Records whose content_type has more characters than this become dead letters.",
        )
        parser.add_argument(
            "--max_fetched_at_chars",
            type=int,
            default=DEFAULT_LIMITS.max_fetched_at_chars,
            help="Records whose fetched_at has more characters than this become dead letters.",
        )
        parser.add_argument(
            "--max_expanded_bytes",
            type=int,
            default=DEFAULT_LIMITS.max_expanded_bytes,
            help="A compressed input file (.jsonl.gz, .warc.gz, compressed Avro blocks) is read up to "
                 "this many expanded bytes; the rest of it becomes one dead letter.",
        )
        parser.add_argument(
            "--max_expansion_ratio",
            type=float,
            default=DEFAULT_LIMITS.max_expansion_ratio,
            help="A compressed input file that expands more than this many times its compressed size "
                 "(judged after its first 8 MiB) is read up to there; the rest becomes one dead letter.",
        )
        parser.add_argument(
            "--max_page_work",
            type=int,
            default=DEFAULT_MAX_PAGE_WORK,
            help="Pages whose estimated work (visible text, tags, nesting, attributes, select options; "
                 "units of ~3-8 ns, docs/ROBUSTNESS.md) is over this become dead letters before parsing; "
                 "the default refuses pages of more than ~1 M characters of visible text.",
        )
        parser.add_argument(
            "--batch_size",
            type=int,
            default=64,
            help="Pages scored in one model call (fixed batches; the last of a bundle can be shorter).",
        )
        parser.add_argument(
            "--max_dead_letter_ratio",
            type=float,
            default=1.0,
            help="Exit non-zero when dead letters / pages read exceeds this ratio (0-1); "
                 "re-delivered duplicates do not count. The outputs are published either way.",
        )
        # Streaming (regenwatch stream); the batch job ignores these.
        parser.add_argument(
            "--input_subscription",
            default=None,
            help="(stream) Pub/Sub subscription to read pages from, one JSON page per message: "
                 "projects/<project>/subscriptions/<name>. Instead of --input, which in stream mode "
                 "is a file glob polled for new and rewritten files.",
        )
        parser.add_argument(
            "--window_seconds",
            type=float,
            default=60.0,
            help="(stream) Fixed window length; each window gets its own output files.",
        )
        parser.add_argument(
            "--poll_seconds",
            type=float,
            default=10.0,
            help="(stream) How often the --input glob is matched for new or rewritten files.",
        )
        parser.add_argument(
            "--stop_after_seconds",
            type=float,
            default=0.0,
            help="(stream, --input only) Stop watching the glob this long after start, so the "
                 "job drains and ends; 0 watches until the job is cancelled.",
        )
        parser.add_argument(
            "--dedup_seconds",
            type=float,
            default=3600.0,
            help="(stream) A page re-delivered with the same id and content within this much "
                 "event time of its first delivery is dropped (and counted).",
        )
        parser.add_argument(
            "--model_refresh_seconds",
            type=float,
            default=None,
            help="(stream) Check the model's manifest at most this often and swap in a newly "
                 "promoted model that passes verification; 0 never checks. Default 60 for "
                 "regenwatch stream; the batch job reads the model once.",
        )


_FIELD_LIMITS = ("max_id_chars", "max_url_chars", "max_title_chars", "max_content_type_chars",
                 "max_fetched_at_chars")


def record_limits(opts: RegenwatchOptions) -> RecordLimits:
    """The per-record limits of a run, from its options."""
    # A field is part of its record: a default over a lowered --max_page_bytes follows it down.
    return RecordLimits(
        max_bytes=opts.max_page_bytes,
        **{name: min(getattr(opts, name), opts.max_page_bytes) for name in _FIELD_LIMITS},
        max_expanded_bytes=opts.max_expanded_bytes,
        max_expansion_ratio=opts.max_expansion_ratio,
    )


def _limit_errors(opts: RegenwatchOptions) -> list:
    """Checks of the input limits, alone and against each other."""
    errors = []
    for name in _FIELD_LIMITS + ("max_expanded_bytes", "max_page_work"):
        if getattr(opts, name) <= 0:
            errors.append(f"--{name} must be positive")
    if opts.max_page_bytes > 0:
        for name in _FIELD_LIMITS:
            # Set explicitly over the page cap: a mistake to report (a default follows the cap down).
            if getattr(opts, name) > opts.max_page_bytes and getattr(opts, name) != getattr(DEFAULT_LIMITS, name):
                errors.append(f"--{name} ({getattr(opts, name)}) cannot be over --max_page_bytes "
                              f"({opts.max_page_bytes}): a record's field is part of its line")
        if opts.max_expanded_bytes < 4 * opts.max_page_bytes:
            errors.append(f"--max_expanded_bytes ({opts.max_expanded_bytes}) must be at least 4x "
                          f"--max_page_bytes ({4 * opts.max_page_bytes}), or a compressed file could not hold "
                          "one page of the largest size")
        if opts.max_page_work < opts.max_page_bytes:
            errors.append(f"--max_page_work ({opts.max_page_work}) must be at least --max_page_bytes "
                          f"({opts.max_page_bytes}): a page's work is at least its length")
    if not opts.max_expansion_ratio >= 1.0:
        errors.append("--max_expansion_ratio must be at least 1")
    return errors


def validate_options(opts: RegenwatchOptions) -> None:
    """Submission-time checks; raises ValueError with a message for the user."""
    errors = _limit_errors(opts)
    if not opts.input:
        errors.append("--input is required")
    if not opts.output:
        errors.append("--output is required")
    if opts.threshold is not None and not 0.0 <= opts.threshold <= 1.0:
        errors.append(f"--threshold must be within [0, 1], got {opts.threshold}")
    if opts.max_page_bytes <= 0:
        errors.append("--max_page_bytes must be positive")
    if opts.max_sentences <= 0:
        errors.append("--max_sentences must be positive")
    if opts.batch_size <= 0:
        errors.append("--batch_size must be positive")
    if not 0.0 <= opts.max_dead_letter_ratio <= 1.0:
        errors.append("--max_dead_letter_ratio must be within [0, 1]")
    if getattr(opts, "run_id", None) is not None:
        from regenwatch.pipelines.publish import validate_run_id

        try:
            validate_run_id(opts.run_id)
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise ValueError("; ".join(errors))


DEFAULT_STREAM_MODEL_REFRESH_SECONDS = 60.0


def stream_model_refresh_seconds(opts: RegenwatchOptions) -> float:
    if opts.model_refresh_seconds is None:
        return DEFAULT_STREAM_MODEL_REFRESH_SECONDS
    return opts.model_refresh_seconds


def validate_stream_options(opts: RegenwatchOptions) -> None:
    """Submission-time checks of ``regenwatch stream``; raises ValueError."""
    errors = []
    if bool(opts.input) == bool(opts.input_subscription):
        errors.append("exactly one of --input (a file glob to watch) and --input_subscription is required")
    if opts.input_subscription and not opts.input_subscription.startswith("projects/"):
        errors.append("--input_subscription must look like projects/<project>/subscriptions/<name>")
    if opts.input_subscription and opts.stop_after_seconds:
        errors.append("--stop_after_seconds applies to a watched --input glob only")
    if not opts.output:
        errors.append("--output is required")
    if opts.threshold is not None and not 0.0 <= opts.threshold <= 1.0:
        errors.append(f"--threshold must be within [0, 1], got {opts.threshold}")
    for name in ("window_seconds", "poll_seconds", "dedup_seconds"):
        if getattr(opts, name) <= 0:
            errors.append(f"--{name} must be positive")
    for name in ("stop_after_seconds", "model_refresh_seconds"):
        value = getattr(opts, name)
        if value is not None and value < 0:
            errors.append(f"--{name} must be 0 or positive")
    for name in ("max_page_bytes", "max_sentences", "batch_size"):
        if getattr(opts, name) <= 0:
            errors.append(f"--{name} must be positive")
    errors.extend(_limit_errors(opts))
    if errors:
        raise ValueError("; ".join(errors))


def absolute_local_paths(opts: RegenwatchOptions) -> None:
    """Make local --input, --output and --model paths absolute, at submission.

    Workers run in another working directory (a worker pool, a container), and
    Beam's file reads match nothing, silently, for a relative path that does
    not exist there. Paths with a scheme (gs://, s3://...) and the model name
    'default' are left as they are.
    """
    for name in ("input", "output", "model"):
        value = getattr(opts, name, None)
        if value and value != "default" and "://" not in value:
            setattr(opts, name, os.path.abspath(value))
