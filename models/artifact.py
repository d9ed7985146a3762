"""Model artifact format: a joblib file with a JSON manifest beside it.

``<name>.joblib`` holds the fitted :class:`~regenwatch.models.classifier.ClaimModel`;
``<name>.manifest.json`` holds its version, the SHA-256 of the artifact bytes,
the library versions it was trained with, the decision threshold, the hash of
the training data and its cross-validated metrics.

joblib is pickle, and unpickling runs code, so :func:`load_model` reads the
bytes, checks their SHA-256 (and, when a key is configured, an HMAC) against
the manifest and checks the scikit-learn version BEFORE unpickling anything.
All I/O goes through Beam's ``FileSystems`` so ``gs://`` and other remote
paths work on workers.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import platform
from dataclasses import dataclass
from typing import Any, Dict, Optional

import joblib
import numpy
import sklearn

DEFAULT_MODEL = "default"
HMAC_KEY_ENV = "REGENWATCH_MODEL_HMAC_KEY"
MANIFEST_FORMAT = 1


class ModelLoadError(RuntimeError):
    """The artifact or its manifest is missing, tampered with, or incompatible."""


@dataclass
class LoadedModel:
    model: Any
    manifest: Dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def default_model_path() -> str:
    """The shipped model inside the installed package (resolved on each worker)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "default", "model.joblib")


def resolve_model_uri(uri: Optional[str]) -> str:
    if not uri or uri == DEFAULT_MODEL:
        return default_model_path()
    return uri


def manifest_uri(artifact_uri: str) -> str:
    base = artifact_uri[: -len(".joblib")] if artifact_uri.endswith(".joblib") else artifact_uri
    return base + ".manifest.json"


def _filesystems():
    # Imported lazily: the training command and pure tests need no Beam I/O
    # setup, and Beam's filesystem registry is heavy to import.
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _read_bytes(uri: str) -> bytes:
    fs = _filesystems()
    with fs.open(uri) as handle:
        return handle.read()


def _write_bytes(uri: str, data: bytes) -> None:
    fs = _filesystems()
    with fs.create(uri) as handle:
        handle.write(data)


def _hmac_hex(data: bytes, key: str) -> str:
    return hmac.new(key.encode("utf-8"), data, hashlib.sha256).hexdigest()


def library_versions() -> Dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "joblib": joblib.__version__,
    }


def save_model(model: Any, artifact_uri: str, metadata: Dict[str, Any]) -> Dict[str, Any]:
    """Write the artifact and its manifest; returns the manifest."""
    buf = io.BytesIO()
    joblib.dump(model, buf, compress=3)
    data = buf.getvalue()
    manifest = {
        "format": MANIFEST_FORMAT,
        "artifact": os.path.basename(artifact_uri),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "libraries": library_versions(),
        **metadata,
    }
    key = os.environ.get(HMAC_KEY_ENV)
    if key:
        manifest["hmac_sha256"] = _hmac_hex(data, key)
    manifest.setdefault("threshold", float(getattr(model, "threshold", 0.5)))
    _write_bytes(artifact_uri, data)
    _write_bytes(manifest_uri(artifact_uri), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def read_manifest(artifact_uri: str) -> Dict[str, Any]:
    uri = manifest_uri(artifact_uri)
    try:
        raw = _read_bytes(uri)
    except Exception as exc:  # Beam raises several I/O error types per filesystem.
        raise ModelLoadError(f"model manifest {uri} cannot be read: {exc}") from exc
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise ModelLoadError(f"model manifest {uri} is not valid JSON: {exc}") from exc
    for key in ("version", "sha256", "libraries"):
        if key not in manifest:
            raise ModelLoadError(f"model manifest {uri} has no '{key}'")
    return manifest


def load_model(uri: Optional[str] = None) -> LoadedModel:
    """Verify and load an artifact; raises ModelLoadError with the reason."""
    artifact_uri = resolve_model_uri(uri)
    manifest = read_manifest(artifact_uri)
    try:
        data = _read_bytes(artifact_uri)
    except Exception as exc:  # Beam raises several I/O error types per filesystem.
        raise ModelLoadError(f"model artifact {artifact_uri} cannot be read: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest["sha256"]:
        raise ModelLoadError(
            f"model artifact {artifact_uri} has SHA-256 {digest}, but its manifest says "
            f"{manifest['sha256']}: refusing to unpickle a file that is not the one trained"
        )
    key = os.environ.get(HMAC_KEY_ENV)
    if key:
        expected = manifest.get("hmac_sha256")
        if not expected or not hmac.compare_digest(expected, _hmac_hex(data, key)):
            raise ModelLoadError(
                f"model artifact {artifact_uri} fails HMAC verification with the key in {HMAC_KEY_ENV}"
            )
    trained_with = manifest["libraries"].get("scikit-learn")
    if trained_with != sklearn.__version__:
        raise ModelLoadError(
            f"model artifact {artifact_uri} was trained with scikit-learn {trained_with}, "
            f"this environment has {sklearn.__version__}: install scikit-learn=={trained_with} "
            "or retrain the model"
        )
    model = joblib.load(io.BytesIO(data))
    if "threshold" in manifest:
        model.threshold = float(manifest["threshold"])
    return LoadedModel(model=model, manifest=manifest)
