"""The regenwatch benchmark: ``python -m bench [--pages N] [--full]`` from the repository root.

One run measures, on the same generated input and in the same session:

* the LIMIT: parse + normalize + score + rationale + Avro in a plain batched
  loop (bench/loop.py), with the time split by stage;
* the PIPELINE (``regenwatch.pipelines.moderate.run``) on the local
  FnApiRunner with 1 worker (in-memory) and with 2 worker processes
  (``--direct_running_mode=multi_processing --direct_num_workers=2``);
* the CHEAP ANCHOR: page-level TF-IDF + logistic regression in the same loop;
* peak RSS of the pipeline's whole process tree at 20k pages (and 200k with
  ``--full``);
* training time on the sample set (what ``regenwatch train`` runs).

Every contender runs in its own fresh process (bench/child.py) while this
process polls its process tree in /proc (bench/proctree.py). The tables and
the ratios against the issue's targets are printed as Markdown. Wall-clock
figures depend on what else runs on the machine: the 1-minute load average
is printed next to each run, and ``--repeat`` keeps the best of several runs.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from bench.generate import InputInfo, write_input
from bench.loop import STAGES
from bench.proctree import TreeUsage, Zygote, run_measured

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TARGETS = {
    "pipeline_1w_vs_limit": 0.90,
    "pipeline_2w_vs_1w": 1.70,
    "model_vs_anchor": 0.50,
    "rss_growth": 0.10,
    "train_seconds": 60.0,
}


@dataclass
class Run:
    """One measured contender run."""

    name: str
    kind: str
    pages: int
    result: Dict = field(default_factory=dict)
    usage: Optional[TreeUsage] = None
    load_before: float = 0.0
    outputs: Dict[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return float(self.result["seconds"])

    @property
    def capped(self) -> bool:
        return bool(self.result.get("capped"))

    @property
    def rate(self) -> float:
        if self.capped:
            return 0.0
        return self.pages / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_s(self) -> float:
        """CPU of the whole tree minus the main process's start-up (interpreter, imports, model load)."""
        return max(0.0, self.usage.cpu_s - float(self.result.get("cpu_before_s", 0.0)))

    @property
    def rss_mib(self) -> float:
        return self.usage.peak_rss_mib


def _loadavg() -> float:
    with open("/proc/loadavg") as handle:
        return float(handle.read().split()[0])


def machine_info() -> Dict[str, str]:
    # Versions from the installed metadata: importing Beam here would cost seconds.
    from importlib.metadata import version

    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    try:
        rev = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True,
                             text=True, check=False).stdout.strip() or "unknown"
    except OSError:
        rev = "unknown"
    return {
        "nproc": str(os.cpu_count()),
        "affinity": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "memory": f"{mem_kib / 2 ** 20:.1f} GiB",
        "python": platform.python_version(),
        "apache-beam": version("apache-beam"),
        "scikit-learn": version("scikit-learn"),
        "numpy": version("numpy"),
        "selectolax": version("selectolax"),
        "kernel": platform.release(),
        "git": rev,
        "loadavg_at_start": open("/proc/loadavg").read().split()[0],
    }


def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    # The children import bench.* from the repository root.
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


# What must be equal, record by record, between the limit and the pipeline:
# the fields that carry decisions (not timestamps, not float scores that could
# differ in the last bit with the batch composition).
FINGERPRINT_FIELDS = {
    "decisions": ("id", "content_sha256", "flagged", "severity"),
    "flagged": ("id", "content_sha256", "severity", "cluster_id", "cluster_size"),
    "dead_letters": ("id", "stage"),
}


