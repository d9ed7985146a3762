"""What each part of the model costs per page: CPU-ms of normalization and of every step of ``score_pages``.

``python -m bench.model_parts [--pages 2000] [--model default|trained|URI] [--repeat 2]``

Reads generated pages (bench/generate.py, the benchmark's input), normalizes
them (``normalize_page``) and scores them in batches of 64 as the plain loop
and the pipeline do (``score_pages``), with the model's parts timed from
outside by wrapping methods of the loaded instance (nothing in ``models/``
changes) on an exclusive CPU clock (``time.process_time``: CPU seconds of
this process, all threads, so other jobs on a shared machine count little):

==========================================  ==========================================================
part                                        what is timed
==========================================  ==========================================================
normalization                               ``normalize_page`` (HTML to text, folding, sentences)
sentence featurization                      ``parts_["vec"].transform`` + the rest of ``_sentence_probs``
sentence models                             ``predict_proba`` of the claim and 7 category models
page context/voice models                   ``parts_["ctx_vec"].transform`` + ctx and voice ``predict_proba``
page cues                                   ``page_cue_matrix`` of the page texts
stacked page model                          ``_page_matrix`` (page features) + ``page_model_.predict_proba``
rationale model: sentence features          ``_rerank_features`` without its cues, and ``_claim_strengths``
rationale model: sentence cues              ``page_cue_matrix`` of the sentences (inside ``_rerank_features``)
rationale model: boosted trees              ``rationale_model_.predict_proba``
rationale selection                         ``_rationale`` (picking sentences, categories, top terms)
score_pages, rest                           the rest of ``score_pages`` (batching, CSR conversion, results)
==========================================  ==========================================================

The figures are CPU-ms per scored page (pages that reach the model; broken
records are left out). The wrappers add ~1 us per call. With ``--repeat N``
the whole measurement runs N times on the same pages and the run with the
least total CPU is printed. Timings are printed only: the smoke test checks
the rows, not the numbers.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from bench.loop import BATCH_SIZE, StageClock, _lines

PARTS = (
    "normalization",
    "sentence featurization",
    "sentence models",
    "page context/voice models",
    "page cues",
    "stacked page model",
    "rationale model: sentence features",
    "rationale model: sentence cues",
    "rationale model: boosted trees",
    "rationale selection",
    "score_pages, rest",
)
# Parts that make up the rationale model, and those of the page score (what the pipeline needs to decide).
RATIONALE_MODEL_PARTS = tuple(p for p in PARTS if p.startswith("rationale model"))


def read_normalizable(files: Sequence[str], limit: Optional[int] = None):
    """(content, content_type) of the pages of files that parse, in input order, at most ``limit``."""
    from regenwatch.pipelines.pages import DEFAULT_MAX_PAGE_BYTES, InputError, page_from_json_line

    out = []
    for path in files:
        for position, line in _lines(path):
            if limit is not None and len(out) >= limit:
                return out
            try:
                page = page_from_json_line(line, source=path, max_bytes=DEFAULT_MAX_PAGE_BYTES, position=position)
            except InputError:
                continue
            out.append((page.content, page.content_type))
    return out


def instrument_parts(model, clock: StageClock) -> List[str]:
    """Wrap the model's parts on this instance (see the module docstring); returns what could be hooked.

    Also replaces ``page_cue_matrix`` in the classifier module (restored by
    :func:`restore_parts`): page texts count as "page cues", sentences (called
    inside the rationale model's features) as "rationale model: sentence cues".
    """
    from regenwatch.models import classifier

    hooked = []

    def hook(obj, attr, part):
        fn = getattr(obj, attr, None)
        if callable(fn):
            setattr(obj, attr, clock.wrap(fn, part))
            hooked.append(f"{attr}={part}")

    parts = model.parts_
    hook(model, "score_pages", "score_pages, rest")
    hook(model, "_sentence_probs", "sentence featurization")
    hook(parts["vec"], "transform", "sentence featurization")
    for m in parts["sentence_models"]:
        if not isinstance(m, float):
            m.predict_proba = clock.wrap(m.predict_proba, "sentence models")
    hooked.append("sentence_models[*].predict_proba=sentence models")
    hook(parts["ctx_vec"], "transform", "page context/voice models")
    hook(parts["ctx"], "predict_proba", "page context/voice models")
    if parts.get("voice") is not None:
        hook(parts["voice"], "predict_proba", "page context/voice models")
    hook(model, "_page_matrix", "stacked page model")
    hook(model.page_model_, "predict_proba", "stacked page model")
    hook(model, "_claim_strengths", "rationale model: sentence features")
    hook(model, "_claim_strength", "rationale model: sentence features")
    hook(model, "_rerank_features", "rationale model: sentence features")
    if getattr(model, "rationale_model_", None) is not None:
        hook(model.rationale_model_, "predict_proba", "rationale model: boosted trees")
    hook(model, "_rationale", "rationale selection")

    original = classifier.page_cue_matrix
    cues_page = clock.wrap(original, "page cues")
    cues_sentence = clock.wrap(original, "rationale model: sentence cues")

    def page_cue_matrix(texts):
        inside = clock.current is not None and clock.current.startswith("rationale model")
        return (cues_sentence if inside else cues_page)(texts)

    page_cue_matrix.original = original
    classifier.page_cue_matrix = page_cue_matrix
    hooked.append("page_cue_matrix=page cues | rationale model: sentence cues")
    return hooked


def restore_parts() -> None:
    from regenwatch.models import classifier

    original = getattr(classifier.page_cue_matrix, "original", None)
    if original is not None:
        classifier.page_cue_matrix = original


def measure_parts(pages, model, threshold: float, batch_size: int = BATCH_SIZE) -> Dict:
    """CPU seconds per part over the pages ((content, content_type) pairs), normalized and scored in batches.

    ``model`` is instrumented in place (load a fresh instance per call).
    """
    from regenwatch.models.text import DEFAULT_MAX_SENTENCES, PageError, normalize_page
    from regenwatch.pipelines.pages import DEFAULT_MAX_PAGE_BYTES

    clock = StageClock(timer=time.process_time, names=PARTS)
    hooked = instrument_parts(model, clock)
    scored = sentences = 0
    cpu0 = time.process_time()
    try:
        batch = []

        def flush():
            nonlocal scored
            model.score_pages(batch, threshold=threshold)
            scored += len(batch)
            batch.clear()

        for content, content_type in pages:
            with clock.stage("normalization"):
                try:
                    normalized = normalize_page(content, content_type, max_chars=DEFAULT_MAX_PAGE_BYTES,
                                                max_sentences=DEFAULT_MAX_SENTENCES)
                except PageError:
                    continue
            sentences += len(normalized.sentences)
            batch.append(normalized)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    finally:
        restore_parts()
    total = time.process_time() - cpu0
    return {"pages": scored, "sentences": sentences, "cpu_s": dict(clock.totals), "calls": dict(clock.calls),
            "total_cpu_s": total, "hooked": hooked}


def parts_table(result: Dict) -> List[List[str]]:
    """Rows: part, CPU s, CPU-ms per page, share, calls; then the rationale model's sum and the total."""
    pages = max(1, result["pages"])
    cpu = result["cpu_s"]
    total = sum(cpu.values())
    rows = []
    for part in PARTS:
        v = cpu.get(part, 0.0)
        rows.append([part, f"{v:.2f}", f"{1000 * v / pages:.3f}", f"{100 * v / total:.1f}%" if total else "-",
                     str(result["calls"].get(part, 0))])
    rat = sum(cpu.get(p, 0.0) for p in RATIONALE_MODEL_PARTS)
    rows.append(["(rationale model, all)", f"{rat:.2f}", f"{1000 * rat / pages:.3f}",
                 f"{100 * rat / total:.1f}%" if total else "-", ""])
    model = total - cpu.get("normalization", 0.0)
    rows.append(["(score_pages, all)", f"{model:.2f}", f"{1000 * model / pages:.3f}",
                 f"{100 * model / total:.1f}%" if total else "-", ""])
    rows.append(["total", f"{total:.2f}", f"{1000 * total / pages:.3f}", "100%", ""])
    return rows


PARTS_HEADERS = ["part", "CPU s", "CPU-ms/page", "share", "calls"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.model_parts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=2000, help="Generated pages (default 2000).")
    p.add_argument("--input-dir", default=None, help="Use the pages-*.jsonl here instead of generating pages.")
    p.add_argument("--model", default="default", help="'default' (the shipped model), 'trained' or an artifact URI.")
    p.add_argument("--repeat", type=int, default=1, help="Measure this many times; print the least total CPU.")
    p.add_argument("--seed", type=int, default=0, help="Page generator seed.")
    return p


def best_of(pages, model_uri: str, repeat: int) -> Dict:
    from regenwatch.models.artifact import load_model

    results = []
    for _ in range(max(1, repeat)):
        loaded = load_model(model_uri)
        threshold = float(loaded.manifest.get("threshold", 0.5))
        results.append(measure_parts(pages, loaded.model, threshold))
    best = min(results, key=lambda r: r["total_cpu_s"])
    best["repeats_total_cpu_s"] = [r["total_cpu_s"] for r in results]
    best["model_version"] = loaded.version
    return best


def main(argv=None) -> int:
    import glob

    from bench.generate import write_input
    from bench.run import _table

    args = build_parser().parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="regenwatch-parts-")
    try:
        if args.input_dir:
            files = sorted(glob.glob(os.path.join(args.input_dir, "pages-*.jsonl")))
        else:
            files = write_input(os.path.join(workdir, "input"), args.pages, args.seed, shards=1).files
        pages = read_normalizable(files, args.pages)
        model_uri = args.model
        if model_uri == "trained":
            from regenwatch.training.data_io import load_sample_set
            from regenwatch.training.train import train, write_model

            print("training a model with the current code (not timed) ...", file=sys.stderr, flush=True)
            sample = load_sample_set()
            model_uri = os.path.join(workdir, "model", "candidate.joblib")
            os.makedirs(os.path.dirname(model_uri))
            write_model(train(sample), sample, model_uri, version="parts")
        with open("/proc/loadavg") as handle:
            load = handle.read().split()[0]
        res = best_of(pages, model_uri, args.repeat)
        print(f"## Model parts: {res['pages']} pages scored ({res['sentences']} sentences), model "
              f"{res['model_version']}, batches of {BATCH_SIZE}; CPU of this process (process_time); "
              f"best of {len(res['repeats_total_cpu_s'])} (totals "
              f"{', '.join(f'{t:.1f}' for t in res['repeats_total_cpu_s'])} CPU-s); load {load} at start\n")
        print(_table(PARTS_HEADERS, parts_table(res)))
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
