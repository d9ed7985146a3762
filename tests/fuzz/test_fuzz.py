"""Fuzzing that searches: hostile JSON and mutated files through the pipeline's per-record path.

The property, for every example: no exception escapes the per-record code
(tests/fuzz/harness.py runs the pipeline's DoFns in order), every record
that comes out encodes with its Avro schema, and inputs = decided + dead.

This is the bounded campaign (a few seconds). ``REGENWATCH_FUZZ_EXAMPLES``
sets the examples per property; the long campaign is
``bench/fuzz_campaign.py`` (figures in docs/ROBUSTNESS.md).
"""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import strategies as hs
from tests.fuzz.harness import Harness

EXAMPLES = int(os.environ.get("REGENWATCH_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def harness(small_model_uri):
    return Harness(small_model_uri)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("fuzz-seeds"))
    return folder, hs.seed_files(folder)


def _check(outcome, expected_inputs=None):
    assert outcome.balanced, outcome
    if expected_inputs is not None:
        assert outcome.inputs == expected_inputs, outcome


@FUZZ
@given(line=hs.json_line())
def test_any_line_is_decided_or_dead(harness, line):
    outcome = harness.line(line)
    _check(outcome, expected_inputs=0 if not line.strip() else 1)


@FUZZ
@given(**hs.GOOD_PAGE)
def test_a_good_page_is_always_decided(harness, text, page_id, how):
    outcome = harness.line(hs.good_page_line(text, page_id, how))
    assert outcome.decided == 1, outcome.errors


def _mutated_file_property(kind):
    @FUZZ
    @given(data=st.data())
    def check(harness, seeds, data):
        folder, paths = seeds
        original = open(paths[kind], "rb").read()
        corrupt = data.draw(hs.mutated(original))
        path = os.path.join(folder, "mutant-" + kind)
        with open(path, "wb") as handle:
            handle.write(corrupt)
        _check(harness.file(path))
    return check


test_mutated_jsonl = _mutated_file_property("seed.jsonl")
test_mutated_jsonl_gz = _mutated_file_property("seed.jsonl.gz")
test_mutated_avro = _mutated_file_property("seed-null.avro")
test_mutated_avro_deflate = _mutated_file_property("seed-deflate.avro")
test_mutated_warc = _mutated_file_property("sample.warc")
test_mutated_warc_gz = _mutated_file_property("sample.warc.gz")


GOOD_LINES = [json.dumps({"id": f"g{i}", "content": f"Stem cell clinic page {i}: exosomes heal joints."}).encode()
              + b"\n" for i in range(40)]


@FUZZ
@given(cut=st.floats(0, 1), members=st.lists(st.integers(1, 39), max_size=5))
def test_a_cut_gzip_keeps_every_page_before_the_cut(harness, seeds, cut, members):
    """Every page whose line the standard library can inflate before the cut is decided."""
    folder, _ = seeds
    data = hs.gzip_members(GOOD_LINES, members)
    data = data[:int(cut * len(data))]
    path = os.path.join(folder, "cut.jsonl.gz")
    with open(path, "wb") as handle:
        handle.write(data)
    reference = hs.stdlib_gunzip_prefix(data)
    expected = [json.loads(line)["id"] for line in reference.split(b"\n")[:-1]]
    outcome = harness.jsonl_file(path)
    _check(outcome)
    assert outcome.decided_ids[:len(expected)] == expected, (outcome.decided_ids, expected)
