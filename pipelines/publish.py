"""Run directories for scheduled batch runs: staging, atomic publish, ``_SUCCESS``.

Layout under ``--output BASE``::

    BASE/<run_id>/flagged-*.avro decisions-*.avro deadletter-*.avro _SUCCESS   with --run_id
    BASE/flagged-*.avro ... _SUCCESS                                          without (the run dir is BASE)
    BASE/_staging/<run_id>/<attempt>/...     only while a run writes

The pipeline writes into a fresh staging directory (Beam's own temporary
files land there too). Only a run that finished publishes: it removes the
run directory's ``_SUCCESS``, removes the outputs of the earlier run of the
same id, moves the staged files in, and writes ``_SUCCESS`` last (JSON: run
id, model version, counts, the files). So a reader that waits for
``_SUCCESS`` sees one complete set, and a rerun of a run id replaces its
outputs instead of adding to them. A run killed at any point leaves the
previous published set untouched (or no set at all); its staging directory
is removed by the next run of the same id.

Every step goes through Beam's ``FileSystems`` (local paths, ``gs://``...).
Moving a file is atomic on a local filesystem and object-atomic on GCS, so
the publish step itself has a short window (milliseconds locally) in which
the run directory has no ``_SUCCESS``; that is the contract: no marker, no
read. Two runs of the same run id at the same time are not supported (the
README's cron line uses ``flock``; systemd never overlaps a service).
"""
from __future__ import annotations

import datetime
import glob
import hashlib
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

SUCCESS = "_SUCCESS"
STAGING = "_staging"
# Output name -> file prefix, as transforms.WriteModerationOutputs writes them.
OUTPUTS = {"flagged": "flagged", "decisions": "decisions", "dead_letters": "deadletter"}
# A run id becomes a path component: letters, digits and ._=- only, not
# starting with '.' or '_' (hidden names; '_staging'), so a hostile or
# mistyped id can never climb out of --output or hide a run.
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$")


class PublishError(RuntimeError):
    """The staged outputs cannot be published (incomplete, or the store refused)."""


def validate_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id or "") or ".." in run_id:
        raise ValueError(
            f"--run_id {run_id!r}: use 1-128 letters, digits, '.', '_', '=' or '-', starting with a "
            "letter or digit (it names a directory under --output)")
    return run_id


def default_run_id(input_pattern: str, output: str) -> str:
    """The run id of a run given none: the same input and output are the same run."""
    digest = hashlib.sha256(f"{input_pattern}\0{output}".encode("utf-8")).hexdigest()
    return f"adhoc-{digest[:12]}"


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RunLayout:
    base: str
    run_id: str
    run_dir: str
    attempt: str

    @classmethod
    def create(cls, output: str, run_id: Optional[str], input_pattern: str) -> "RunLayout":
        base = output.rstrip("/") or output
        if run_id:
            run_dir = FileSystems.join(base, validate_run_id(run_id))
        else:
            run_id, run_dir = default_run_id(input_pattern, base), base
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return cls(base=base, run_id=run_id, run_dir=run_dir, attempt=f"{stamp}-{uuid.uuid4().hex[:8]}")

    @property
    def staging_root(self) -> str:
        """Every attempt of this run id stages under here."""
        return FileSystems.join(self.base, STAGING, self.run_id)

    @property
    def staging_dir(self) -> str:
        return FileSystems.join(self.staging_root, self.attempt)


# --------------------------------------------------------------------------
# FileSystems helpers


def _match(pattern: str) -> List[str]:
    # No match is an empty list; an error (permissions, the store) propagates:
    # taken for "no earlier outputs", it would publish beside a stale set.
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def _delete(paths: List[str]) -> None:
    """Delete files or directories; ones already gone are fine."""
    for path in paths:
        try:
            FileSystems.delete([path])
        except (BeamIOError, OSError) as exc:
            if FileSystems.exists(path):
                raise PublishError(f"cannot delete {path}: {exc}") from exc


def _mkdirs(path: str) -> None:
    try:
        FileSystems.mkdirs(path)
    except (BeamIOError, OSError):
        if not FileSystems.exists(path):
            raise


def _dir_path(path: str) -> str:
    """A directory as FileSystems.delete wants it.

    Object stores (gs://...) delete a whole prefix given a trailing '/';
    the local filesystem matches "dir/" as "dir/*" (which leaves the
    directory, and fails when it is empty) but removes "dir" recursively.
    """
    if "://" in path:
        return path if path.endswith("/") else path + "/"
    return path.rstrip("/") or path


def output_files(directory: str) -> Dict[str, List[str]]:
    """The Avro files of each output in a directory."""
    return {name: _match(FileSystems.join(directory, f"{prefix}-*.avro")) for name, prefix in OUTPUTS.items()}


