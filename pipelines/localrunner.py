"""The local runner: Beam's FnApiRunner, with multi_processing workers forked instead of spawned.

With ``--direct_running_mode=multi_processing`` the FnApiRunner starts each
SDK worker as a fresh interpreter (``sh -c 'python -m
apache_beam.runners.worker.sdk_worker_main'``). Measured on 2,000 pages
(bench, 2 workers), each worker then spent ~2.5-3 CPU-s importing Beam,
scikit-learn and regenwatch and unpickling the model before its first page,
and the 2-worker run used ~6.6 CPU-s more than the 1-worker run for the same
work: on 2 cores that start-up, not the split of the work (the 8 input
ranges were dealt 4 and 4), kept 2 workers from being faster than one.

:class:`LocalRunner` keeps everything else of the FnApiRunner and changes
only the command that starts a worker: before the run starts any gRPC
server, the launcher forks a small *fork server* that already has every
module imported and the verified model in memory
(``dofns.verified_model``); the worker command is a tiny client (``python
-I -S``, no site packages) that hands its environment (the control, logging
and pipeline-options descriptors the runner set) to the fork server, which
forks a worker running ``sdk_worker_main.main`` with it. The client exits
with the worker's exit code when the worker ends, so the runner sees a
subprocess as before.

The fork path is taken only where it is safe: Linux (``fork`` without
macOS's restrictions) and a launcher with no other thread running (no gRPC
server or channel of an earlier run in this process); otherwise the stock
subprocess command is used. The workers compute exactly what the stock
workers compute; only their start differs.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from typing import Dict, Optional

from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms.environments import SubprocessSDKEnvironment

# What the FnApiRunner puts in a worker's environment (local_job_service.SubprocessSdkWorker).
WORKER_ENV_KEYS = ("CONTROL_API_SERVICE_DESCRIPTOR", "LOGGING_API_SERVICE_DESCRIPTOR", "PIPELINE_OPTIONS",
                   "WORKER_ID")

# The worker command's client: standard library only, so it starts in ~20 ms.
_CLIENT = (
    "import json,os,socket,sys\n"
    "keys=%r\n"
    "s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)\n"
    "s.connect(sys.argv[1])\n"
    "s.sendall(json.dumps({k:os.environ[k] for k in keys if k in os.environ}).encode())\n"
    "s.shutdown(socket.SHUT_WR)\n"
    "data=b''\n"
    "while True:\n"
    "    b=s.recv(64)\n"
    "    if not b: break\n"
    "    data+=b\n"
    "sys.exit(data[-1] if data else 1)\n"
) % (WORKER_ENV_KEYS,)


def fork_supported() -> bool:
    """Forking the launcher is safe here: Linux, and no thread (gRPC of an earlier run, ...) besides this one."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1


def _read_all(conn: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _run_worker(conn: socket.socket, env: Dict[str, str]) -> None:
    """In a forked child: the SDK harness, as ``python -m sdk_worker_main`` would run it; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.environ.update(env)
        from apache_beam.runners.worker import sdk_worker_main

        sdk_worker_main.main([])
        code = 0
    except BaseException:  # pylint: disable=broad-except
        traceback.print_exc()
    finally:
        try:
            conn.sendall(bytes([code]))
            conn.close()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            # Not sys.exit: the launcher's atexit handlers and finalizers are not the worker's.
            os._exit(code)


def _serve(listener: socket.socket, launcher: int) -> None:
    """The fork server's loop: one forked worker per connection, until SIGTERM or the launcher's end.

    ``launcher`` is the launcher's pid: a launcher killed without closing the
    server (SIGKILL) must not leave it behind holding a copy of its memory.
    """
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    listener.settimeout(0.2)
    children = set()

    def reap(block: bool) -> None:
        for pid in list(children):
            try:
                done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                children.discard(pid)

    while not stopping and os.getppid() == launcher:
        reap(block=False)
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        except OSError:
            if stopping:
                break
            raise
        conn.settimeout(None)
        env = json.loads(_read_all(conn).decode("utf-8"))
        pid = os.fork()
        if pid == 0:
            listener.close()
            _run_worker(conn, env)
        conn.close()
        children.add(pid)
    # Reaped here, so their CPU time counts in the fork server's (and so the launcher's) rusage.
    deadline = time.monotonic() + 30
    while children and time.monotonic() < deadline:
        reap(block=False)
        time.sleep(0.05)


class WorkerForkServer:
    """A forked copy of the launcher that forks SDK workers on request (see the module docstring)."""

    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix="regenwatch-workers-")
        self.address = os.path.join(self.directory, "fork.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.address)
        listener.listen(16)
        sys.stdout.flush()
        sys.stderr.flush()
        launcher = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _serve(listener, launcher)
                if os.getppid() != launcher:  # nobody left to call close()
                    shutil.rmtree(self.directory, ignore_errors=True)
            except BaseException:  # pylint: disable=broad-except
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        listener.close()
        self.pid = pid

    def command(self) -> str:
        return " ".join(shlex.quote(part) for part in (sys.executable, "-I", "-S", "-c", _CLIENT, self.address))

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        shutil.rmtree(self.directory, ignore_errors=True)


class LocalRunner(FnApiRunner):
    """FnApiRunner whose multi_processing workers are forked from the launcher (see the module docstring)."""

    _fork_command: Optional[str] = None

    # FnApiRunner.run_pipeline sets the default environment from
    # --direct_running_mode; for multi_processing it is the stock subprocess
    # command, which this swaps for the fork server's client.
    @property
    def _default_environment(self):
        return self.__dict__["_regenwatch_environment"]

    @_default_environment.setter
    def _default_environment(self, environment):
        if self._fork_command and isinstance(environment, SubprocessSDKEnvironment):
            environment = SubprocessSDKEnvironment.from_command_string(command_string=self._fork_command)
        self.__dict__["_regenwatch_environment"] = environment

    def run_pipeline(self, pipeline, options):
        server = None
        if options.view_as(DirectOptions).direct_running_mode == "multi_processing" and fork_supported():
            server = WorkerForkServer()
            self._fork_command = server.command()
        try:
            return super().run_pipeline(pipeline, options)
        finally:
            self._fork_command = None
            if server is not None:
                server.close()


__all__ = ["LocalRunner", "WorkerForkServer", "fork_supported"]
