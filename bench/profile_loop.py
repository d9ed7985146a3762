"""cProfile of the plain loop (the LIMIT): where a page's time goes.

``python -m bench.profile_loop [--pages 2000] [--model trained|default|URI]``

Prints the stage split (measured without the profiler), the functions of the
hot path with their cumulative time and call counts, and the top functions by
own time. The profiles count CPU seconds of this process (``time.process_time``),
not wall time, so other jobs on a shared machine do not show up in them. ``--model trained`` first trains a model on the sample set with the
current code (not profiled), so the profile never depends on a shipped
artifact that lags behind the code.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time

from bench.generate import write_input
from bench.loop import STAGES, StageClock, instrument, plain_loop

# (file suffix, function name, label): the hot path, in pipeline order.
KEY_FUNCTIONS = [
    ("pipelines/pages.py", "page_from_json_line", "parse: page_from_json_line"),
    ("models/text.py", "normalize_page", "normalize_page (all)"),
    ("models/text.py", "_is_binary", "  _is_binary"),
    ("models/text.py", "looks_like_html", "  looks_like_html"),
    ("models/text.py", "html_to_text", "  html_to_text"),
    ("models/text.py", "fold_text", "  fold_text"),
    ("models/text.py", "fold_homoglyphs", "    fold_homoglyphs"),
    ("models/text.py", "_script_counts", "      _script_counts"),
    ("models/text.py", "_word_scripts", "      _word_scripts"),
    ("models/text.py", "_script", "      _script (per character)"),
    ("models/text.py", "join_spaced_letters", "    join_spaced_letters"),
    ("models/text.py", "split_sentences", "  split_sentences"),
    ("models/text.py", "_split_line", "    _split_line"),
    ("models/classifier.py", "score_pages", "score_pages (all)"),
    ("models/classifier.py", "_page_features", "  _page_features"),
    ("models/classifier.py", "_sentence_probs", "    _sentence_probs"),
    ("models/classifier.py", "sentence_documents", "      sentence_documents"),
    ("models/features.py", "sentence_documents", "      sentence_documents"),
    ("models/features.py", "mask_entities", "        mask_entities"),
    ("sklearn/feature_extraction/text.py", "transform", "  TfidfVectorizer.transform (all)"),
    ("sklearn/feature_extraction/text.py", "_count_vocab", "    _count_vocab"),
    ("sklearn/feature_extraction/text.py", "_word_ngrams", "    _word_ngrams"),
    ("sklearn/linear_model/_logistic.py", "predict_proba", "  LogisticRegression.predict_proba"),
    ("models/classifier.py", "_rationale", "  _rationale"),
    ("models/classifier.py", "_top_terms", "    _top_terms"),
    ("pipelines/redelivery.py", "redelivery_row", "dedup: redelivery_row"),
    ("pipelines/redelivery.py", "redelivered_map", "dedup: redelivered_map"),
    ("pipelines/clustering.py", "sketch_row", "cluster: sketch_row"),
    ("pipelines/clustering.py", "minhash_signature", "  minhash_signature"),
    ("pipelines/clustering.py", "build_cluster_table", "cluster: build_cluster_table"),
    ("pipelines/pages.py", "decision_record", "write: decision_record"),
    ("pipelines/pages.py", "flagged_record", "write: flagged_record"),
    ("pipelines/pages.py", "sentence_context", "  sentence_context"),
    ("pipelines/pages.py", "content_sha256", "  content_sha256"),
]


def key_function_rows(stats: pstats.Stats, total: float):
    """(label, calls, cumulative s, share) of the KEY_FUNCTIONS present in this profile.

    Where a name matches several functions of one file (sklearn's three
    ``transform`` methods call each other), the outermost (largest
    cumulative time) is kept.
    """
    rows = []
    for suffix, func, label in KEY_FUNCTIONS:
        found = [(nc, ct) for (path, _line, name), (_cc, nc, _tt, ct, _callers) in stats.stats.items()
                 if name == func and path.replace(os.sep, "/").endswith(suffix)]
        if found:
            nc, ct = max(found, key=lambda f: f[1])
            rows.append((label, nc, ct, 100 * ct / total if total else 0.0))
    return rows


def _area(path: str) -> str:
    path = path.replace(os.sep, "/")
    for marker in ("/models/", "/pipelines/", "/schemas/", "/bench/"):
        if marker in path and "site-packages" not in path:
            return path[path.index(marker) + 1:]
    if "site-packages/" in path:
        rest = path.split("site-packages/", 1)[1]
        parts = rest.split("/")
        return "/".join(parts[:2]) if len(parts) > 2 else parts[0]
    return path


def own_time_by_file(stats: pstats.Stats):
    """Own time per source file; a builtin's time (re.sub, str.translate, ...) goes to the files calling it."""
    totals = {}
    for (path, _line, _name), (_cc, _nc, tt, _ct, callers) in stats.stats.items():
        if path == "~" and callers:
            for (cpath, _cl, _cn), caller_stats in callers.items():
                area = _area(cpath)
                totals[area] = totals.get(area, 0.0) + caller_stats[2]
        else:
            area = _area(path)
            totals[area] = totals.get(area, 0.0) + tt
    return sorted(totals.items(), key=lambda kv: -kv[1])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.profile_loop", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=2000, help="Pages to profile (default 2000).")
    p.add_argument("--model", default="trained", help="'trained' (train one now), 'default' or an artifact URI.")
    p.add_argument("--top", type=int, default=25, help="Functions listed by own time.")
    p.add_argument("--seed", type=int, default=0, help="Page generator seed.")
    p.add_argument("--save", default=None, help="Also save the raw profile (pstats file) here.")
    p.add_argument("--pipeline", action="store_true",
                   help="Also profile the pipeline (moderate.run, 1 worker, in this process) on the same "
                        "pages and model, to show what it spends beyond the loop.")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from regenwatch.models.artifact import load_model

    workdir = tempfile.mkdtemp(prefix="regenwatch-profile-")
    try:
        inp = write_input(os.path.join(workdir, "input"), args.pages, args.seed, shards=1)
        model_uri = args.model
        if args.model == "trained":
            from regenwatch.training.data_io import load_sample_set
            from regenwatch.training.train import train, write_model

            print("training a model with the current code (not profiled) ...", file=sys.stderr, flush=True)
            sample = load_sample_set()
            model_uri = os.path.join(workdir, "model", "candidate.joblib")
            os.makedirs(os.path.dirname(model_uri))
            write_model(train(sample), sample, model_uri, version="profile")
        loaded = load_model(model_uri)
        threshold = float(loaded.manifest.get("threshold", 0.5))

        # Stage split without the profiler (its overhead is uneven across stages).
        clock = StageClock()
        timed_model = load_model(model_uri).model
        instrument(timed_model, clock)
        t0 = time.perf_counter()
        res = plain_loop(inp.files, os.path.join(workdir, "out-timed"), timed_model, threshold, loaded.version,
                         clock=clock)
        wall = time.perf_counter() - t0

        prof = cProfile.Profile(time.process_time)
        prof.enable()
        plain_loop(inp.files, os.path.join(workdir, "out-profiled"), loaded.model, threshold, loaded.version)
        prof.disable()
        if args.save:
            prof.dump_stats(args.save)
        stats = pstats.Stats(prof)
        total = max(ct for (_, _, name), (_, _, _, ct, _) in stats.stats.items() if name == "plain_loop")

        print(f"## Profile of the plain loop: {res.pages_read} pages "
              f"(content chars p50 {inp.content_chars_p50}), {wall:.1f} s unprofiled = "
              f"{res.pages_read / wall:.1f} pages/s; {total:.1f} CPU s under cProfile\n")
        print("### Stage split (unprofiled, exclusive wall time)\n")
        print("| stage | s | share | ms/page |\n|---|---|---|---|")
        stage_total = sum(res.stages.values())
        for name in STAGES:
            v = res.stages.get(name, 0.0)
            print(f"| {name} | {v:.2f} | {100 * v / stage_total:.1f}% | {1000 * v / res.pages_read:.2f} |")
        print("\n### Hot path (cProfile cumulative time; share of the profiled loop)\n")
        print("| function | calls | cum s | share |\n|---|---|---|---|")
        for label, nc, ct, share in key_function_rows(stats, total):
            print(f"| {label} | {nc} | {ct:.2f} | {share:.1f}% |")
        print("\n### Own time by source file (builtins charged to their callers)\n")
        print("| file | own s | share |\n|---|---|---|")
        for area, tt in own_time_by_file(stats)[:15]:
            print(f"| {area} | {tt:.2f} | {100 * tt / total:.1f}% |")
        print(f"\n### Top {args.top} functions by own time\n")
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(args.top)
        lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
        start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
        print("```")
        print("\n".join(ln.replace(sys.prefix, "<venv>") for ln in lines[start:]))
        print("```")
        if args.pipeline:
            profile_pipeline(inp, model_uri, workdir, res.pages_read, total, args.top)
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