def count_records(paths: List[str]) -> int:
    """Records in Avro container files, from the block headers (records are not decoded)."""
    import fastavro

    total = 0
    for path in paths:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            total += sum(block.num_records for block in fastavro.block_reader(handle))
    return total


# --------------------------------------------------------------------------
# The steps


def clean_stale(layout: RunLayout) -> List[str]:
    """Remove what killed or failed attempts of this run id left behind; returns what was removed.

    Staging of other run ids is left alone: backfills of several dates may
    run side by side.
    """
    stale = []
    if "://" in layout.staging_root:
        # Object stores: the "directory" exists only as objects under its prefix.
        present = bool(_match(FileSystems.join(layout.staging_root, "**")))
    else:
        present = FileSystems.exists(layout.staging_root)
    if present:
        stale.append(layout.staging_root)
    # Beam's temporary directories from runs that wrote into the run
    # directory directly (before staging existed, or build_pipeline used alone).
    stale += _beam_temp_dirs(layout.run_dir)
    _delete([_dir_path(p) for p in stale])
    return stale


def _beam_temp_dirs(directory: str) -> List[str]:
    # FileSystems.match lists files, not directories: find the directories
    # through the files in them (and, locally, empty ones through glob).
    found = {p.rsplit("/", 1)[0] for p in _match(FileSystems.join(directory, "beam-temp-*", "*"))}
    if "://" not in directory:
        found.update(p for p in glob.glob(os.path.join(directory, "beam-temp-*")) if os.path.isdir(p))
    return sorted(found)


def discard_staging(layout: RunLayout) -> None:
    """After a failed run: nothing of it is kept (best effort; the next run cleans too)."""
    try:
        _delete([_dir_path(layout.staging_dir)])
        _remove_if_empty(layout.staging_root)
        _remove_if_empty(FileSystems.join(layout.base, STAGING))
    except (PublishError, BeamIOError, OSError) as exc:
        logging.warning("could not remove staging %s: %s", layout.staging_dir, exc)


def _remove_if_empty(directory: str) -> None:
    # Object stores have no directories to leave behind. Locally, rmdir is
    # the only safe "if empty": FileSystems.match lists files, not the
    # staging directories of other run ids that may sit in here.
    if "://" in directory:
        return
    try:
        os.rmdir(directory)
    except OSError:
        pass  # not empty (another run id is staging) or already gone


def staged_outputs(layout: RunLayout) -> Dict[str, List[str]]:
    """The staged files by output; raises PublishError when an output has none."""
    staged = output_files(layout.staging_dir)
    missing = [name for name, paths in staged.items() if not paths]
    if missing:
        raise PublishError(f"staging {layout.staging_dir} has no {', '.join(missing)} files: not publishing "
                           "an incomplete run (was it removed by a concurrent run of the same run id?)")
    return staged


def read_marker(run_dir: str) -> Optional[Dict[str, Any]]:
    """The published run's ``_SUCCESS`` marker, or None when the directory holds no complete run."""
    path = FileSystems.join(run_dir, SUCCESS)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return json.loads(handle.read().decode("utf-8"))


def publish(layout: RunLayout, marker: Dict[str, Any]) -> Dict[str, List[str]]:
    """Replace the run directory's outputs with the staged ones; ``_SUCCESS`` last.

    Returns the published files by output name.
    """
    staged = staged_outputs(layout)
    names = {name: [p.rsplit("/", 1)[-1] for p in paths] for name, paths in staged.items()}
    marker = {**marker, "files": names, "published_at": _utc_now()}

    # 1. Whatever happens next, the run directory no longer claims to be complete.
    _delete([FileSystems.join(layout.run_dir, SUCCESS)])
    # 2. The earlier run's outputs go (their shard count may differ from ours).
    _delete([p for paths in output_files(layout.run_dir).values() for p in paths])
    # 3. The staged files move in, each move atomic.
    _mkdirs(layout.run_dir)
    sources = [p for paths in staged.values() for p in paths]
    targets = [FileSystems.join(layout.run_dir, p.rsplit("/", 1)[-1]) for p in sources]
    try:
        FileSystems.rename(sources, targets)
    except BeamIOError as exc:
        raise PublishError(f"moving staged outputs into {layout.run_dir} failed: {exc}") from exc
    # 4. The marker, written whole in staging and moved in: never half a marker.
    staged_marker = FileSystems.join(layout.staging_dir, SUCCESS)
    with FileSystems.create(staged_marker, mime_type="application/json") as handle:
        handle.write((json.dumps(marker, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    FileSystems.rename([staged_marker], [FileSystems.join(layout.run_dir, SUCCESS)])
    # 5. Staging goes (Beam's emptied temporary directories with it).
    _delete([_dir_path(layout.staging_root)])
    _remove_if_empty(FileSystems.join(layout.base, STAGING))
    return {name: [FileSystems.join(layout.run_dir, n) for n in files] for name, files in names.items()}
