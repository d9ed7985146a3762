"""Run a command and measure its whole process tree from /proc (Linux only).

Beam's multi-processing mode starts SDK worker processes that are children
(or grandchildren) of the job process, so the memory a run needs is the sum
over the tree, sampled while it runs. No psutil: /proc gives RSS and CPU ticks
directly, and the benchmark then needs nothing beyond the project's own
dependencies.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int):
    """(ppid, utime+stime seconds, rss bytes) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after it.
    rest = raw[raw.rfind(b")") + 2:].split()
    ppid = int(rest[1])
    cpu = (int(rest[11]) + int(rest[12])) / _TICK
    rss = int(rest[21]) * _PAGE
    return ppid, cpu, rss


def describe(pid: int) -> str:
    """A short label for a process: its command line, shortened."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            args = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        return "?"
    if "-m" in args and args.index("-m") + 1 < len(args):
        i = args.index("-m")
        return " ".join(args[i:i + 3])[:80]
    return " ".join(os.path.basename(a) if k == 0 else a for k, a in enumerate(args))[:80]


def kill_tree(root: int) -> None:
    """SIGKILL root and its descendants, deepest first (only ever called on a tree this module started)."""
    for pid in reversed(tree_pids(root)):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def tree_pids(root: int) -> List[int]:
    """root and all its live descendants."""
    children: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st is not None:
            children.setdefault(st[0], []).append(int(name))
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


@dataclass
class TreeUsage:
    returncode: int = 0
    wall_s: float = 0.0
    peak_rss_bytes: int = 0          # max over samples of the sum over the tree
    peak_processes: int = 0
    cpu_s: float = 0.0               # user+sys of the whole tree
    samples: int = 0
    stderr_tail: str = ""
    per_pid_cpu: Dict[int, float] = field(default_factory=dict)
    # (pid, label, rss bytes) of every process at the peak sample.
    peak_breakdown: List[tuple] = field(default_factory=list)
    # Set when the tree went over the RSS cap and was killed.
    capped: bool = False

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_bytes / 2 ** 20


class TreeMonitor(threading.Thread):
    """Polls the tree of ``pid`` every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.05, rss_cap_bytes: Optional[int] = None):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.rss_cap_bytes = rss_cap_bytes
        self.usage = TreeUsage()
        self._stop_event = threading.Event()
        self._labels: Dict[int, str] = {}

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def sample(self) -> None:
        total = 0
        pids = tree_pids(self.pid)
        alive = []
        for pid in pids:
            st = _stat(pid)
            if st is None:
                continue
            alive.append((pid, st[2]))
            total += st[2]
            # CPU ticks only grow; the last value seen per pid is kept so that
            # workers that exit before the job still count.
            self.usage.per_pid_cpu[pid] = max(self.usage.per_pid_cpu.get(pid, 0.0), st[1])
        self.usage.samples += 1
        if total > self.usage.peak_rss_bytes:
            self.usage.peak_rss_bytes = total
            for pid, _ in alive:
                if pid not in self._labels:
                    # The root may be a fork of the zygote: its command line says nothing.
                    self._labels[pid] = "job process" if pid == self.pid else describe(pid)
            self.usage.peak_breakdown = [(pid, self._labels[pid], rss) for pid, rss in alive]
        self.usage.peak_processes = max(self.usage.peak_processes, len(alive))
        if self.rss_cap_bytes and total > self.rss_cap_bytes and not self.usage.capped:
            # Over the cap: stop the measured tree (only it: these are the
            # processes this benchmark started) before the machine swaps or
            # the OOM killer picks a victim.
            self.usage.capped = True
            kill_tree(self.pid)

    def stop(self) -> TreeUsage:
        self._stop_event.set()
        self.join()
        return self.usage


def run_measured(cmd: Sequence[str], env: Optional[dict] = None, cwd: Optional[str] = None,
                 interval: float = 0.05, timeout: Optional[float] = None,
                 rss_cap_bytes: Optional[int] = None) -> TreeUsage:
    """Run ``cmd``; wall time, peak tree RSS and tree CPU of the whole run."""
    started = time.perf_counter()
    proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    monitor = TreeMonitor(proc.pid, interval, rss_cap_bytes)
    monitor.start()
    # stderr is drained in a thread so a chatty child never blocks on a full pipe.
    chunks: List[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    deadline = None if timeout is None else started + timeout
    status = rusage = None
    try:
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                kill_tree(proc.pid)
                pid, status, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM): leave no measured process behind.
        monitor.stop()
        kill_tree(proc.pid)
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    usage = monitor.stop()
    reader.join()
    usage.returncode = proc.returncode
    usage.wall_s = time.perf_counter() - started
    # wait4 covers the child plus every descendant it reaped; the polled
    # per-process maxima cover descendants that were never reaped. Take the
    # larger so neither blind spot loses CPU.
    usage.cpu_s = max(rusage.ru_utime + rusage.ru_stime, sum(usage.per_pid_cpu.values()))
    usage.stderr_tail = b"".join(chunks).decode("utf-8", "replace")[-4000:]
    return usage


class Zygote:
    """A ``python -m bench.child serve`` process that forks one measured child per command.

    Each child starts from the zygote's freshly imported state; the tree of
    that child (not the zygote) is what gets measured.
    """

    def __init__(self, cmd: Sequence[str], stderr_path: str, env: Optional[dict] = None,
                 cwd: Optional[str] = None, interval: float = 0.05):
        import json

        self._json = json
        self.interval = interval
        self.stderr_path = stderr_path
        self.current_pid: Optional[int] = None
        with open(stderr_path, "w") as err:
            self.proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1)
        line = self.proc.stdout.readline()
        if not line or not json.loads(line).get("ready"):
            with open(stderr_path, errors="replace") as err:
                raise RuntimeError(f"benchmark zygote did not start: {line!r} {err.read()[-2000:]}")

    def run(self, argv: Sequence[str], log_path: str, rss_cap_bytes: Optional[int] = None) -> TreeUsage:
        started = time.perf_counter()
        self.proc.stdin.write(self._json.dumps({"argv": list(argv), "log": log_path}) + "\n")
        self.proc.stdin.flush()
        pid = self._json.loads(self.proc.stdout.readline())["pid"]
        self.current_pid = pid
        monitor = TreeMonitor(pid, self.interval, rss_cap_bytes)
        monitor.start()
        try:
            line = self.proc.stdout.readline()
        finally:
            usage = monitor.stop()
        self.current_pid = None
        if not line:
            raise RuntimeError("benchmark zygote exited while a child was running")
        done = self._json.loads(line)
        usage.wall_s = time.perf_counter() - started
        usage.returncode = int(done["returncode"])
        usage.cpu_s = max(float(done["cpu_s"]), sum(usage.per_pid_cpu.values()))
        try:
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                usage.stderr_tail = handle.read()[-4000:]
        except OSError:
            usage.stderr_tail = ""
        return usage

    def close(self) -> None:
        if self.current_pid is not None:
            # Closed while a child runs (the benchmark was interrupted): stop its tree first.
            kill_tree(self.current_pid)
            self.current_pid = None
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
