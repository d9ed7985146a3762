"""Reviewers' verdicts back into the training data (``regenwatch train --feedback``).

A verdict (``schemas/verdict.avsc``) names a page by ``id`` and
``content_sha256``: it is small, it can be written by hand or by
``regenwatch review --decide``, and it can never be applied to a page whose
content changed since the reviewer saw it. The page text comes from the run's
input files (``--feedback-pages GLOB``), found by id and verified by hash; a
page the sample set already holds (same content hash) is relabeled in place.

* ``reject``: the page becomes a negative example (label 0, no categories, no
  evidence), so its sentences also count as non-claims for the sentence
  models;
* ``confirm``: a positive with the verdict's categories (label 1). It carries
  no sentence evidence (the reviewer judged the page, not each sentence), so
  it trains the page-level models only, as other flagged pages without
  evidence do.

When a page has several verdicts the latest ``decided_at`` wins. A verdict
whose page cannot be found fails the training run: training on a guessed
text, or silently without the reviewer's decision, would both be wrong.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
from dataclasses import replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from regenwatch.models.classifier import CATEGORIES, severity_for
from regenwatch.training.data_io import REAL, SampleSet

VERDICTS = ("confirm", "reject")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")

PageKey = Tuple[str, str]


class FeedbackError(ValueError):
    """Verdicts that are malformed or cannot be applied."""


def content_sha256(text: str) -> str:
    """Same hash as the pipeline's Page.content_sha256 (content as received, UTF-8)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def now_millis() -> int:
    return int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)


def validate_verdict(row: dict, where: str = "verdict") -> dict:
    """Check one verdict against schemas/verdict.avsc and the policy categories."""
    import fastavro.validation

    from regenwatch.schemas import load_schema

    if not isinstance(row, dict):
        raise FeedbackError(f"{where}: a verdict must be an object")
    row = {"categories": [], "note": None, "model_version": None, "cluster_id": None, **row}
    try:
        fastavro.validation.validate(row, load_schema("verdict"), raise_errors=True)
    except fastavro.validation.ValidationError as exc:
        raise FeedbackError(f"{where}: not a valid verdict ({exc})") from exc
    unknown = [c for c in row["categories"] if c not in CATEGORIES]
    if unknown:
        raise FeedbackError(f"{where}: unknown categories {unknown}; known: {', '.join(CATEGORIES)}")
    if row["verdict"] == "reject" and row["categories"]:
        raise FeedbackError(f"{where}: a rejected flag has no categories")
    if not row["reviewer"].strip():
        raise FeedbackError(f"{where}: reviewer is empty")
    return row


def make_verdict(flagged: dict, verdict: str, reviewer: str, categories: Optional[Sequence[str]] = None,
                 note: Optional[str] = None, decided_at: Optional[int] = None) -> dict:
    """A verdict on a flagged record; a confirm keeps the model's categories unless corrected."""
    if verdict not in VERDICTS:
        raise FeedbackError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    if verdict == "reject":
        cats: List[str] = []
    else:
        cats = list(flagged.get("categories") or []) if categories is None else list(categories)
    return validate_verdict({
        "id": flagged["id"],
        "content_sha256": flagged["content_sha256"],
        "verdict": verdict,
        "categories": cats,
        "reviewer": reviewer,
        "note": note or None,
        "decided_at": now_millis() if decided_at is None else int(decided_at),
        "model_version": flagged.get("model_version"),
        "cluster_id": flagged.get("cluster_id") if (flagged.get("cluster_size") or 1) > 1 else None,
    })