def count_outputs(directory: str, files: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Records per output, read back from the Avro files (the run's own list, else all under directory).

    Also ``fingerprint``: a digest per output of the sorted FINGERPRINT_FIELDS
    of every record, so the check sees the same records, not only as many.
    """
    import hashlib

    import fastavro

    if not files:
        files = glob.glob(os.path.join(directory, "**", "*.avro"), recursive=True)
    counts: Dict[str, object] = {}
    fingerprint = {}
    for name, prefix in (("decisions", "decisions"), ("flagged", "flagged"), ("dead_letters", "deadletter")):
        rows = []
        for path in files:
            if os.path.basename(path).startswith(prefix + "-") and path.endswith(".avro"):
                with open(path, "rb") as handle:
                    rows.extend(repr(tuple(rec.get(f) for f in FINGERPRINT_FIELDS[name]))
                                for rec in fastavro.reader(handle))
        counts[name] = len(rows)
        fingerprint[name] = hashlib.sha256("\n".join(sorted(rows)).encode("utf-8")).hexdigest()[:16]
    counts["fingerprint"] = fingerprint
    return counts


def _mem_total_bytes() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def run_child(name: str, kind: str, pages: int, workdir: str, extra: Sequence[str], log=print,
              keep_outputs: bool = False, zygote: Optional[Zygote] = None,
              rss_cap_bytes: Optional[int] = None) -> Run:
    """One contender in its own process: forked from the zygote, or a fresh interpreter without one."""
    tag = name.replace(" ", "_").replace(",", "").replace("@", "at").replace("(", "").replace(")", "")
    out_dir = os.path.join(workdir, "out", tag)
    shutil.rmtree(out_dir, ignore_errors=True)
    result_path = os.path.join(workdir, f"{tag}.json")
    argv = [kind, "--output", out_dir, "--result", result_path, *extra]
    load = _loadavg()
    log(f"  running {name} ... (load {load:.2f})")
    if zygote is not None:
        usage = zygote.run(argv, os.path.join(workdir, f"{tag}.log"), rss_cap_bytes)
    else:
        usage = run_measured([sys.executable, "-m", "bench.child", *argv], env=_child_env(), cwd=REPO,
                             rss_cap_bytes=rss_cap_bytes)
    if usage.capped:
        log(f"    ABORTED: process tree RSS went over the cap of {rss_cap_bytes / 2 ** 20:.0f} MiB "
            f"after {usage.wall_s:.0f} s")
        shutil.rmtree(out_dir, ignore_errors=True)
        return Run(name=name, kind=kind, pages=pages, result={"seconds": usage.wall_s, "capped": True},
                   usage=usage, load_before=load)
    if usage.returncode != 0 or not os.path.exists(result_path):
        raise RuntimeError(f"{name} failed with exit code {usage.returncode}:\n{usage.stderr_tail}")
    with open(result_path, encoding="utf-8") as handle:
        result = json.load(handle)
    run = Run(name=name, kind=kind, pages=pages, result=result, usage=usage, load_before=load)
    if kind != "train":
        run.outputs = count_outputs(out_dir, result.get("files"))
        if not keep_outputs:
            shutil.rmtree(out_dir, ignore_errors=True)
    log(f"    {run.seconds:.1f} s, {run.rate:.1f} pages/s, peak RSS {run.rss_mib:.0f} MiB"
        if kind != "train" else f"    {run.seconds:.1f} s")
    return run


def _best(runs: List[Run]) -> Run:
    best = max(runs, key=lambda r: r.rate)
    # Peak memory is reported conservatively: the highest of the repeats.
    best.usage.peak_rss_bytes = max(r.usage.peak_rss_bytes for r in runs)
    return best


# --------------------------------------------------------------------------
# Rendering


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def _check(run: Run, expected_pages: int, reference: Optional[Run]) -> str:
    """Pages in = decisions + dead letters, and the same decisions as the limit."""
    if run.capped:
        return "ABORTED at the RSS cap"
    out = run.outputs
    if out.get("decisions", 0) + out.get("dead_letters", 0) != expected_pages:
        return f"MISMATCH: {out.get('decisions', 0)}+{out.get('dead_letters', 0)} != {expected_pages}"
    if reference is not None:
        counts = {k: v for k, v in out.items() if k != "fingerprint"}
        ref_counts = {k: v for k, v in reference.outputs.items() if k != "fingerprint"}
        if counts != ref_counts:
            return f"differs from limit: {counts} vs {ref_counts}"
        differ = [name for name, digest in out.get("fingerprint", {}).items()
                  if digest != reference.outputs.get("fingerprint", {}).get(name)]
        if differ:
            return f"other records than the limit's in {', '.join(differ)}"
    return "ok"


def render(report: Dict) -> str:
    info, inp, runs, ratios = report["machine"], report["input"], report["runs"], report["ratios"]
    parts = []
    parts.append("### Machine\n")
    parts.append(_table(["item", "value"], [[k, v] for k, v in info.items()]))
    parts.append("\n### Input\n")
    parts.append(_table(["item", "value"], [[k, v] for k, v in inp.items()]))
    parts.append("\n### Results\n")
    rows = []
    for r in runs:
        rows.append([r["name"], r["pages"], f"{r['seconds']:.2f}", f"{r['rate']:.1f}" if r["rate"] else "-",
                     f"{r['cpu_s']:.1f}", f"{r['cpu_ms_per_page']:.2f}" if r["rate"] else "-",
                     f"{r['rss_mib']:.0f}", r["procs"], f"{r['load']:.2f}", r["check"]])
    parts.append(_table(["run", "pages", "wall s", "pages/s", "CPU s", "CPU ms/page", "peak RSS MiB (tree)",
                         "procs", "load", "check"], rows))
    parts.append("\n### Time by stage (plain loop, exclusive wall time)\n")
    st = report["stages"]
    srows = []
    for name in STAGES:
        lim = st["limit"].get(name, 0.0)
        anc = st["anchor"].get(name, 0.0)
        srows.append([name, f"{lim:.2f}", f"{100 * lim / st['limit_total']:.1f}%" if st["limit_total"] else "-",
                      f"{1000 * lim / st['pages']:.2f}", f"{anc:.2f}",
                      f"{100 * anc / st['anchor_total']:.1f}%" if st["anchor_total"] else "-"])
    srows.append(["total", f"{st['limit_total']:.2f}", "100%", f"{1000 * st['limit_total'] / st['pages']:.2f}",
                  f"{st['anchor_total']:.2f}", "100%"])
    parts.append(_table(["stage", "limit s", "limit share", "limit ms/page", "anchor s", "anchor share"], srows))
    parts.append(f"\nmodel hooks: {'; '.join(st['hooked']) or '(none)'}; the rest of score_pages is score. "
                 "write = record building (decision_record/flagged_record) + fastavro (deflate).")
    mp = report.get("model_parts")
    if mp:
        from bench.model_parts import PARTS_HEADERS, parts_table

        parts.append(f"\n### Model parts (CPU-ms per scored page, bench/model_parts.py)\n")
        parts.append(_table(PARTS_HEADERS, parts_table(mp)))
        parts.append(f"\n{mp['pages']} pages of the input scored ({mp['sentences']} sentences), model "
                     f"{mp.get('model_version', '?')}, batches of 64, normalization included; CPU of the process "
                     f"(process_time), the least of {len(mp.get('repeats_total_cpu_s', [])) or 1} measurements "
                     f"(totals {', '.join(f'{t:.1f}' for t in mp.get('repeats_total_cpu_s', []))} CPU-s). "
                     "calls = times the part was entered.")
    parts.append("\n### Ratios against the targets (same run)\n")
    rrows = [[r["name"], r["measured"], r["target"], r["verdict"]] for r in ratios]
    parts.append(_table(["ratio", "measured", "target", "verdict"], rrows))
    notes = report.get("notes") or []
    if notes:
        parts.append("\n" + "\n".join(f"- {n}" for n in notes))
    return "\n".join(parts) + "\n"


def _ratio_row(name: str, value: Optional[float], target: str, ok: Optional[bool], fmt: str = "{:.2f}x") -> Dict:
    return {"name": name, "measured": fmt.format(value) if value is not None else "n/a",
            "target": target, "verdict": "n/a" if ok is None else ("PASS" if ok else "FAIL")}


# --------------------------------------------------------------------------
# The run


def marginal_rate(run: Run, startup: Optional[Run]) -> Optional[float]:
    """Pages/s once started: (N - n0) / (T_N - T_n0), n0 pages taking the start-up run's T_n0."""
    if startup is None or run.capped or startup.capped or run.seconds <= startup.seconds:
        return None
    return (run.pages - startup.pages) / (run.seconds - startup.seconds)


def _marginal_ratios(limit: Run, p1: Run, p2: Run, startup: Dict[int, Run]) -> List[Dict]:
    """The two pipeline ratios with the fixed start-up cost taken out (informational rows)."""
    if not startup:
        return []
    m1, m2 = marginal_rate(p1, startup.get(1)), marginal_rate(p2, startup.get(2))
    s1, s2 = startup.get(1), startup.get(2)
    return [
        _ratio_row(f"pipeline 1 worker / limit, start-up taken out ({s1.seconds:.1f} s) (info)",
                   m1 / limit.rate if m1 and limit.rate else None, ">= 0.90x", None),
        _ratio_row(f"pipeline 2 / 1 worker, start-up taken out ({s2.seconds:.1f} s / {s1.seconds:.1f} s) (info)",
                   m2 / m1 if m1 and m2 else None, ">= 1.70x", None),
    ]


DEFAULT_PAGES = 10000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # 10,000 by default: the pipeline's fixed cost per run (~2-3 s: construction, model check, ~30 small
    # stages) is then a few percent of the run, as it is for an operator's partition, instead of a fifth of
    # it at 2,000 pages; the whole default run still takes ~5 minutes on 2 cores.
    p.add_argument("--pages", type=int, default=DEFAULT_PAGES,
                   help=f"Pages for the throughput runs (limit, pipeline 1/2 workers, anchor). Default {DEFAULT_PAGES}.")
    p.add_argument("--rss-sizes", default=None,
                   help="Comma-separated page counts for the peak-RSS pipeline runs "
                        "(default 20000; 20000,200000 with --full).")
    p.add_argument("--rss-workers", type=int, default=2,
                   help="Pipeline worker processes for the peak-RSS runs (default 2: the tree has children).")
    p.add_argument("--full", action="store_true",
                   help="The full benchmark: 20000 throughput pages, peak RSS at 20000 and 200000 pages.")
    p.add_argument("--shards", type=int, default=8, help="Input JSON Lines files the pages are split into.")
    p.add_argument("--startup-pages", type=int, default=16,
                   help="Pages of the pipeline start-up runs (1 and 2 workers) that measure the fixed cost, "
                        "so the ratios can also be given without it; 0 skips them. Default 16.")
    p.add_argument("--parts-pages", type=int, default=2000,
                   help="Pages of the input on which each part of the model is timed (CPU per page of "
                        "normalization, sentence models, context/voice, cues, rationale model, page model; "
                        "bench/model_parts.py); 0 skips it. Default 2000.")
    p.add_argument("--seed", type=int, default=0, help="Page generator seed.")
    p.add_argument("--repeat", type=int, default=1,
                   help="Run each throughput contender this many times (interleaved) and keep the best.")
    p.add_argument("--model", default="trained",
                   help="Model for the limit and the pipeline: 'trained' (the artifact the training step of "
                        "this run writes, so model and code always match), 'default' (the shipped model) or a URI.")
    p.add_argument("--train-scale", type=float, default=1.0,
                   help="Share of the sample set the model and the anchor train on "
                        "(1.0 = what 'regenwatch train' uses; smaller only for smoke runs).")
    p.add_argument("--train-folds", type=int, default=5, help="Cross-validation folds of the training run.")
    p.add_argument("--rss-cap-mib", type=int, default=None,
                   help="Kill a contender whose process tree RSS exceeds this (default: 40%% of the machine's "
                        "memory), so a run that does not keep memory flat cannot take the machine down.")
    p.add_argument("--spawn", action="store_true",
                   help="Start every contender as a fresh interpreter instead of forking it from a pre-imported "
                        "zygote (more isolation, ~4 CPU-s of imports per contender).")
    p.add_argument("--workdir", default=None, help="Working directory (default: a new temp dir).")
    p.add_argument("--keep", action="store_true", help="Keep the working directory (inputs, outputs, results).")
    p.add_argument("--json", default=None, help="Also write the raw results as JSON here.")
    p.add_argument("--markdown", default=None, help="Also write the printed report to this file.")
    return p


def _run_dict(run: Run, check: str) -> Dict:
    return {
        "name": run.name, "kind": run.kind, "pages": run.pages, "seconds": run.seconds,
        "rate": run.rate if run.kind != "train" else 0.0, "cpu_s": run.cpu_s,
        "tree_cpu_s": run.usage.cpu_s, "process_wall_s": run.usage.wall_s,
        "cpu_ms_per_page": 1000 * run.cpu_s / run.pages if run.pages else 0.0,
        "rss_mib": run.rss_mib, "procs": run.usage.peak_processes, "load": run.load_before,
        "check": check, "outputs": run.outputs, "result": run.result,
    }


def main(argv: Optional[Sequence[str]] = None, log=None) -> Dict:
    args = build_parser().parse_args(argv)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    pages = 20000 if args.full and args.pages == DEFAULT_PAGES else args.pages
    rss_sizes = ([int(x) for x in args.rss_sizes.split(",") if x.strip()] if args.rss_sizes
                 else ([20000, 200000] if args.full else [20000]))
    workdir = args.workdir or tempfile.mkdtemp(prefix="regenwatch-bench-")
    os.makedirs(workdir, exist_ok=True)
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    zygote: Optional[Zygote] = None
    try:
        info = machine_info()
        log(f"regenwatch benchmark in {workdir}")
        if not args.spawn:
            zygote = Zygote([sys.executable, "-m", "bench.child", "serve"], os.path.join(workdir, "zygote.log"),
                            env=_child_env(), cwd=REPO)

        log(f"generating {pages} pages ...")
        cap = (args.rss_cap_mib * 2 ** 20) if args.rss_cap_mib else int(0.4 * _mem_total_bytes()) or None
        main_input = write_input(os.path.join(workdir, f"input-{pages}"), pages, args.seed, args.shards)
        inputs: Dict[int, InputInfo] = {pages: main_input}

        # Training first: with --model trained its artifact is the model under test.
        log("training on the sample set ...")
        train_run = run_child("training (sample set)", "train", 0, workdir,
                              ["--scale", str(args.train_scale), "--folds", str(args.train_folds)], log,
                              zygote=zygote, rss_cap_bytes=cap)
        model = train_run.result["artifact"] if args.model == "trained" else args.model

        common = ["--input-dir", main_input.directory, "--model", model]
        plan = [
            ("limit (plain loop)", "limit", ["--stages"]),
            ("pipeline, 1 worker", "pipeline", ["--workers", "1"]),
            ("pipeline, 2 workers", "pipeline", ["--workers", "2"]),
            ("anchor (page TF-IDF+LR loop)", "anchor", ["--stages", "--scale", str(args.train_scale)]),
        ]
        measured: Dict[str, List[Run]] = {name: [] for name, _, _ in plan}
        for rep in range(args.repeat):
            log(f"throughput runs on {pages} pages (round {rep + 1} of {args.repeat}) ...")
            for name, kind, extra in plan:
                measured[name].append(run_child(name, kind, pages, workdir, common + extra, log, zygote=zygote,
                                                rss_cap_bytes=cap))
        best = {name: _best(runs) for name, runs in measured.items()}
        limit, p1, p2, anchor = (best[name] for name, _, _ in plan)

        rss_runs: Dict[int, Run] = {}
        for size in rss_sizes:
            if size == pages and args.rss_workers == 2:
                rss_runs[size] = p2
                continue
            if size == pages and args.rss_workers == 1:
                rss_runs[size] = p1
                continue
            log(f"generating {size} pages for the peak-RSS run ...")
            inputs[size] = write_input(os.path.join(workdir, f"input-{size}"), size, args.seed, args.shards)
            rss_runs[size] = run_child(f"pipeline @{size}, {args.rss_workers} workers", "pipeline", size, workdir,
                                       ["--input-dir", inputs[size].directory, "--model", model,
                                        "--workers", str(args.rss_workers)], log, zygote=zygote,
                                       rss_cap_bytes=cap)
            if size != pages:
                shutil.rmtree(inputs[size].directory, ignore_errors=True)

        # The pipeline's fixed cost (pipeline construction, model verification,
        # worker start-up and model load, stage scheduling, publishing) measured
        # on a handful of pages, so the ratios can also be read without it.
        startup: Dict[int, Run] = {}
        if args.startup_pages:
            log(f"generating {args.startup_pages} pages for the start-up runs ...")
            tiny = write_input(os.path.join(workdir, f"input-{args.startup_pages}"), args.startup_pages, args.seed,
                               args.shards)
            for workers in (1, 2):
                startup[workers] = _best([
                    run_child(f"pipeline start-up, {workers} worker{'s' if workers > 1 else ''}", "pipeline",
                              args.startup_pages, workdir, ["--input-dir", tiny.directory, "--model", model,
                                                            "--workers", str(workers)],
                              log, zygote=zygote, rss_cap_bytes=cap)
                    for _ in range(args.repeat)])

        # What each part of the model costs per page (CPU, in its own process, on the same input).
        parts_run: Optional[Run] = None
        if args.parts_pages:
            log(f"timing the model's parts on {min(args.parts_pages, pages)} pages ...")
            parts_run = run_child("model parts", "parts", min(args.parts_pages, pages), workdir,
                                  ["--input-dir", main_input.directory, "--model", model,
                                   "--parts-pages", str(args.parts_pages), "--repeat", str(args.repeat)],
                                  log, zygote=zygote, rss_cap_bytes=cap)

        # ---- tables
        run_rows = [
            _run_dict(limit, _check(limit, pages, None)),
            _run_dict(p1, _check(p1, pages, limit)),
            _run_dict(p2, _check(p2, pages, limit)),
            _run_dict(anchor, _check(anchor, pages, None)),
        ]
        for size, run in sorted(rss_runs.items()):
            row = _run_dict(run, _check(run, size, limit if size == pages else None))
            row["name"] = f"peak RSS: pipeline @{size} pages, {args.rss_workers} workers"
            run_rows.append(row)
        train_row = _run_dict(train_run, "ok")
        train_row["name"] = (f"training: {train_run.result['pages']} pages + {train_run.result['sentences']} "
                             f"sentences, {train_run.result['folds']}-fold CV + fit + save")
        run_rows.append(train_row)
        for workers, run in sorted(startup.items()):
            row = _run_dict(run, _check(run, args.startup_pages, None))
            row["name"] = f"pipeline start-up: {args.startup_pages} pages, {workers} worker{'s' if workers > 1 else ''}"
            run_rows.append(row)

        r_p1 = p1.rate / limit.rate if limit.rate else None
        r_p2 = p2.rate / p1.rate if p1.rate else None
        r_anchor = limit.rate / anchor.rate if anchor.rate else None
        sizes = sorted(rss_runs)
        r_rss = (rss_runs[sizes[-1]].rss_mib / rss_runs[sizes[0]].rss_mib) if len(sizes) >= 2 else None
        train_s = train_run.seconds
        full_train = args.train_scale >= 1.0 and args.train_folds == 5
        ratios = [
            _ratio_row("pipeline 1 worker / limit (pages/s)", r_p1, ">= 0.90x",
                       None if r_p1 is None else r_p1 >= TARGETS["pipeline_1w_vs_limit"]),
            _ratio_row("pipeline 2 workers / pipeline 1 worker (pages/s)", r_p2, ">= 1.70x",
                       None if r_p2 is None else r_p2 >= TARGETS["pipeline_2w_vs_1w"]),
            _ratio_row("full model (limit) / cheap anchor (pages/s)", r_anchor, ">= 0.50x",
                       None if r_anchor is None else r_anchor >= TARGETS["model_vs_anchor"]),
            _ratio_row(f"peak RSS @{sizes[-1]} / @{sizes[0]} pages" if len(sizes) >= 2
                       else "peak RSS growth (needs two --rss-sizes)", r_rss, "<= 1.10x",
                       None if r_rss is None else (r_rss <= 1 + TARGETS["rss_growth"]
                                                   and not any(r.capped for r in rss_runs.values())),
                       fmt=">= {:.2f}x (aborted at the RSS cap)" if len(sizes) >= 2 and rss_runs[sizes[-1]].capped
                       else "{:.2f}x"),
            _ratio_row("training on the sample set (s)" + ("" if full_train else " [reduced set: no verdict]"),
                       train_s, "< 60 s", (train_s < TARGETS["train_seconds"]) if full_train else None,
                       fmt="{:.1f} s"),
            *_marginal_ratios(limit, p1, p2, startup),
            _ratio_row("CPU per page: pipeline 1 worker / limit (info)",
                       (p1.cpu_s / p1.pages) / (limit.cpu_s / limit.pages) if limit.cpu_s else None,
                       "(lower is better)", None),
        ]
        stages = {
            "pages": pages,
            "limit": limit.result.get("stages", {}), "anchor": anchor.result.get("stages", {}),
            "limit_total": sum(limit.result.get("stages", {}).values()),
            "anchor_total": sum(anchor.result.get("stages", {}).values()),
            "hooked": limit.result.get("hooked", []),
        }
        notes = [
            f"command: `{command}`",
            f"throughput runs: best of {args.repeat}; pages/s = pages / wall time of the timed region "
            "(the plain loop; or moderate.run() end to end, which includes pipeline construction, model "
            "verification and worker start-up). Interpreter start-up and imports are excluded.",
            "CPU s = user+sys of the whole process tree minus the main process's start-up (imports, model load).",
            "peak RSS = the highest sum of RSS over the process tree (job process + SDK worker processes), "
            "polled every 50 ms; the highest over repeats.",
            f"model under test: {'the artifact trained in this run' if args.model == 'trained' else model}; "
            f"threshold {limit.result.get('threshold')}; anchor trained in {anchor.result.get('anchor_train_s', 0):.1f} s, "
            f"model load (verified) {limit.result.get('model_load_s', 0):.2f} s.",
            f"pipeline runner: {p1.result.get('runner')} (modes: {p1.result.get('running_mode')} / "
            f"{p2.result.get('running_mode')}); 2-worker run peaked at {p2.usage.peak_processes} processes.",
            *(f"peak RSS of '{run.name}' by process: " + ", ".join(
                f"{label} {rss / 2 ** 20:.0f} MiB" for _pid, label, rss in run.usage.peak_breakdown)
              for run in [p1, p2] + [rss_runs[k] for k in sorted(rss_runs) if rss_runs[k] not in (p1, p2)]),
            "contenders ran " + ("as fresh interpreters (--spawn)." if args.spawn else
                                 "in processes forked from a pre-imported zygote (same start state, no import cost)."),
            f"total benchmark time {time.perf_counter() - started:.0f} s.",
        ]
        report = {
            "machine": info,
            "input": {
                "pages": pages, "files": len(main_input.files), "bytes": main_input.bytes_total,
                "content chars p10/p50/p90": f"{main_input.content_chars_p10}/{main_input.content_chars_p50}/"
                                             f"{main_input.content_chars_p90}",
                "HTML pages": main_input.html_pages, "obfuscated pages": main_input.obfuscated_pages,
                "broken records (dead letters)": main_input.bad_records,
            },
            "runs": run_rows,
            "stages": stages,
            "ratios": ratios,
            "notes": notes,
        }
        if parts_run is not None:
            report["model_parts"] = parts_run.result
        text = render(report)
        print(text, flush=True)
        if args.markdown:
            with open(args.markdown, "w", encoding="utf-8") as handle:
                handle.write(text)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(report, handle, indent=2, default=str)
        report["text"] = text
        return report
    finally:
        if zygote is not None:
            zygote.close()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
