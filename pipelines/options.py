"""Pipeline options of ``regenwatch run``.

Every flag has ``help=``; checks that involve several fields or the
filesystem run in :func:`validate_options` at submission, never on workers.
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from regenwatch.models.text import DEFAULT_MAX_SENTENCES
from regenwatch.pipelines.pages import DEFAULT_MAX_PAGE_BYTES


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
            help="Output directory; receives flagged-*.avro, decisions-*.avro and deadletter-*.avro.",
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
        parser.add_argument(
            "--batch_size",
            type=int,
            default=64,
            help="Most pages scored in one model call (BatchElements upper bound).",
        )
        parser.add_argument(
            "--max_dead_letter_ratio",
            type=float,
            default=1.0,
            help="Exit non-zero when dead letters / pages read exceeds this ratio (0-1).",
        )


def validate_options(opts: RegenwatchOptions) -> None:
    """Submission-time checks; raises ValueError with a message for the user."""
    errors = []
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
    if errors:
        raise ValueError("; ".join(errors))
