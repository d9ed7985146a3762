"""``regenwatch`` command line: run, train, evaluate, review, sample."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

RUN_HELP = """usage: regenwatch run --input GLOB --output DIR [--run_id ID] [--model URI] [--threshold X] [Beam pipeline options...]

Moderate scraped pages in batch (DirectRunner by default) and write, under DIR (DIR/ID with --run_id):
  flagged-*.avro     the reviewer queue (score, severity, categories, rationale, signals)
  decisions-*.avro   one record per page decided
  deadletter-*.avro  one record per input that could not be processed, with the reason

Input formats, chosen per file by extension:
  .jsonl .ndjson .json (.gz)  one page per line: id, content (required), url, fetched_at, content_type
  .avro                       records of schemas/page.avsc
  .warc .warc.gz              response records with an HTML or text payload

regenwatch options:
{options}

Any Beam pipeline option is accepted as well (--runner, --direct_num_workers,
--direct_running_mode, --setup_file, --project, --temp_location, ...).
The outputs are written to staging and published together, _SUCCESS last; a
rerun with the same --run_id replaces them (docs/SCHEDULING.md).
Exit code: 0 on success; 1 when the model is refused, the run fails (no
_SUCCESS is written), or dead letters exceed --max_dead_letter_ratio (published,
with the problem in _SUCCESS); 2 on invalid options.
"""


def _run_help() -> str:
    return RUN_HELP.format(options=_options_lines())


def cmd_run(argv: List[str]) -> int:
    if not argv or "-h" in argv or "--help" in argv:
        print(_run_help())
        return 0 if argv else 2
    from regenwatch.models.artifact import ModelLoadError
    from regenwatch.pipelines.moderate import run

    try:
        result = run(argv)
    except ValueError as exc:
        print(f"regenwatch run: {exc}", file=sys.stderr)
        return 2
    except ModelLoadError as exc:
        print(f"regenwatch run: model refused: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # pylint: disable=broad-except
        # The job failed (a worker error, the output store): the previous
        # outputs of this run id stand untouched. A scheduler needs exit 1
        # and a last line that says so; the traceback is for the operator.
        logging.getLogger("regenwatch").error("run failed", exc_info=True)
        print(f"regenwatch run: the run failed, no _SUCCESS was written: {type(exc).__name__}: "
              f"{str(exc)[:2000]}", file=sys.stderr)
        return 1
    for problem in result.summary.problems:
        print(f"regenwatch run: {problem}", file=sys.stderr)
    return 1 if result.summary.problems else 0


STREAM_HELP = """usage: regenwatch stream (--input GLOB | --input_subscription SUB) --output DIR [--window_seconds S]
                         [--model URI] [--model_refresh_seconds S] [Beam pipeline options...]

Moderate pages as they arrive and write, under DIR, one set of files per fixed window:
  flagged-<start>-<end>-00000-of-00001.avro     the reviewer queue of the window
  decisions-<start>-<end>-00000-of-00001.avro   one record per page decided in the window
  deadletter-<start>-<end>-00000-of-00001.avro  inputs of the window that could not be processed
(same schemas as regenwatch run; <start>/<end> are the window bounds, UTC, like 20260101T120000Z).

Sources:
  --input_subscription projects/P/subscriptions/S   Pub/Sub, one JSON page per message (needs the [gcp] extra)
  --input 'DIR/*.jsonl'                             a folder polled every --poll_seconds; new and
                                                    rewritten files are read (.jsonl, .avro, .warc)
A page re-delivered with the same id and content within --dedup_seconds is dropped and counted.
The model path is re-checked every --model_refresh_seconds (default 60): a newly promoted model
(artifact, then manifest) that passes verification replaces the old one without a restart; one
that fails is refused and the old model keeps deciding. Each record names its model_version.

