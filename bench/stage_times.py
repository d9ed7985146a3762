"""Wall time of every fused stage of one pipeline run: where the runner's time goes between the pages.

``python -m bench.stage_times [--pages 2000] [--shards 8] [--workers 1|2] [--model default|URI]``

Runs ``moderate.run`` in this process on generated pages and prints, per
bundle the FnApiRunner executes (one per fused stage here), when it started
and how long it took, then the totals: the heavy stage (read, normalize,
score, write), the small stages around it (shuffles, row files, the four
Avro writes' initialize/finalize steps, the flagged records' re-read), and
what ran outside any stage (model verification, pipeline construction and
translation, publishing). With ``--workers 2`` (multi_processing) a stage's
time is the slower of the two workers' bundles, and the process CPU printed
is the launcher's only (the workers are other processes).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from bench.generate import write_input


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.stage_times", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=2000)
    p.add_argument("--shards", type=int, default=8, help="Input JSON Lines files.")
    p.add_argument("--workers", type=int, default=1, help="1: in-memory; more: multi_processing.")
    p.add_argument("--model", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=110, help="Characters of each stage name shown.")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    from regenwatch.pipelines.moderate import run

    stages = []
    original = fn_runner.FnApiRunner._execute_bundle

    def timed(self, context, manager, bundle_input):
        started = time.perf_counter()
        try:
            return original(self, context, manager, bundle_input)
        finally:
            stages.append((started, time.perf_counter() - started, manager.stage.name))

    workdir = tempfile.mkdtemp(prefix="regenwatch-stages-")
    fn_runner.FnApiRunner._execute_bundle = timed
    try:
        inp = write_input(os.path.join(workdir, "input"), args.pages, args.seed, shards=args.shards)
        argv = ["--input", os.path.join(inp.directory, "pages-*.jsonl"), "--output", os.path.join(workdir, "out"),
                "--model", args.model]
        argv += ([f"--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"]
                 if args.workers > 1 else ["--direct_num_workers=1"])
        cpu0, t0 = time.process_time(), time.perf_counter()
        run(argv)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        fn_runner.FnApiRunner._execute_bundle = original
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"## Stages of one run: {args.pages} pages in {args.shards} files, {args.workers} worker(s)\n")
    print("| start s | s | stage |\n|---|---|---|")
    for started, seconds, name in stages:
        label = name.replace("ref_AppliedPTransform_", "")
        print(f"| {started - t0:.2f} | {seconds:.2f} | `{label[:args.width]}` |")
    heavy = max(stages, key=lambda s: s[1])[1] if stages else 0.0
    in_stages = sum(s[1] for s in stages)
    print(f"\n{len(stages)} stages; heaviest {heavy:.2f} s, the {len(stages) - 1} others {in_stages - heavy:.2f} s; "
          f"outside stages {wall - in_stages:.2f} s; run {wall:.2f} s wall, {cpu:.2f} CPU-s in this process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
