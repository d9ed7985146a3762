#!/usr/bin/env python3
"""Boot executable for Beam SDK workers started by an EXTERNAL worker pool.

Beam's worker pool (``python -m apache_beam.runners.worker.worker_pool_main
--container_executable THIS_FILE``) calls this once per worker with the
container contract's flags (``--id``, ``--provision_endpoint``,
``--artifact_endpoint``, ``--control_endpoint``, ``--logging_endpoint``). It
does what the Dataflow SDK container's boot does with a ``--setup_file`` job:

1. asks the provision service for the job's pipeline options and its staged
   dependencies;
2. fetches the staged artifacts (``workflow.tar.gz`` is the sdist that
   ``--setup_file ./setup.py`` built at submission) from the artifact service
   into ``<worker dir>/staged``;
3. pip-installs ``workflow.tar.gz`` (and any ``--extra_package``) into
   ``<worker dir>/site``, which goes first on the worker's ``PYTHONPATH``, and
   checks that ``regenwatch`` and its shipped model resolve from there;
4. replaces itself with the Python SDK harness.

The plain worker pool stages the artifacts but installs nothing, so without
this boot a worker would run whatever happens to be importable on the host.

The install is ``--no-deps --no-index``: this boot is for worker machines or
images that already hold the dependencies (apache-beam, scikit-learn, ...,
e.g. a custom container built from ``pip install .``), so a worker never
reaches for a package index. A job that stages a ``--requirements_file`` is
refused rather than half-installed.

If this script exits non-zero the runner waits for a worker that never
connects, so every failure is reported on stderr, and whoever runs the job
should bound it with a timeout.

Environment:
  REGENWATCH_WORKER_DIR   parent of the per-worker directories (default: the system temp dir)
  REGENWATCH_BOOT_REPORT  if set, a directory; each worker writes <id>.json there describing
                          what it fetched and installed and where regenwatch resolved from
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List

WORKFLOW_TARBALL = "workflow.tar.gz"
EXTRA_PACKAGES_FILE = "extra_packages.txt"
REQUIREMENTS_FILE = "requirements.txt"
PACKAGE = "regenwatch"


class BootError(RuntimeError):
    """The worker cannot be provisioned; the message says why."""


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--id", required=True, help="Worker id assigned by the runner.")
    parser.add_argument("--provision_endpoint", required=True, help="Provision service host:port.")
    parser.add_argument("--artifact_endpoint", required=True, help="Artifact retrieval service host:port.")
    parser.add_argument("--control_endpoint", required=True, help="Fn API control service host:port.")
    parser.add_argument("--logging_endpoint", default="", help="Fn API logging service host:port.")
    parser.add_argument("--semi_persistent_directory", default=None,
                        help="Worker directory (default: a new directory under REGENWATCH_WORKER_DIR).")
    # The container contract may grow flags; unknown ones must not kill the worker.
    args, _unknown = parser.parse_known_args(argv)
    return args


def get_provision_info(endpoint: str, worker_id: str):
    import grpc

    from apache_beam.portability.api import beam_provision_api_pb2, beam_provision_api_pb2_grpc

    with grpc.insecure_channel(endpoint) as channel:
        stub = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel)
        # The runner finds the worker's environment by this header.
        response = stub.GetProvisionInfo(beam_provision_api_pb2.GetProvisionInfoRequest(),
                                         metadata=[("worker_id", worker_id)], timeout=60)
    return response.info


def staged_name(artifact) -> str:
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    if artifact.role_urn != common_urns.artifact_roles.STAGING_TO.urn:
        raise BootError(f"artifact with role {artifact.role_urn!r} is not a staged file; this boot "
                        "handles only files staged by the Python SDK")
    payload = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(artifact.role_payload)
    name = os.path.basename(payload.staged_name)
    if not name or name in (".", ".."):
        raise BootError(f"staged artifact has an unusable name {payload.staged_name!r}")
    return name


def fetch_artifacts(endpoint: str, worker_id: str, dependencies, staged_dir: str) -> Dict[str, str]:
    """Fetch every staged dependency into staged_dir; returns {staged name: local path}."""
    import grpc

    from apache_beam.portability.api import beam_artifact_api_pb2, beam_artifact_api_pb2_grpc

    os.makedirs(staged_dir, exist_ok=True)
    fetched = {}
    metadata = [("worker_id", worker_id)]
    with grpc.insecure_channel(endpoint, options=[("grpc.max_receive_message_length", -1)]) as channel:
        stub = beam_artifact_api_pb2_grpc.ArtifactRetrievalServiceStub(channel)
        resolved = stub.ResolveArtifacts(
            beam_artifact_api_pb2.ResolveArtifactsRequest(artifacts=list(dependencies)),
            metadata=metadata, timeout=60).replacements
        for artifact in resolved:
            name = staged_name(artifact)
            path = os.path.join(staged_dir, name)
            with open(path, "wb") as out:
                for chunk in stub.GetArtifact(beam_artifact_api_pb2.GetArtifactRequest(artifact=artifact),
                                              metadata=metadata, timeout=600):
                    out.write(chunk.data)
            fetched[name] = path
    return fetched


def packages_to_install(fetched: Dict[str, str]) -> List[str]:
    """The staged files pip must install, in the order Dataflow's boot uses."""
    if REQUIREMENTS_FILE in fetched:
        raise BootError(f"the job staged {REQUIREMENTS_FILE}; this boot installs only the --setup_file "
                        "package and --extra_package files (the worker image holds the dependencies)")
    packages = []
    if EXTRA_PACKAGES_FILE in fetched:
        with open(fetched[EXTRA_PACKAGES_FILE], encoding="utf-8") as handle:
            for line in handle:
                name = line.strip()
                if not name:
                    continue
                if name not in fetched:
                    raise BootError(f"{EXTRA_PACKAGES_FILE} names {name!r}, which was not staged")
                packages.append(fetched[name])
    if WORKFLOW_TARBALL in fetched:
        packages.append(fetched[WORKFLOW_TARBALL])
    return packages