Locally (no --runner) a folder is watched by the FnApiRunner until --stop_after_seconds and every
window is written when the run ends; Pub/Sub runs on the Python DirectRunner, which writes each
window as it closes. On Dataflow: --runner DataflowRunner --streaming (see docs/STREAMING.md).

regenwatch options:
{options}

Exit code: 0 when the job ends; 1 when the model is refused at submission or the job fails;
2 on invalid options.
"""


def _options_lines() -> str:
    from regenwatch.pipelines.options import RegenwatchOptions

    parser = argparse.ArgumentParser(add_help=False)
    RegenwatchOptions._add_argparse_args(parser)
    lines = []
    for action in parser._actions:
        flag = ", ".join(action.option_strings)
        default = f" (default: {action.default})" if action.default not in (None, argparse.SUPPRESS) else ""
        lines.append(f"  {flag:<24} {action.help}{default}")
    return "\n".join(lines)


def cmd_stream(argv: List[str]) -> int:
    if not argv or "-h" in argv or "--help" in argv:
        print(STREAM_HELP.format(options=_options_lines()))
        return 0 if argv else 2
    from regenwatch.models.artifact import ModelLoadError
    from regenwatch.pipelines.streaming import run

    try:
        result = run(argv)
    except ValueError as exc:
        print(f"regenwatch stream: {exc}", file=sys.stderr)
        return 2
    except ModelLoadError as exc:
        print(f"regenwatch stream: model refused: {exc}", file=sys.stderr)
        return 1
    state = str(result.state)
    if state not in ("DONE", "PipelineState.DONE"):
        print(f"regenwatch stream: the job ended in state {state}", file=sys.stderr)
        return 1
    return 0


def cmd_train(argv: List[str]) -> int:
    from regenwatch.reading import InputFileError
    from regenwatch.training.feedback import FeedbackError
    from regenwatch.training.train import build_parser, train_command

    try:
        return train_command(build_parser().parse_args(argv))
    except (FeedbackError, InputFileError) as exc:
        print(f"regenwatch train: --feedback: {exc}", file=sys.stderr)
        return 2


def cmd_evaluate(argv: List[str]) -> int:
    from regenwatch.training.evaluate import build_parser, evaluate_command

    return evaluate_command(build_parser().parse_args(argv))


def cmd_review(argv: List[str]) -> int:
    from regenwatch.reading import InputFileError
    from regenwatch.review import build_parser, review_command

    try:
        return review_command(build_parser().parse_args(argv))
    except InputFileError as exc:
        # A bad output file: its name and record, not a traceback (regenwatch/reading.py).
        print(f"regenwatch review: {exc}", file=sys.stderr)
        return 2


def cmd_sample(argv: List[str]) -> int:
    from regenwatch.reading import InputFileError
    from regenwatch.training.sampling import build_parser, sample_command

    try:
        return sample_command(build_parser().parse_args(argv))
    except InputFileError as exc:
        print(f"regenwatch sample: {exc}", file=sys.stderr)
        return 2


COMMANDS = {
    "run": (cmd_run, "moderate pages in batch and write the reviewer queue"),
    "stream": (cmd_stream, "moderate pages as they arrive (Pub/Sub or a watched folder), per window"),
    "train": (cmd_train, "retrain the classifier from the labeled sample set"),
    "evaluate": (cmd_evaluate, "measure a model on a labeled page file"),
    "review": (cmd_review, "the flagged queue: terminal, HTML report, browser workspace (--serve), verdicts"),
    "sample": (cmd_sample, "export the decided pages nearest the threshold for labeling"),
}


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Beam's GCP I/O module warns at import time that the optional Google
    # client libraries are absent; on a machine without the [gcp] extra that
    # is expected and says nothing about the run.
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: "apitools not found" not in record.getMessage())
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: regenwatch COMMAND [options]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<10} {text}")
        print("\n'regenwatch COMMAND --help' for a command's options.")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    func, _ = COMMANDS[argv[0]]
    return func(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
