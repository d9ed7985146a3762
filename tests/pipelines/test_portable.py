"""The batch job through Beam's portable job API, as Dataflow, Flink and Spark run it.

A local job service (``local_job_service_main``) takes the job from
``--runner PortableRunner``; the SDK workers are either the submitting
process (LOOPBACK) or processes started by an EXTERNAL worker pool whose boot
executable (deploy/worker_boot.py) installs the package from the staged
``--setup_file`` sdist, as Dataflow's container does. Both must write what the
local runner writes on the same input.

Every job runs in a subprocess with a timeout: a worker that fails to boot
makes the runner wait forever for it.
"""
import contextlib
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import fastavro
import pytest

from regenwatch.pipelines.moderate import run
from tests.conftest import REPO, SEED_INPUT

JOB_TIMEOUT = 150            # seconds for one job, submission to finish
SERVICE_START_TIMEOUT = 60   # seconds for a service to listen
BOOT_SCRIPT = os.path.join(REPO, "deploy", "worker_boot.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log_path: str) -> None:
    deadline = time.monotonic() + SERVICE_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"service exited with {proc.returncode} before listening:\n{tail(log_path)}")
        with contextlib.suppress(OSError), socket.create_connection(("localhost", port), timeout=1):
            return
        time.sleep(0.2)
    pytest.fail(f"service not listening on {port} after {SERVICE_START_TIMEOUT}s:\n{tail(log_path)}")


def tail(path: str, lines: int = 60) -> str:
    with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as handle:
        return "".join(handle.readlines()[-lines:])
    return "(no log)"


