"""Shared fixtures: small REAL models trained in a temp dir, sample pages."""
from __future__ import annotations

import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_INPUT = os.path.join(REPO, "training", "samples", "seed_pages.jsonl")


def read_jsonl(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="session")
def seed_rows():
    return read_jsonl(SEED_INPUT)


@pytest.fixture(scope="session")
def small_model_uri(tmp_path_factory):
    """A small real ClaimModel (train pages subset + labeled sentences), saved with a manifest."""
    from regenwatch.models.artifact import save_model
    from regenwatch.models.classifier import ClaimModel
    from regenwatch.training.data_io import load_sample_set

    sample = load_sample_set()
    pages = sample.pages[:120]
    model = ClaimModel(n_inner_folds=3, threshold=0.5).fit(
        [p["text"] for p in pages], [p["label"] for p in pages],
        evidence=[p.get("evidence") or [] for p in pages], kinds=[p.get("kind") for p in pages],
        extra_sentences=sample.sentences[::2])
    path = str(tmp_path_factory.mktemp("model") / "small.joblib")
    save_model(model, path, {"version": "test-small", "threshold": 0.5})
    return path