def pip_install(packages: List[str], target: str) -> None:
    if not packages:
        return
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-build-isolation",
               "--disable-pip-version-check", "--no-cache-dir", "--quiet", "--target", target, *packages]
    # Output is captured: the worker pool gives this process a stdout pipe
    # that nobody reads, so a chatty child could block on a full pipe.
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BootError(f"pip install of the staged packages failed ({done.returncode}):\n"
                        f"{done.stdout}\n{done.stderr}")


def locate_package(env: Dict[str, str]) -> Dict[str, str]:
    """Where the worker's Python will import regenwatch and its default model from."""
    probe = (
        "import importlib.util, json, os\n"
        f"spec = importlib.util.find_spec('{PACKAGE}.models')\n"
        "root = os.path.dirname(spec.origin)\n"
        "print(json.dumps({'models_package': root,\n"
        "                  'default_model': os.path.join(root, 'default', 'model.joblib')}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BootError(f"{PACKAGE} is not importable on this worker:\n{done.stderr}")
    found = json.loads(done.stdout)
    if not os.path.isfile(found["default_model"]):
        raise BootError(f"the installed {PACKAGE} has no default model at {found['default_model']}")
    return found


def harness_environment(args, info, worker_dir: str, site_dir: str) -> Dict[str, str]:
    from google.protobuf import json_format, text_format

    from apache_beam.portability.api import endpoints_pb2

    def descriptor(url: str) -> str:
        return text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url))

    env = dict(os.environ)
    env.update({
        "WORKER_ID": args.id,
        "PIPELINE_OPTIONS": json_format.MessageToJson(info.pipeline_options),
        "CONTROL_API_SERVICE_DESCRIPTOR": descriptor(args.control_endpoint),
        "SEMI_PERSISTENT_DIRECTORY": worker_dir,
        "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities),
    })
    if args.logging_endpoint:
        env["LOGGING_API_SERVICE_DESCRIPTOR"] = descriptor(args.logging_endpoint)
    # The staged install shadows anything of the same name on the host.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (site_dir, os.environ.get("PYTHONPATH")) if p)
    return env


def boot(argv: List[str]) -> List[str]:
    """Provision the worker; returns the harness command line (with its env applied to os.environ)."""
    args = parse_args(argv)
    worker_dir = args.semi_persistent_directory or tempfile.mkdtemp(
        prefix=f"regenwatch-worker-{args.id}-", dir=os.environ.get("REGENWATCH_WORKER_DIR"))
    staged_dir = os.path.join(worker_dir, "staged")  # where the SDK harness looks for staged files
    site_dir = os.path.join(worker_dir, "site")

    info = get_provision_info(args.provision_endpoint, args.id)
    fetched = fetch_artifacts(args.artifact_endpoint, args.id, info.dependencies, staged_dir)
    packages = packages_to_install(fetched)
    pip_install(packages, site_dir)
    env = harness_environment(args, info, worker_dir, site_dir)
    located = locate_package(env)

    report_dir = os.environ.get("REGENWATCH_BOOT_REPORT")
    if report_dir:
        os.makedirs(report_dir, exist_ok=True)
        with open(os.path.join(report_dir, f"{args.id}.json"), "w", encoding="utf-8") as handle:
            json.dump({"worker_id": args.id, "worker_dir": worker_dir, "site_dir": site_dir,
                       "staged": sorted(fetched), "installed": [os.path.basename(p) for p in packages],
                       **located}, handle, indent=2)
    os.environ.clear()
    os.environ.update(env)
    return [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"]


def main(argv: List[str]) -> int:
    try:
        command = boot(argv)
    except BootError as exc:
        print(f"worker_boot: {exc}", file=sys.stderr)
        return 1
    sys.stderr.flush()
    os.execv(command[0], command)
    return 0  # not reached: execv replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