@contextlib.contextmanager
def service(cmd, port: int, log_path: str, env=None, cwd=None):
    """A background service in its own process group (so its workers end with it)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
    try:
        wait_for_port(port, proc, log_path)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_job(args, cwd, logs):
    """regenwatch run in a subprocess, bounded by JOB_TIMEOUT; returns its output."""
    cmd = [sys.executable, "-m", "regenwatch.cli", "run", *args]
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=JOB_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"job did not finish in {JOB_TIMEOUT}s: {' '.join(cmd)}\n{exc.stderr}\n"
                    + "\n".join(f"--- {p}\n{tail(p)}" for p in logs))
    assert done.returncode == 0, f"{done.stderr[-4000:]}\n" + "\n".join(f"--- {p}\n{tail(p)}" for p in logs)
    return done.stderr


# ---------------------------------------------------------------------------
# What "the same outputs" means: every field but the processing times; floats
# to 9 places, since batches may be formed differently on another runner.

def _normalized(value):
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items() if k not in ("processed_at", "failed_at")}
    return value


def outputs(directory):
    found = {}
    for prefix in ("decisions", "flagged", "deadletter"):
        records = []
        for path in glob.glob(os.path.join(directory, f"{prefix}-*.avro")):
            with open(path, "rb") as handle:
                records.extend(_normalized(r) for r in fastavro.reader(handle))
        found[prefix] = sorted(records, key=lambda r: json.dumps(r, sort_keys=True))
    return found


def without_source_folder(found):
    return {prefix: [dict(r, source=os.path.basename(r["source"])) if r.get("source") else r for r in records]
            for prefix, records in found.items()}


# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def portable_input(tmp_path_factory):
    """The seed pages plus two bad lines, so dead letters are compared too."""
    folder = tmp_path_factory.mktemp("portable-in")
    with open(SEED_INPUT, "rb") as handle:
        seeds = handle.read().rstrip(b"\n")
    bad = [b'{"id": "broken", "content": ', json.dumps({"id": "blank", "content": "  "}).encode()]
    (folder / "pages.jsonl").write_bytes(seeds + b"\n" + b"\n".join(bad) + b"\n")
    return str(folder / "pages.jsonl")


@pytest.fixture(scope="module")
def reference(portable_input, small_model_uri, tmp_path_factory):
    """The same job on the local runner (what DirectRunner maps to here)."""
    out = str(tmp_path_factory.mktemp("reference-out"))
    run(["--input", portable_input, "--output", out, "--model", small_model_uri])
    found = outputs(out)
    assert len(found["decisions"]) == 5 and len(found["deadletter"]) == 2
    return found


@pytest.fixture(scope="module")
def job_service(tmp_path_factory):
    folder = tmp_path_factory.mktemp("job-service")
    port = free_port()
    log = str(folder / "job_service.log")
    cmd = [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
           "--port", str(port), "--staging_dir", str(folder / "staging")]
    with service(cmd, port, log):
        yield f"localhost:{port}", log


def test_loopback_job_matches_local_runner(portable_input, reference, small_model_uri, job_service, tmp_path):
    endpoint, log = job_service
    out = str(tmp_path / "out")
    run_job(["--input", portable_input, "--output", out, "--model", small_model_uri,
             "--runner", "PortableRunner", "--job_endpoint", endpoint, "--environment_type", "LOOPBACK"],
            cwd=REPO, logs=[log])
    assert outputs(out) == reference


def test_external_workers_install_staged_setup_file_and_match_local_runner(
        portable_input, reference, small_model_uri, job_service, tmp_path):
    endpoint, job_log = job_service
    pool_port = free_port()
    pool_log = str(tmp_path / "worker_pool.log")
    report = tmp_path / "boot-report"
    pool_dir = tmp_path / "pool-cwd"      # workers start here: a relative path would not resolve
    pool_dir.mkdir()
    env = dict(os.environ,
               # the boot script's '#!/usr/bin/env python3' is this interpreter, as in a container
               PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
               REGENWATCH_WORKER_DIR=str(tmp_path), REGENWATCH_BOOT_REPORT=str(report))
    pool_cmd = [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                "--service_port", str(pool_port), "--container_executable", BOOT_SCRIPT]
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    shutil.copy(portable_input, client_dir / "pages.jsonl")
    with service(pool_cmd, pool_port, pool_log, env=env, cwd=str(pool_dir)):
        # Relative --input/--output, resolved against the client's directory at submission.
        run_job(["--input", "pages.jsonl", "--output", "out", "--model", small_model_uri,
                 "--runner", "PortableRunner", "--job_endpoint", endpoint,
                 "--environment_type", "EXTERNAL", "--environment_config", f"localhost:{pool_port}",
                 "--setup_file", os.path.join(REPO, "setup.py")],
                cwd=str(client_dir), logs=[job_log, pool_log])
    # Dead letters name their source file: the same file name, in another folder.
    assert without_source_folder(outputs(str(client_dir / "out"))) == without_source_folder(reference)

    # The worker ran the package installed from the staged sdist, not the checkout.
    reports = [json.loads(p.read_text()) for p in report.glob("*.json")]
    assert reports, "no worker booted through deploy/worker_boot.py"
    for boot in reports:
        assert "workflow.tar.gz" in boot["staged"] and boot["installed"] == ["workflow.tar.gz"]
        assert boot["models_package"].startswith(boot["site_dir"])
        # The default model travels as package data and resolves inside the install.
        with open(boot["default_model"], "rb") as staged, \
                open(os.path.join(REPO, "models", "default", "model.joblib"), "rb") as shipped:
            assert hashlib.sha256(staged.read()).digest() == hashlib.sha256(shipped.read()).digest()


# ---------------------------------------------------------------------------
# The Flex Template spec (deploy/flex) stays in step with the options.

def _load_flex_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("flex_main", os.path.join(REPO, "deploy", "flex_main.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("template", ["run", "stream"])
def test_flex_template_parameters_are_regenwatch_options(template):
    import argparse

    from regenwatch.pipelines.options import RegenwatchOptions

    parser = argparse.ArgumentParser()
    RegenwatchOptions._add_argparse_args(parser)
    flags = {a.dest for a in parser._actions} | {"command"}
    with open(os.path.join(REPO, "deploy", "flex", f"{template}.metadata.json"), encoding="utf-8") as handle:
        metadata = json.load(handle)
    names = [p["name"] for p in metadata["parameters"]]
    assert set(names) <= flags, set(names) - flags
    required = {p["name"] for p in metadata["parameters"] if not p.get("isOptional")}
    assert required == ({"input", "output"} if template == "run" else {"command", "input_subscription", "output"})


def test_flex_entry_point_picks_the_command():
    flex_main = _load_flex_main()
    assert flex_main.split_command(["--input=gs://b/x", "--output=gs://b/o"]) == (
        "run", ["--input=gs://b/x", "--output=gs://b/o"])
    assert flex_main.split_command(["--command=stream", "--output=gs://b/o"]) == ("stream", ["--output=gs://b/o"])
    assert flex_main.split_command(["--command", "stream"]) == ("stream", [])
    with pytest.raises(SystemExit):
        flex_main.split_command(["--command=train"])


def test_sdist_and_wheel_carry_schemas_and_default_model(tmp_path):
    """What --setup_file stages (an sdist) and what a worker installs from it (a wheel) hold the package data."""
    import tarfile
    import zipfile

    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)], cwd=REPO,
                   check=True, capture_output=True, timeout=120)
    [sdist] = glob.glob(str(tmp_path / "regenwatch-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        members = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    data = ["schemas/page.avsc", "schemas/flagged.avsc", "schemas/decision.avsc", "schemas/deadletter.avsc",
            "models/default/model.joblib", "models/default/model.manifest.json"]
    assert set(data) <= members, set(data) - members

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "-w", str(tmp_path), sdist],
                   check=True, capture_output=True, timeout=180)
    [wheel] = glob.glob(str(tmp_path / "regenwatch-*.whl"))
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    assert {f"regenwatch/{path}" for path in data} <= names
