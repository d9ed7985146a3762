"""One measured contender per process: ``python -m bench.child KIND ... --result FILE``.

Each contender runs in its own process so that its peak RSS and CPU are its
own (the parent polls the process tree) and no warm cache of one contender
favours the next. The timed region excludes interpreter start-up and
imports; it is written to the result file as JSON.

``python -m bench.child serve`` is a zygote: it imports everything once, then
forks one child per command read from stdin (a JSON list of arguments), so
every contender starts from the same freshly imported state without paying
~4 CPU-seconds of imports each time (which would dominate a small run).
Protocol on stdout, one JSON object per line: ``{"ready": true}`` once, then
per command ``{"pid": P}`` at fork and ``{"pid": P, "returncode": R,
"cpu_s": C}`` when the child has been reaped (C from wait4: the child and
every descendant it reaped).

KIND: limit | anchor | pipeline | train | parts | serve
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import sys
import tempfile
import time


def _files(input_dir: str):
    files = sorted(glob.glob(os.path.join(input_dir, "pages-*.jsonl")))
    if not files:
        raise SystemExit(f"no pages-*.jsonl under {input_dir}")
    return files


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _scaled(sample, scale: float):
    """The sample set, or every k-th page and sentence of it for a reduced (smoke) run."""
    if scale < 1.0:
        step = max(1, round(1 / scale))
        sample.pages = sample.pages[::step]
        sample.sentences = sample.sentences[::step]
    return sample


def cmd_limit(args) -> dict:
    from regenwatch.models.artifact import load_model
    from bench.loop import StageClock, instrument, plain_loop

    t0 = time.perf_counter()
    loaded = load_model(args.model)
    load_s = time.perf_counter() - t0
    threshold = float(loaded.manifest.get("threshold", 0.5))
    clock = StageClock() if args.stages else None
    hooked = instrument(loaded.model, clock) if clock else []
    cpu0 = _cpu_self()
    res = plain_loop(_files(args.input_dir), args.output, loaded.model, threshold, loaded.version, clock=clock)
    return {"seconds": res.seconds, "cpu_before_s": cpu0, "work_cpu_s": _cpu_self() - cpu0, "model_load_s": load_s,
            "pages_read": res.pages_read, "decided": res.decided, "flagged": res.flagged,
            "dead_letters": res.dead_letters, "stages": res.stages, "hooked": hooked, "threshold": threshold}


def cmd_anchor(args) -> dict:
    from bench.loop import StageClock, instrument, plain_loop, train_anchor

    from regenwatch.training.data_io import load_sample_set

    sample = _scaled(load_sample_set(), args.scale)
    t0 = time.perf_counter()
    anchor = train_anchor(sample)
    train_s = time.perf_counter() - t0
    clock = StageClock() if args.stages else None
    hooked = instrument(anchor, clock) if clock else []
    cpu0 = _cpu_self()
    res = plain_loop(_files(args.input_dir), args.output, anchor, anchor.threshold, "page-anchor", clock=clock)
    return {"seconds": res.seconds, "cpu_before_s": cpu0, "work_cpu_s": _cpu_self() - cpu0, "anchor_train_s": train_s,
            "pages_read": res.pages_read, "decided": res.decided, "flagged": res.flagged,
            "dead_letters": res.dead_letters, "stages": res.stages, "hooked": hooked}


def cmd_parts(args) -> dict:
    """CPU per part of the model (bench/model_parts.py) on the first --parts-pages pages of the input."""
    from bench.model_parts import best_of, read_normalizable

    pages = read_normalizable(_files(args.input_dir), args.parts_pages)
    cpu0 = _cpu_self()
    t0 = time.perf_counter()
    res = best_of(pages, args.model, args.repeat)
    res.update(seconds=time.perf_counter() - t0, cpu_before_s=cpu0)
    return res


def cmd_pipeline(args) -> dict:
    from regenwatch.pipelines.moderate import LOCAL_RUNNER, make_options, run
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    argv = ["--input", os.path.join(args.input_dir, "pages-*.jsonl"), "--output", args.output,
            "--model", args.model]
    if args.workers > 1:
        argv += ["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"]
    else:
        argv += ["--direct_num_workers=1"]
    opts = make_options(argv)
    cpu0 = _cpu_self()
    t0 = time.perf_counter()
    result = run(argv)
    seconds = time.perf_counter() - t0
    s = result.summary
    flagged = s.flagged if isinstance(s.flagged, int) else sum(s.flagged.values())
    # The published files (run() may move outputs into a run directory).
    files = [path for paths in (getattr(s, "files", None) or {}).values() for path in paths]
    return {"seconds": seconds, "cpu_before_s": cpu0, "work_cpu_s": _cpu_self() - cpu0, "argv": argv,
            "runner": opts.view_as(StandardOptions).runner, "local_runner": LOCAL_RUNNER,
            "running_mode": opts.view_as(DirectOptions).direct_running_mode,
            "pages_read": s.pages_read, "decided": s.decided, "flagged": flagged,
            "dead_letters": s.dead_total, "files": files, "state": str(result.state)}


def cmd_train(args) -> dict:
    """``regenwatch train`` in-process (its own entry point), timed end to end."""
    from regenwatch.training import train as train_module
    from regenwatch.training.data_io import default_files, read_jsonl

    out_dir = args.output or tempfile.mkdtemp(prefix="regenwatch-bench-train-")
    os.makedirs(out_dir, exist_ok=True)
    artifact = os.path.join(out_dir, "candidate.joblib")
    report_path = os.path.join(out_dir, "report.json")
    argv = ["--out", artifact, "--folds", str(args.folds), "--version", "bench", "--report", report_path]
    pages = sentences = 0
    data_files = default_files()
    if args.scale < 1.0:
        # A reduced (smoke) set: every k-th row of each labeled file, written
        # under the same names so the loader sorts pages from sentences alike.
        step = max(1, round(1 / args.scale))
        subset_dir = os.path.join(out_dir, "data")
        os.makedirs(subset_dir, exist_ok=True)
        data_files = []
        for path in default_files():
            rows = read_jsonl(path)[::step]
            target = os.path.join(subset_dir, os.path.basename(path))
            with open(target, "w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            data_files.append(target)
        argv += ["--data", *data_files]
        # Fold processes would cost more to start than a reduced set takes to train.
        if "--jobs" in train_module.build_parser()._option_string_actions:
            argv += ["--jobs", "1"]
    for path in data_files:
        for row in read_jsonl(path):
            if "evidence" in row or "severity" in row:
                pages += 1
            else:
                sentences += 1
    cpu0 = _cpu_self()
    t0 = time.perf_counter()
    code = train_module.main(argv)
    seconds = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"regenwatch train exited with {code}")
    report = {}
    if os.path.exists(report_path):
        with open(report_path, encoding="utf-8") as handle:
            report = json.load(handle)
    return {"seconds": seconds, "cpu_before_s": cpu0, "work_cpu_s": _cpu_self() - cpu0, "argv": argv,
            "pages": pages, "sentences": sentences, "folds": args.folds, "scale": args.scale,
            "train_reported_s": report.get("seconds"), "artifact": artifact}


def serve() -> int:
    """The zygote loop (see the module docstring)."""
    import traceback

    # Everything any contender imports, so forked children import nothing.
    import fastavro  # noqa: F401
    import sklearn.feature_extraction.text  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    import bench.loop  # noqa: F401
    import bench.model_parts  # noqa: F401
    import regenwatch.models.artifact  # noqa: F401
    import regenwatch.pipelines.moderate  # noqa: F401
    import regenwatch.training.train  # noqa: F401

    out = sys.stdout
    print(json.dumps({"ready": True}), file=out, flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                # The child never writes the protocol stream; its stderr goes to its log.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                if request.get("log"):
                    log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(log_fd, 2)
                code = main(request["argv"])
            except BaseException:  # the child must always reach os._exit, whatever happened
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), file=out, flush=True)
        _, status, ru = os.wait4(pid, 0)
        print(json.dumps({"pid": pid, "returncode": os.waitstatus_to_exitcode(status),
                          "cpu_s": ru.ru_utime + ru.ru_stime}), file=out, flush=True)
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["limit", "anchor", "pipeline", "train", "parts"])
    parser.add_argument("--input-dir", help="Directory of pages-*.jsonl.")
    parser.add_argument("--output", help="Output directory for the Avro files.")
    parser.add_argument("--model", default="default", help="Model artifact URI.")
    parser.add_argument("--workers", type=int, default=1, help="Pipeline worker processes.")
    parser.add_argument("--stages", action="store_true", help="Time stages (limit/anchor).")
    parser.add_argument("--scale", type=float, default=1.0, help="Share of the sample set to train on.")
    parser.add_argument("--folds", type=int, default=5, help="Training cross-validation folds.")
    parser.add_argument("--parts-pages", type=int, default=2000, help="Pages the model parts are timed on.")
    parser.add_argument("--repeat", type=int, default=1, help="Model parts: measurements, the least CPU kept.")
    parser.add_argument("--result", required=True, help="Where to write the JSON result.")
    args = parser.parse_args(argv)
    out = {"limit": cmd_limit, "anchor": cmd_anchor, "pipeline": cmd_pipeline, "train": cmd_train,
           "parts": cmd_parts}[args.kind](args)
    with open(args.result, "w", encoding="utf-8") as handle:
        json.dump(out, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