def append_verdicts(path: str, verdicts: Iterable[dict]) -> int:
    """Append verdicts to a JSON Lines file (created if absent); returns how many."""
    rows = [validate_verdict(v) for v in verdicts]
    with open(path, "a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        handle.flush()
    return len(rows)


def _checked_verdict(row, where: str) -> dict:
    from regenwatch.pipelines.pages import lone_surrogate

    if isinstance(row, dict):
        for key in ("id", "content_sha256", "reviewer", "note", "model_version", "cluster_id"):
            value = row.get(key)
            if isinstance(value, str) and lone_surrogate(value) is not None:
                raise FeedbackError(f"{where}: field '{key}' is not valid Unicode (a lone surrogate)")
    try:
        return validate_verdict(row, where)
    except FeedbackError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        # A verdict file is input: whatever a row holds (a huge number, a nested
        # object where a string goes) is reported with its place, not raised.
        raise FeedbackError(f"{where}: not a valid verdict ({type(exc).__name__}: {str(exc)[:300]})") from exc


def read_verdicts(paths: Sequence[str]) -> List[dict]:
    """Verdicts from JSON Lines (.jsonl/.ndjson/.json, optionally .gz) or Avro (.avro) files, validated.

    Anything wrong with a file (unreadable, corrupt, invalid UTF-8 or JSON,
    not a verdict) raises FeedbackError naming the file and the line or
    record. A UTF-8 BOM and CRLF line ends are fine; UTF-16/32 with a BOM is
    decoded; lines are read in bounded chunks (pipelines/bounded.py).
    """
    from regenwatch.pipelines.bounded import jsonl_lines
    from regenwatch.reading import InputFileError, avro_records, checked, open_bytes

    out: List[dict] = []
    for path in paths:
        lower = path.lower()
        if not lower.endswith(".avro") and not lower.endswith(JSONL_SUFFIXES + tuple(s + ".gz" for s in JSONL_SUFFIXES)):
            raise FeedbackError(f"{path}: verdict files are .jsonl or .avro")
        try:
            with open_bytes(path) as handle:
                if lower.endswith(".avro"):
                    for n, record in enumerate(avro_records(path, handle), 1):
                        if isinstance(record.get("decided_at"), dt.datetime):
                            record["decided_at"] = int(record["decided_at"].timestamp() * 1000)
                        out.append(_checked_verdict(record, f"{path}: record {n}"))
                    continue
                for n, line in enumerate(checked(path, jsonl_lines(handle, path), "line"), 1):
                    data = line.data
                    if line.over_cap:
                        raise FeedbackError(f"{path}:{n}: line of {line.length} bytes is far too long for a verdict")
                    if data.startswith(b"\xef\xbb\xbf"):
                        data = data[3:]
                    if not data.strip():
                        continue
                    try:
                        row = json.loads(data.decode("utf-8"))
                    except UnicodeDecodeError as exc:
                        raise FeedbackError(f"{path}:{n}: not valid UTF-8 ({exc})") from exc
                    except RecursionError as exc:
                        raise FeedbackError(f"{path}:{n}: invalid JSON: nested too deeply") from exc
                    except ValueError as exc:
                        raise FeedbackError(f"{path}:{n}: invalid JSON: {exc}") from exc
                    out.append(_checked_verdict(row, f"{path}:{n}"))
        except InputFileError as exc:
            raise FeedbackError(str(exc)) from exc
    return out


def latest_verdicts(verdicts: Iterable[dict]) -> Dict[PageKey, dict]:
    """One verdict per (id, content_sha256): the latest decided_at (later in the files on ties)."""
    latest: Dict[PageKey, dict] = {}
    for v in verdicts:
        key = (v["id"], v["content_sha256"])
        if key not in latest or v["decided_at"] >= latest[key]["decided_at"]:
            latest[key] = v
    return latest


def _note(v: dict) -> str:
    text = f"{v['verdict']} by {v['reviewer']}"
    return text + (f": {v['note']}" if v.get("note") else "")


def merge_feedback(sample: SampleSet, verdicts: Iterable[dict], page_texts: Dict[PageKey, str]) -> Tuple[SampleSet, dict]:
    """A new SampleSet with the verdicts applied, and counts of what changed.

    ``page_texts`` maps (id, content_sha256) to the page content; pages the
    sample set holds (same content hash) need no entry there.
    """
    latest = latest_verdicts(verdicts)
    by_hash: Dict[str, List[int]] = {}
    for i, row in enumerate(sample.pages):
        by_hash.setdefault(content_sha256(row["text"]), []).append(i)
    pages = [dict(row) for row in sample.pages]
    summary = {"verdicts": len(latest), "confirm": 0, "reject": 0, "relabeled": 0, "added": 0}
    missing: List[PageKey] = []
    for key, v in sorted(latest.items()):
        label = 1 if v["verdict"] == "confirm" else 0
        cats = sorted(set(v["categories"]), key=CATEGORIES.index) if label else []
        summary[v["verdict"]] += 1
        fields = {"label": label, "categories": cats, "severity": severity_for(cats) if label else None}
        if key[1] in by_hash:
            for i in by_hash[key[1]]:
                # Evidence stays only where it still describes the label.
                evidence = (pages[i].get("evidence") or []) if label and pages[i]["label"] == 1 else []
                notes = " | ".join(x for x in (pages[i].get("notes"), "relabeled: " + _note(v)) if x)
                pages[i].update(fields, evidence=evidence, notes=notes)
                summary["relabeled"] += 1
            continue
        text = page_texts.get(key)
        if text is None:
            missing.append(key)
            continue
        if content_sha256(text) != key[1]:
            raise FeedbackError(f"page {key[0]!r}: text does not match the verdict's content_sha256")
        pages.append({"id": f"feedback:{key[0]}", "text": text, "kind": None, "evidence": [],
                      "notes": "reviewer verdict: " + _note(v), "content_sha256": key[1], **fields})
        summary["added"] += 1
    if missing:
        shown = ", ".join(f"{i} ({h[:12]})" for i, h in missing[:5])
        raise FeedbackError(
            f"{len(missing)} verdicts refer to pages that are neither in the sample set nor in "
            f"--feedback-pages (with the same content_sha256): {shown}; pass the run's input files")
    # Pages added from verdicts come from real runs: real pages.
    origins = list(sample.origins) + [REAL] * (len(pages) - len(sample.origins))
    return replace(sample, pages=pages, origins=origins), summary


def apply_feedback(sample: SampleSet, verdict_paths: Optional[Sequence[str]],
                   page_patterns: Optional[Sequence[str]] = None) -> SampleSet:
    """``regenwatch train --feedback``: the sample set with the verdict files applied.

    The verdict files join the sample set's file list, so the model manifest's
    training-data hash covers them (each verdict pins its page by hash).
    """
    if not verdict_paths:
        return sample
    from regenwatch.training.sampling import find_pages

    verdicts = read_verdicts(verdict_paths)
    known = {content_sha256(row["text"]) for row in sample.pages}
    wanted = {key for key in latest_verdicts(verdicts) if key[1] not in known}
    texts: Dict[PageKey, str] = {}
    if wanted and page_patterns:
        texts = {key: page.content for key, page in find_pages(page_patterns, wanted).items()}
    merged, summary = merge_feedback(sample, verdicts, texts)
    merged.files = list(sample.files) + [os.path.abspath(p) for p in verdict_paths]
    print(f"feedback: {summary['verdicts']} verdicts ({summary['confirm']} confirm, {summary['reject']} reject): "
          f"{summary['relabeled']} sample pages relabeled, {summary['added']} pages added", file=sys.stderr)
    return merged