PIPELINE_FUNCTIONS = [
    ("models/artifact.py", "load_model", "load_model (the launcher's verification; the in-process worker reuses it)"),
    ("pipelines/dofns.py", "process", "DoFn.process (outermost; Normalize/Score/...)"),
    ("models/text.py", "normalize_page", "normalize_page"),
    ("models/classifier.py", "score_pages", "score_pages"),
    ("pipelines/redelivery.py", "redelivery_row", "dedup: redelivery_row"),
    ("pipelines/redelivery.py", "redelivered_map", "dedup: redelivered_map"),
    ("pipelines/clustering.py", "sketch_row", "clustering: sketch_row"),
    ("pipelines/clustering.py", "minhash_signature", "  minhash_signature"),
    ("pipelines/clustering.py", "build_cluster_table", "clustering: build_cluster_table"),
    ("pipelines/rowfiles.py", "process", "rowfiles: WriteRowFilesFn.process"),
    ("pipelines/publish.py", "count_records", "publish: count_records"),
    ("pipelines/publish.py", "publish", "publish: publish"),
    ("apache_beam/io/avroio.py", "write_record", "WriteToAvro: write_record"),
    ("apache_beam/transforms/util.py", "process", "beam.transforms.util process (BatchElements, Reshuffle...)"),
]


