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

The HMAC (``hmac_sha256``) signs the whole manifest, not only the artifact
bytes: the manifest carries the artifact's SHA-256, so one signature binds
the bytes, the version and the decision threshold. Signing only the bytes
would let anyone with write access to the model folder raise the threshold
to 1.0 (nothing flagged) or relabel the version without breaking it.
See SECURITY.md for the threat model.
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
# A manifest is a few KB; a hostile "manifest" of gigabytes is refused after
# reading this much instead of being loaded into memory.
MAX_MANIFEST_BYTES = 1024 * 1024
_HEX64 = frozenset("0123456789abcdef")


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


def _read_bytes(uri: str, limit: Optional[int] = None) -> bytes:
    fs = _filesystems()
    # compression_type: a model path ending in .gz must not be inflated by
    # FileSystems before its hash is checked.
    with fs.open(uri, compression_type="uncompressed") as handle:
        return handle.read() if limit is None else handle.read(limit + 1)


def _write_bytes(uri: str, data: bytes) -> None:
    fs = _filesystems()
    with fs.create(uri) as handle:
        handle.write(data)


def _hmac_hex(data: bytes, key: str) -> str:
    return hmac.new(key.encode("utf-8"), data, hashlib.sha256).hexdigest()


def signed_payload(manifest: Dict[str, Any]) -> bytes:
    """The bytes the manifest HMAC covers: the manifest without its signature, canonical JSON."""
    unsigned = {k: v for k, v in manifest.items() if k != "hmac_sha256"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign_manifest(manifest: Dict[str, Any], key: str) -> Dict[str, Any]:
    """A copy of the manifest with ``hmac_sha256`` set for ``key``."""
    signed = {k: v for k, v in manifest.items() if k != "hmac_sha256"}
    signed["hmac_sha256"] = _hmac_hex(signed_payload(signed), key)
    return signed


def write_manifest(artifact_uri: str, manifest: Dict[str, Any]) -> None:
    _write_bytes(manifest_uri(artifact_uri), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


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
    manifest.setdefault("threshold", float(getattr(model, "threshold", 0.5)))
    key = os.environ.get(HMAC_KEY_ENV)
    if key:
        manifest = sign_manifest(manifest, key)
    _write_bytes(artifact_uri, data)
    write_manifest(artifact_uri, manifest)
    return manifest


def read_manifest(artifact_uri: str) -> Dict[str, Any]:
    uri = manifest_uri(artifact_uri)
    try:
        raw = _read_bytes(uri, limit=MAX_MANIFEST_BYTES)
    except Exception as exc:  # Beam raises several I/O error types per filesystem.
        raise ModelLoadError(f"model manifest {uri} cannot be read (a model is refused without "
                             f"its manifest): {exc}") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ModelLoadError(f"model manifest {uri} is over {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise ModelLoadError(f"model manifest {uri} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ModelLoadError(f"model manifest {uri} is not a JSON object")
    for key in ("version", "sha256", "libraries"):
        if key not in manifest:
            raise ModelLoadError(f"model manifest {uri} has no '{key}'")
    sha = manifest["sha256"]
    if not (isinstance(sha, str) and len(sha) == 64 and set(sha) <= _HEX64):
        raise ModelLoadError(f"model manifest {uri}: 'sha256' is not a lower-case SHA-256 hex digest")
    if not isinstance(manifest["libraries"], dict):
        raise ModelLoadError(f"model manifest {uri}: 'libraries' is not an object")
    if "threshold" in manifest:
        threshold = manifest["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ModelLoadError(f"model manifest {uri}: 'threshold' {threshold!r} is not a number in [0, 1]")
    return manifest


def verify_manifest_signature(manifest: Dict[str, Any], artifact_uri: str, key: str) -> None:
    expected = manifest.get("hmac_sha256")
    if not expected:
        raise ModelLoadError(
            f"model manifest of {artifact_uri} is not signed, but {HMAC_KEY_ENV} is set: "
            "refusing an unsigned model (sign it with the key, or unset the variable)")
    if not (isinstance(expected, str)
            and hmac.compare_digest(expected, _hmac_hex(signed_payload(manifest), key))):
        raise ModelLoadError(
            f"model manifest of {artifact_uri} fails HMAC verification with the key in {HMAC_KEY_ENV}: "
            "it was signed with another key or changed after signing")


def checked_manifest(artifact_uri: str, expected_sha256: Optional[str] = None) -> Dict[str, Any]:
    """The artifact's manifest, its HMAC verified when a key is set and its SHA-256 the pinned one if given.

    The first checks of load_model, also made by a worker that reuses the
    model its launcher already loaded (pipelines/dofns.py).
    """
    manifest = read_manifest(artifact_uri)
    key = os.environ.get(HMAC_KEY_ENV)
    if key:
        verify_manifest_signature(manifest, artifact_uri, key)
    if expected_sha256 is not None and manifest["sha256"] != expected_sha256:
        raise ModelLoadError(
            f"model at {artifact_uri} changed since the run was submitted: manifest SHA-256 "
            f"{manifest['sha256']}, verified at submission {expected_sha256}")
    return manifest


def load_model(uri: Optional[str] = None, expected_sha256: Optional[str] = None) -> LoadedModel:
    """Verify and load an artifact; raises ModelLoadError with the reason.

    Order matters: manifest (and its HMAC when a key is set), then the
    artifact's size and SHA-256, then the scikit-learn version; only then is
    the pickle loaded. ``expected_sha256`` pins the artifact a launcher
    verified at submission, so workers (which may not have the HMAC key in
    their environment) refuse a model swapped between submission and setup.
    """
    artifact_uri = resolve_model_uri(uri)
    manifest = checked_manifest(artifact_uri, expected_sha256)
    size = manifest.get("size_bytes")
    limit = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    try:
        # Read one byte past the declared size: a bigger file fails the hash
        # below without being read whole into memory.
        data = _read_bytes(artifact_uri, limit=limit)
    except Exception as exc:  # Beam raises several I/O error types per filesystem.
        raise ModelLoadError(f"model artifact {artifact_uri} cannot be read: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest["sha256"]:
        raise ModelLoadError(
            f"model artifact {artifact_uri} has SHA-256 {digest}, but its manifest says "
            f"{manifest['sha256']}: refusing to unpickle a file that is not the one trained"
        )
    trained_with = manifest["libraries"].get("scikit-learn")
    if trained_with != sklearn.__version__:
        raise ModelLoadError(
            f"model artifact {artifact_uri} was trained with scikit-learn {trained_with}, "
            f"this environment has {sklearn.__version__}: install scikit-learn=={trained_with} "
            "or retrain the model"
        )
    model = joblib.load(io.BytesIO(data))
    if not callable(getattr(model, "score_pages", None)):
        raise ModelLoadError(
            f"model artifact {artifact_uri} holds a {type(model).__name__}, not a ClaimModel")
    # An artifact pickled by an older version of the model code can unpickle
    # fine and still not fit this code's page features (a feature added or
    # renamed since): refuse it here, with the fix, instead of failing on the
    # first batch inside a worker.
    expected = getattr(model, "_n_page_features", None)
    trained = getattr(getattr(model, "page_model_", None), "n_features_in_", None)
    if callable(expected) and trained is not None and int(trained) != expected():
        raise ModelLoadError(
            f"model artifact {artifact_uri} was trained by another version of the model code: its page model "
            f"takes {trained} features, this code builds {expected()}: retrain it (regenwatch train) "
            "or install the version of regenwatch that trained it")
    fitted_lexicons = getattr(model, "lexicon_sha256_", None)
    if fitted_lexicons is not None:
        from .features import lexicon_fingerprint

        if fitted_lexicons != lexicon_fingerprint():
            raise ModelLoadError(
                f"model artifact {artifact_uri} was fitted with other featurization lexicons (entity or cue "
                "phrase lists) than this code has: it would score features it was not trained on; retrain it "
                "(regenwatch train) or install the version of regenwatch that trained it")
    if "threshold" in manifest:
        model.threshold = float(manifest["threshold"])
    return LoadedModel(model=model, manifest=manifest)
