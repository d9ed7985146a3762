"""LocalRunner: multi_processing workers forked from the launcher decide as the in-memory worker does."""
import glob
import json
import os
import subprocess
import sys
import threading

import fastavro

from regenwatch.pipelines import localrunner
from regenwatch.pipelines.moderate import run
from tests.conftest import REPO, SEED_INPUT

FIELDS = ("id", "content_sha256", "flagged", "severity", "score", "model_version")


def _records(directory):
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "**", "decisions-*.avro"), recursive=True)):
        with open(path, "rb") as handle:
            rows.extend(tuple(rec.get(f) for f in FIELDS) for rec in fastavro.reader(handle))
    return sorted(rows)


def test_forked_workers_decide_as_the_in_memory_worker(small_model_uri, tmp_path):
    mem_out, mp_out = str(tmp_path / "mem"), str(tmp_path / "mp")
    run(["--input", SEED_INPUT, "--output", mem_out, "--model", small_model_uri])
    # A fresh process: the launcher has no thread of an earlier run, so the fork path is taken.
    code = (
        "import sys; from regenwatch.pipelines.moderate import run; "
        "r = run(sys.argv[1:]); print('DECIDED', r.summary.decided)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "--input", SEED_INPUT, "--output", mp_out, "--model", small_model_uri,
         "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DECIDED 5" in proc.stdout
    # Workers forked from the launcher find the model it verified in memory;
    # a fresh interpreter would have loaded it from the file.
    assert "the one the launcher verified" in proc.stderr
    assert "loaded from" not in proc.stderr
    assert _records(mp_out) == _records(mem_out)


def test_fork_server_leaves_nothing_behind():
    server = localrunner.WorkerForkServer()
    assert os.path.exists(server.address)
    server.close()
    assert not os.path.exists(server.directory)
    try:
        os.kill(server.pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "the fork server was not reaped"


def test_no_fork_while_another_thread_runs():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not localrunner.fork_supported()
    finally:
        stop.set()
        thread.join()


def test_stock_worker_command_without_a_fork_server():
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    runner = localrunner.LocalRunner()
    stock = SubprocessSDKEnvironment.from_command_string(command_string="python -m sdk_worker_main")
    runner._default_environment = stock
    assert runner._default_environment is stock
    runner._fork_command = "client /tmp/x.sock"
    runner._default_environment = stock
    assert runner._default_environment.command_string == "client /tmp/x.sock"


def test_client_reports_the_workers_exit_code(tmp_path):
    # The runner treats the worker command as the worker: its exit code must be the worker's.
    import socket

    address = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(1)
    env = dict(os.environ, CONTROL_API_SERVICE_DESCRIPTOR="url: 'localhost:1'", WORKER_ID="w7")
    client = subprocess.Popen([sys.executable, "-I", "-S", "-c", localrunner._CLIENT, address], env=env)
    conn, _ = listener.accept()
    sent = json.loads(localrunner._read_all(conn).decode())
    assert sent == {"CONTROL_API_SERVICE_DESCRIPTOR": "url: 'localhost:1'", "WORKER_ID": "w7"}
    conn.sendall(bytes([3]))
    conn.close()
    assert client.wait(timeout=30) == 3


def test_fork_server_ends_with_a_killed_launcher():
    # A launcher killed without closing its fork server (SIGKILL) leaves no process behind.
    import time

    code = ("import os; from regenwatch.pipelines import localrunner; "
            "s = localrunner.WorkerForkServer(); print(s.pid, s.directory, flush=True); os._exit(0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    server, directory = int(proc.stdout.split()[0]), proc.stdout.split()[1]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{server}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break  # exited; waiting for whoever adopted it to reap it
        time.sleep(0.1)
    else:
        raise AssertionError(f"fork server {server} still running after its launcher ended")
    deadline = time.monotonic() + 5
    while os.path.exists(directory) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(directory), "the fork server's socket directory was left behind"