def profile_pipeline(inp, model_uri: str, workdir: str, pages: int, loop_total: float, top: int) -> None:
    """cProfile of moderate.run with 1 in-memory worker: the SDK harness runs in this process."""
    from regenwatch.pipelines.moderate import run

    argv = ["--input", os.path.join(inp.directory, "pages-*.jsonl"), "--output",
            os.path.join(workdir, "out-pipeline"), "--model", model_uri, "--direct_num_workers=1"]
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    run(argv)
    prof.disable()
    stats = pstats.Stats(prof)
    total = max(ct for (path, _, name), (_, _, _, ct, _) in stats.stats.items()
                if name == "run" and path.replace(os.sep, "/").endswith("pipelines/moderate.py"))
    print(f"\n## Profile of the pipeline (moderate.run, 1 worker, in-process): {pages} pages, "
          f"{total:.1f} CPU s under cProfile = {total / loop_total:.2f}x the profiled loop\n")
    print("### Own time by source file (builtins charged to their callers)\n")
    print("| file | own s | share |\n|---|---|---|")
    for area, tt in own_time_by_file(stats)[:20]:
        print(f"| {area} | {tt:.2f} | {100 * tt / total:.1f}% |")
    print("\n### Selected functions (cumulative)\n")
    print("| function | calls | cum s | share |\n|---|---|---|---|")
    for suffix, func, label in PIPELINE_FUNCTIONS:
        found = [(nc, ct) for (path, _line, name), (_cc, nc, _tt, ct, _callers) in stats.stats.items()
                 if name == func and path.replace(os.sep, "/").endswith(suffix)]
        if found:
            nc, ct = max(found, key=lambda f: f[1])
            print(f"| {label} | {nc} | {ct:.2f} | {100 * ct / total:.1f}% |")


if __name__ == "__main__":
    sys.exit(main())
