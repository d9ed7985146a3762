"""Model artifact safety: verify before unpickling, refuse clearly, exit non-zero.

joblib is pickle and unpickling runs code. Every refusal below is checked
twice: ``load_model`` raises ModelLoadError with a reason a person can act
on, and ``regenwatch run`` exits 1 without writing outputs. The canary
artifact proves the order: its pickle creates a marker file when (and only
when) it is unpickled.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import joblib
import pytest

from regenwatch.cli import main as cli_main
from regenwatch.models.artifact import (
    HMAC_KEY_ENV,
    ModelLoadError,
    load_model,
    manifest_uri,
    read_manifest,
    sign_manifest,
    write_manifest,
)
from tests.conftest import SEED_INPUT

KEY = "correct horse battery staple"


@pytest.fixture(autouse=True)
def no_key_from_outside(monkeypatch):
    # A key in the developer's environment would change what these tests mean.
    monkeypatch.delenv(HMAC_KEY_ENV, raising=False)


@pytest.fixture
def model_copy(small_model_uri, tmp_path):
    """A private copy of the small real model and its manifest."""
    path = tmp_path / "model" / "m.joblib"
    path.parent.mkdir()
    shutil.copy(small_model_uri, path)
    shutil.copy(manifest_uri(small_model_uri), manifest_uri(str(path)))
    return str(path)


def _edit_manifest(artifact, **changes):
    manifest = read_manifest(artifact)
    manifest.update(changes)
    write_manifest(artifact, manifest)
    return manifest


def run_cli(model, out, capsys):
    """``regenwatch run`` in-process: (exit code, stderr)."""
    code = cli_main(["run", "--input", SEED_INPUT, "--output", str(out), "--model", model])
    return code, capsys.readouterr().err


def assert_refused(model, out, capsys, *phrases):
    with pytest.raises(ModelLoadError) as info:
        load_model(model)
    message = str(info.value)
    for phrase in phrases:
        assert phrase in message, message
    code, err = run_cli(model, out, capsys)
    assert code == 1, err
    assert "model refused" in err and phrases[0] in err
    # Refused at submission: nothing was written where a reader would look.
    assert not os.path.exists(out) or not os.listdir(out)
    return message


# --------------------------------------------------------------------------
# Refusals


def test_intact_model_loads(model_copy):
    loaded = load_model(model_copy)
    assert loaded.version == "test-small"
    assert callable(loaded.model.score_pages)


def test_one_changed_byte_is_refused(model_copy, tmp_path, capsys):
    data = bytearray(open(model_copy, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(model_copy, "wb").write(bytes(data))
    assert_refused(model_copy, tmp_path / "out", capsys, "SHA-256", "refusing to unpickle")


def test_appended_bytes_are_refused(model_copy, tmp_path, capsys):
    with open(model_copy, "ab") as handle:
        handle.write(b"\x00")
    assert_refused(model_copy, tmp_path / "out", capsys, "SHA-256")


def test_missing_manifest_is_refused(model_copy, tmp_path, capsys):
    os.remove(manifest_uri(model_copy))
    assert_refused(model_copy, tmp_path / "out", capsys, "manifest", "cannot be read")


@pytest.mark.parametrize("manifest_text, phrase", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"version": "x", "libraries": {}}', "has no 'sha256'"),
    ('{"version": "x", "sha256": "abc", "libraries": {}}', "not a lower-case SHA-256"),
])
def test_malformed_manifest_is_refused(model_copy, tmp_path, capsys, manifest_text, phrase):
    with open(manifest_uri(model_copy), "w") as handle:
        handle.write(manifest_text)
    assert_refused(model_copy, tmp_path / "out", capsys, phrase)


def test_threshold_outside_unit_interval_is_refused(model_copy, tmp_path, capsys):
    _edit_manifest(model_copy, threshold=7)
    assert_refused(model_copy, tmp_path / "out", capsys, "'threshold'")


def test_scikit_learn_version_mismatch_is_refused(model_copy, tmp_path, capsys):
    manifest = read_manifest(model_copy)
    _edit_manifest(model_copy, libraries={**manifest["libraries"], "scikit-learn": "0.24.2"})
    message = assert_refused(model_copy, tmp_path / "out", capsys, "scikit-learn 0.24.2")
    assert "install scikit-learn==0.24.2 or retrain" in message


def test_artifact_from_other_model_code_is_refused(model_copy, tmp_path, capsys):
    """A model whose page model takes other features than this code builds is refused at load, not mid-run."""
    loaded = load_model(model_copy)
    model = loaded.model
    model.page_cues = not model.page_cues  # as if pickled by code with or without the page cues
    stale = str(tmp_path / "stale" / "m.joblib")
    os.makedirs(os.path.dirname(stale))
    from regenwatch.models.artifact import save_model

    save_model(model, stale, {"version": "stale", "threshold": 0.5})
    assert_refused(stale, tmp_path / "out", capsys, "another version of the model code", "retrain")


def test_artifact_fitted_with_other_lexicons_is_refused(model_copy, tmp_path, capsys, monkeypatch):
    """Cue and entity phrase lists are code: a model fitted with other lists would be served skewed features."""
    from regenwatch.models import features

    assert load_model(model_copy).model.lexicon_sha256_ == features.lexicon_fingerprint()
    monkeypatch.setattr(features, "_CLAIM_CUES", features._CLAIM_CUES + (("extra", "miracle"),))
    assert_refused(model_copy, tmp_path / "out", capsys, "other featurization lexicons", "retrain")


def test_missing_artifact_is_refused(model_copy, tmp_path, capsys):
    os.remove(model_copy)
    assert_refused(model_copy, tmp_path / "out", capsys, "cannot be read")


def test_pinned_digest_refuses_a_model_swapped_after_submission(model_copy):
    manifest = read_manifest(model_copy)
    assert load_model(model_copy, expected_sha256=manifest["sha256"]).version == "test-small"
    with pytest.raises(ModelLoadError, match="changed since the run was submitted"):
        load_model(model_copy, expected_sha256="0" * 64)


# --------------------------------------------------------------------------
# HMAC signing (key from the environment)


def _sign(artifact, key=KEY):
    write_manifest(artifact, sign_manifest(read_manifest(artifact), key))


def test_signed_model_loads_with_its_key_and_runs(model_copy, tmp_path, monkeypatch, capsys):
    _sign(model_copy)
    monkeypatch.setenv(HMAC_KEY_ENV, KEY)
    assert load_model(model_copy).version == "test-small"
    code, err = run_cli(model_copy, tmp_path / "out", capsys)
    assert code == 0, err
    assert any(name.startswith("decisions-") for name in os.listdir(tmp_path / "out"))


def test_signed_model_without_a_key_still_verifies_its_hash(model_copy):
    # No key configured: the signature is not checked, the SHA-256 still is.
    _sign(model_copy)
    assert load_model(model_copy).version == "test-small"


def test_wrong_key_is_refused(model_copy, tmp_path, monkeypatch, capsys):
    _sign(model_copy, key="another key")
    monkeypatch.setenv(HMAC_KEY_ENV, KEY)
    assert_refused(model_copy, tmp_path / "out", capsys, "fails HMAC verification")


def test_unsigned_model_is_refused_when_a_key_is_set(model_copy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(HMAC_KEY_ENV, KEY)
    assert_refused(model_copy, tmp_path / "out", capsys, "not signed")


def test_signature_covers_the_threshold(model_copy, tmp_path, monkeypatch, capsys):
    # Raising the threshold to 1.0 would silence the reviewer queue without
    # touching the artifact bytes; the manifest signature must catch it.
    _sign(model_copy)
    manifest = json.load(open(manifest_uri(model_copy)))
    manifest["threshold"] = 1.0
    with open(manifest_uri(model_copy), "w") as handle:
        json.dump(manifest, handle)
    monkeypatch.setenv(HMAC_KEY_ENV, KEY)
    assert_refused(model_copy, tmp_path / "out", capsys, "fails HMAC verification")


def test_save_model_signs_when_a_key_is_set(small_model_uri, tmp_path, monkeypatch):
    from regenwatch.models.artifact import save_model

    model = load_model(small_model_uri).model
    monkeypatch.setenv(HMAC_KEY_ENV, KEY)
    path = str(tmp_path / "signed.joblib")
    manifest = save_model(model, path, {"version": "signed"})
    assert len(manifest["hmac_sha256"]) == 64
    assert load_model(path).version == "signed"
    monkeypatch.setenv(HMAC_KEY_ENV, "rotated key")
    with pytest.raises(ModelLoadError, match="HMAC"):
        load_model(path)


# --------------------------------------------------------------------------
# Nothing is unpickled before verification


class Canary:
    """Unpickling this calls open(marker, 'w'): the marker file proves it ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def canary(model_copy, tmp_path):
    """An artifact whose pickle would create ``marker``, with a manifest that matches its bytes."""
    import hashlib

    marker = tmp_path / "unpickled.marker"
    joblib.dump(Canary(str(marker)), model_copy)
    data = open(model_copy, "rb").read()
    _edit_manifest(model_copy, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    return model_copy, marker


def test_canary_control_unpickling_a_verified_artifact_does_run_it(canary):
    # The control: the marker mechanism works, so its absence below means
    # the pickle was never loaded. A verified non-model is refused after.
    artifact, marker = canary
    with pytest.raises(ModelLoadError, match="not a ClaimModel"):
        load_model(artifact)
    assert marker.exists()


@pytest.mark.parametrize("attack", ["tampered", "sklearn", "no_manifest", "unsigned", "wrong_key", "pinned"])
def test_canary_is_never_unpickled_when_verification_fails(canary, monkeypatch, attack):
    artifact, marker = canary
    expected = None
    if attack == "tampered":
        with open(artifact, "ab") as handle:
            handle.write(b" ")
    elif attack == "sklearn":
        manifest = read_manifest(artifact)
        _edit_manifest(artifact, libraries={**manifest["libraries"], "scikit-learn": "1.0"})
    elif attack == "no_manifest":
        os.remove(manifest_uri(artifact))
    elif attack == "unsigned":
        monkeypatch.setenv(HMAC_KEY_ENV, KEY)
    elif attack == "wrong_key":
        _sign(artifact, key="attacker's key")
        monkeypatch.setenv(HMAC_KEY_ENV, KEY)
    elif attack == "pinned":
        expected = "f" * 64
    with pytest.raises(ModelLoadError):
        load_model(artifact, expected_sha256=expected)
    assert not marker.exists(), f"{attack}: the pickle was loaded before verification failed"


def test_console_script_exits_non_zero_on_a_tampered_model(model_copy, tmp_path):
    """The real process exit status, as a scheduler sees it."""
    with open(model_copy, "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    script = os.path.join(os.path.dirname(sys.executable), "regenwatch")
    cmd = [script] if os.path.exists(script) else [sys.executable, "-m", "regenwatch.cli"]
    env = {k: v for k, v in os.environ.items() if k != HMAC_KEY_ENV}
    proc = subprocess.run(cmd + ["run", "--input", SEED_INPUT, "--output", str(tmp_path / "out"),
                                 "--model", model_copy],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "model refused" in proc.stderr and "SHA-256" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_worker_never_unpickles_a_model_swapped_after_submission(canary, small_model_uri, tmp_path):
    """The launcher verified one model; the model path now holds another (consistent with its own
    manifest, so a worker without the HMAC key would accept it). Workers load the pinned digest or nothing."""
    import apache_beam as beam

    from regenwatch.pipelines.moderate import build_pipeline, make_options
    from regenwatch.pipelines.options import RegenwatchOptions

    artifact, marker = canary
    verified_at_submission = read_manifest(small_model_uri)["sha256"]
    options = make_options(["--input", SEED_INPUT, "--output", str(tmp_path / "out"), "--model", artifact])
    with pytest.raises(Exception, match="changed since the run was submitted"):
        with beam.Pipeline(options=options) as p:
            build_pipeline(p, options.view_as(RegenwatchOptions), model_sha256=verified_at_submission)
    assert not marker.exists()
