"""Uncertainty sampling: the decided pages nearest the threshold, for the next round of labels.

``regenwatch sample --uncertain N --pages GLOB OUTPUT_DIR`` reads a run's
``decisions-*.avro``, picks the N pages whose score is closest to the
decision threshold (one page per distinct content, so exact duplicates do not
use up labels), finds their text in the run's input files (decision records
carry no text) and writes them in the labeling format of
``training/data/train_pages.jsonl`` with ``label`` null.

The helpers that read a run's inputs and outputs without a Beam pipeline
(:func:`read_outputs`, :func:`iter_input_pages`, :func:`find_pages`) live
here too; ``regenwatch review`` and ``regenwatch train --feedback`` use them.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from regenwatch.pipelines.pages import Page, iter_warc_pages, page_from_json_line, page_from_record

PageKey = Tuple[str, str]  # (page id, content_sha256)


def _filesystems():
    # Beam's FileSystems: local paths and gs:// alike. Imported lazily so that
    # importing this module stays cheap.
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _match(patterns: Iterable[str]) -> List[str]:
    fs = _filesystems()
    files: List[str] = []
    for pattern in patterns:
        found = sorted(m.path for m in fs.match([pattern])[0].metadata_list)
        if not found:
            raise FileNotFoundError(f"{pattern!r} matches no files")
        files.extend(found)
    return files


# --------------------------------------------------------------------------
# A run's outputs and inputs, read outside Beam


def iter_outputs(output_dir: str, name: str) -> Iterator[dict]:
    """The records of one output of a run ('flagged', 'decisions' or 'dead_letters'), streamed.

    A file that cannot be read, or is not that output's Avro, raises
    regenwatch.reading.InputFileError naming the file and the record.
    """
    from regenwatch.pipelines.transforms import output_files
    from regenwatch.reading import avro_records, open_bytes
    from regenwatch.schemas import load_schema

    schema = load_schema({"decisions": "decision", "dead_letters": "deadletter"}.get(name, name))
    # Fields without a default must be in the file (older files may lack the later, defaulted ones).
    required = [f["name"] for f in schema["fields"] if "default" not in f]
    for path in output_files(output_dir)[name]:
        with open_bytes(path) as handle:
            yield from avro_records(path, handle, required)


def read_outputs(output_dir: str, name: str) -> List[dict]:
    """All records of one output of a run, in a list."""
    return list(iter_outputs(output_dir, name))


def _iter_file_pages(path: str) -> Iterator[Page]:
    """Pages of one input file; records that are not valid pages are skipped.

    Skipped records became dead letters in the run, so no decision or verdict
    can refer to them. A file that cannot be read on (corrupt, truncated, over
    its expansion limits) raises regenwatch.reading.InputFileError naming the
    file and the line or record; memory is bounded as in the pipeline.
    """
    from regenwatch.pipelines.bounded import jsonl_lines
    from regenwatch.pipelines.transforms import input_format
    from regenwatch.reading import avro_records, checked, open_bytes

    fmt = input_format(path)
    if fmt is None:
        raise ValueError(f"{path}: not a page file (.jsonl/.ndjson/.json, .avro, .warc/.warc.gz)")
    with open_bytes(path) as handle:
        if fmt == "jsonl":
            for line in checked(path, jsonl_lines(handle, path), "line"):
                if line.over_cap or not line.data.strip():
                    continue
                try:
                    yield page_from_json_line(line.data, source=path, position=line.offset)
                except Exception:  # pylint: disable=broad-except
                    continue  # a dead letter of the run (per-record isolation, as in pipelines/dofns.py)
        elif fmt == "avro":
            for index, record in enumerate(avro_records(path, handle)):
                try:
                    yield page_from_record(record, source=path, position=index)
                except Exception:  # pylint: disable=broad-except
                    continue  # a dead letter of the run
        else:
            for item in checked(path, iter_warc_pages(handle, source=path), "WARC record"):
                if isinstance(item, Page):
                    yield item


def iter_input_pages(patterns: Sequence[str]) -> Iterator[Page]:
    """Pages of every file matching the globs, in file order."""
    for path in _match(patterns):
        yield from _iter_file_pages(path)


def find_pages(patterns: Sequence[str], wanted: Set[PageKey]) -> Dict[PageKey, Page]:
    """The wanted (id, content_sha256) pages found in the input files.

    Only the wanted pages are kept, so memory stays bounded by their number
    however large the inputs are; the scan stops once all are found.
    """
    found: Dict[PageKey, Page] = {}
    if not wanted:
        return found
    for page in iter_input_pages(patterns):
        key = (page.id, page.content_sha256())
        if key in wanted and key not in found:
            found[key] = page
            if len(found) == len(wanted):
                break
    return found


# --------------------------------------------------------------------------
# Choosing and exporting


def run_threshold(flagged: Iterable[dict]) -> Optional[float]:
    """The decision threshold of a run, from its flagged records (None if none flagged)."""
    counts = Counter(float(r["threshold"]) for r in flagged)
    if len(counts) > 1:
        raise ValueError(f"flagged records carry several thresholds {sorted(counts)}: pass --threshold")
    return next(iter(counts)) if counts else None


def select_uncertain(decisions: Iterable[dict], n: int, threshold: float, chunk: int = 10_000) -> List[dict]:
    """The n decisions nearest the threshold, one per distinct content (ties by id).

    Decisions are streamed in chunks and only the best n are carried from one
    chunk to the next, so memory is bounded by chunk + n whatever the run's
    size. This is exact: a content left out of a chunk's best n has n other
    contents nearer the threshold already, so it cannot be among the n overall.
    """
    if n < 0:
        raise ValueError("N must be >= 0")
    kept: List[dict] = []
    buffer: List[dict] = []
    for d in decisions:
        buffer.append(d)
        if len(buffer) >= chunk:
            kept, buffer = _nearest(kept + buffer, n, threshold), []
    return _nearest(kept + buffer, n, threshold)


def _nearest(decisions: List[dict], n: int, threshold: float) -> List[dict]:
    ordered = sorted(decisions, key=lambda d: (abs(float(d["score"]) - threshold), d["id"], d["content_sha256"]))
    picked: List[dict] = []
    seen: Set[str] = set()
    for d in ordered:
        if len(picked) >= n:
            break
        if d["content_sha256"] in seen:
            continue
        seen.add(d["content_sha256"])
        picked.append(d)
    return picked


def labeling_row(decision: dict, page: Page, threshold: float) -> dict:
    """A page to label, in the format of training/data/train_pages.jsonl (label null)."""
    return {
        "id": page.id,
        "source_url": page.url,
        "kind": None,
        "title": None,
        "text": page.content,
        "label": None,
        "severity": None,
        "categories": [],
        "evidence": [],
        "notes": (f"uncertainty sample: score {float(decision['score']):.4f} at threshold {threshold:.4f}, "
                  f"model {decision['model_version']}"),
        "content_sha256": decision["content_sha256"],
        "score": float(decision["score"]),
    }


def export_uncertain(output_dir: str, page_patterns: Sequence[str], n: int, out_path: str,
                     threshold: Optional[float] = None) -> dict:
    """Write the n most uncertain decided pages of a run to out_path (JSON Lines)."""
    if threshold is None:
        threshold = run_threshold(iter_outputs(output_dir, "flagged"))
    if threshold is None:
        raise ValueError("no flagged record tells the run's threshold: pass --threshold")
    stats = {"decisions": 0}

    def counted(records):
        for record in records:
            stats["decisions"] += 1
            yield record

    picked = select_uncertain(counted(iter_outputs(output_dir, "decisions")), n, threshold)
    pages = find_pages(page_patterns, {(d["id"], d["content_sha256"]) for d in picked})
    rows, missing = [], []
    for d in picked:
        page = pages.get((d["id"], d["content_sha256"]))
        if page is None:
            missing.append(d["id"])
        else:
            rows.append(labeling_row(d, page, threshold))
    with open(out_path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"decisions": stats["decisions"], "threshold": threshold, "written": len(rows), "missing": missing,
            "out": out_path}


def build_parser(parser: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog="regenwatch sample",
        description="Export the decided pages nearest the decision threshold for labeling.")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="Output directory of a regenwatch run.")
    parser.add_argument("--uncertain", type=int, required=True, metavar="N",
                        help="How many pages to export (the N nearest the threshold, one per distinct content).")
    parser.add_argument("--pages", nargs="+", required=True, metavar="GLOB",
                        help="The run's input files (decision records carry no text).")
    parser.add_argument("--out", default="to_label.jsonl",
                        help="JSON Lines file to write, in the labeling format of training/data/train_pages.jsonl.")
    parser.add_argument("--threshold", type=float, default=None,
                        help="Decision threshold; default: the one in the run's flagged records.")
    return parser


def sample_command(args: argparse.Namespace) -> int:
    try:
        summary = export_uncertain(args.output_dir, args.pages, args.uncertain, args.out, args.threshold)
    except (ValueError, FileNotFoundError) as exc:
        print(f"regenwatch sample: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {summary['written']} pages nearest threshold {summary['threshold']:.4f} "
          f"(of {summary['decisions']} decided) to {summary['out']}", file=sys.stderr)
    if summary["missing"]:
        print(f"regenwatch sample: {len(summary['missing'])} chosen pages not found in --pages "
              f"(first: {', '.join(summary['missing'][:5])})", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return sample_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
