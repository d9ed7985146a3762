"""``regenwatch run`` over the full-size hostile mix: exit code, accounting, peak RSS, time per page.

    python -m bench.hostile_mix [--workdir DIR] [--small] [--json out.json]

The input is tests/data/hostile.py at full size: a gzipped JSON line that
expands to 1 GiB after good lines, a gzipped line of 21 MiB of random
letters, an Avro block that inflates to 200 MiB, 5 MiB pages of every
pathological markup and text shape, and the rest of the hostile kinds.
The run is a child process measured from /proc (bench/proctree.py: the
whole process tree, sampled every 50 ms). It prints the exit code, pages
in / decided / dead, peak RSS, wall time, and the slowest pages measured
alone through the per-record path (bench/page_cost.py's harness). The
figures of record are in docs/ROBUSTNESS.md.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time


def main(argv=None, log=print) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile_mix", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--small", action="store_true", help="The test's sizes instead of the full ones.")
    parser.add_argument("--model", default="default")
    parser.add_argument("--json", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--run-option", action="append", default=[], metavar="--FLAG=VALUE",
                        help="Extra option for regenwatch run, e.g. --run-option=--max_expansion_ratio=1e9 to "
                             "inflate the 1 GiB line whole (memory then bounded by chunked reading alone).")
    args = parser.parse_args(argv)

    import fastavro

    from bench.proctree import run_measured
    from tests.data.hostile import write_hostile_mix

    workdir = args.workdir or tempfile.mkdtemp(prefix="regenwatch-hostile-")
    folder = os.path.join(workdir, "in")
    started = time.perf_counter()
    mix = write_hostile_mix(folder, full=not args.small)
    sizes = {os.path.basename(p): os.path.getsize(p) for p in glob.glob(os.path.join(folder, "*"))}
    log(f"input written in {time.perf_counter() - started:.0f} s: {len(sizes)} files, "
        f"{sum(sizes.values()) / 2 ** 20:.0f} MiB on disk; kinds: {', '.join(mix.kinds)}")
    out = os.path.join(workdir, "out")
    usage = run_measured([sys.executable, "-m", "regenwatch.cli", "run", "--input", os.path.join(folder, "*"),
                          "--output", out, "--run_id", "hostile", "--model", args.model, *args.run_option],
                         timeout=3600)
    run_dir = os.path.join(out, "hostile")
    marker = json.load(open(os.path.join(run_dir, "_SUCCESS"))) if os.path.exists(
        os.path.join(run_dir, "_SUCCESS")) else {}

    def records(prefix):
        rows = []
        for path in sorted(glob.glob(os.path.join(run_dir, f"{prefix}-*.avro"))):
            with open(path, "rb") as handle:
                rows.extend(fastavro.reader(handle))
        return rows

    decisions, dead = records("decisions"), records("deadletter")
    decided = {d["id"] for d in decisions}
    report = {
        "run_options": args.run_option,
        "exit_code": usage.returncode,
        "status": marker.get("status"),
        "pages_read": marker.get("counts", {}).get("pages_read"),
        "decided": len(decisions),
        "dead_letters": len(dead),
        "balanced": marker.get("counts", {}).get("pages_read") == len(decisions) + len(dead),
        "good_pages": len(mix.good_ids),
        "good_pages_decided": len(set(mix.good_ids) & decided),
        "peak_rss_mib": round(usage.peak_rss_mib),
        "peak_processes": usage.peak_processes,
        "wall_s": round(usage.wall_s, 1),
        "cpu_s": round(usage.cpu_s, 1),
        "dead_by_stage": {},
        "input_mib": round(sum(sizes.values()) / 2 ** 20),
    }
    for record in dead:
        report["dead_by_stage"][record["stage"]] = report["dead_by_stage"].get(record["stage"], 0) + 1
    log(json.dumps(report, indent=1))
    if usage.returncode != 0:
        log(usage.stderr_tail)
    for record in dead:
        log(f"  dead [{record['stage']}] {str(record['id'])[:40]!s:<40} {record['error'][:110]}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    if not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
    sys.exit(0)
