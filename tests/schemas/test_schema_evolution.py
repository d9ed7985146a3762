"""Schema evolution: data written today stays readable by yesterday's readers.

``schemas/history/<name>.v<N>.avsc`` is each schema exactly as released at
``regenwatch_schema_version`` N; history files are never edited. The rules
enforced here:

* The current schema's version is the latest history version or one more.
* While the version is unchanged, the current schema must resolve both ways
  against the released one (Avro schema resolution, fastavro): files written
  now are read by the released reader, and files written by the released
  writer are read now (new fields need defaults for that).
* A change that breaks either direction therefore fails here until the
  version is bumped; the released file stays in history so the break is
  deliberate and visible.

Records are generated from the schemas themselves, so a field added later
(``cluster_id``/``cluster_size`` with defaults, say) is covered without
editing this file.
"""
from __future__ import annotations

import copy
import datetime
import glob
import io
import json
import os
import re

import fastavro
import pytest

from regenwatch.schemas import SCHEMA_NAMES, load_schema_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HISTORY = os.path.join(REPO, "schemas", "history")
_HISTORY_NAME = re.compile(r"^(?P<name>[a-z]+)\.v(?P<version>\d+)\.avsc$")


def history_versions(name):
    """{version: schema json} of the released versions of a schema."""
    found = {}
    for path in glob.glob(os.path.join(HISTORY, f"{name}.v*.avsc")):
        m = _HISTORY_NAME.match(os.path.basename(path))
        assert m, f"unexpected file name in schemas/history: {path}"
        with open(path, encoding="utf-8") as handle:
            found[int(m.group("version"))] = json.load(handle)
    return found


# --------------------------------------------------------------------------
# Records generated from a schema


def _named_types(schema, names=None):
    names = {} if names is None else names
    if isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            names[schema["name"]] = schema
            if "namespace" in schema:
                names[f"{schema['namespace']}.{schema['name']}"] = schema
        for field in schema.get("fields", []):
            _named_types(field["type"], names)
        for key in ("items", "values"):
            if key in schema:
                _named_types(schema[key], names)
    elif isinstance(schema, list):
        for branch in schema:
            _named_types(branch, names)
    return names


def sample_value(schema, names, full=True):
    """A valid datum: ``full`` fills every optional part, otherwise the minimum."""
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"] if full else schema
        return sample_value(branches[0] if branches else "null", names, full)
    if isinstance(schema, str):
        if schema in names:
            return sample_value(names[schema], names, full)
        return {
            "null": None, "boolean": True, "int": 7, "long": 1_700_000_000_000, "float": 0.5,
            "double": 0.25, "bytes": b"\x00b", "string": "s",
        }[schema]
    kind = schema["type"]
    if schema.get("logicalType") == "timestamp-millis":
        # fastavro reads timestamp-millis back as an aware datetime.
        return datetime.datetime(2026, 11, 22, 1, 2, 3, 456000, tzinfo=datetime.timezone.utc)
    if kind == "record":
        return {f["name"]: sample_value(f["type"], names, full) for f in schema["fields"]}
    if kind == "array":
        return [sample_value(schema["items"], names, full)] if full else []
    if kind == "map":
        return {"k": sample_value(schema["values"], names, full)} if full else {}
    if kind == "enum":
        return schema["symbols"][0]
    if kind == "fixed":
        return b"\x01" * schema["size"]
    return sample_value(kind, names, full)


def expected_after_resolution(datum, writer, reader, w_names, r_names):
    """What an Avro reader with ``reader`` schema must return for ``datum`` written with ``writer``."""
    if isinstance(reader, str) and reader in r_names:
        reader = r_names[reader]
    if isinstance(writer, str) and writer in w_names:
        writer = w_names[writer]
    if isinstance(reader, dict) and reader.get("type") == "record" and isinstance(datum, dict):
        w_fields = {f["name"]: f for f in writer["fields"]} if isinstance(writer, dict) else {}
        out = {}
        for field in reader["fields"]:
            if field["name"] in w_fields:
                out[field["name"]] = expected_after_resolution(
                    datum[field["name"]], w_fields[field["name"]]["type"], field["type"], w_names, r_names)
            else:
                out[field["name"]] = copy.deepcopy(field["default"])
        return out
    if isinstance(reader, dict) and reader.get("type") == "array" and isinstance(datum, list):
        w_items = writer["items"] if isinstance(writer, dict) else writer
        return [expected_after_resolution(v, w_items, reader["items"], w_names, r_names) for v in datum]
    if isinstance(reader, list) and isinstance(writer, list) and datum is not None:
        # A union: resolve against the first non-null branch of each side.
        w_branch = next(b for b in writer if b != "null")
        r_branch = next(b for b in reader if b != "null")
        return expected_after_resolution(datum, w_branch, r_branch, w_names, r_names)
    return datum


def resolution_problems(writer, reader):
    """Problems reading data written with ``writer`` using ``reader`` (empty list: compatible)."""
    w_names, r_names = _named_types(writer), _named_types(reader)
    problems = []
    for full in (True, False):
        datum = sample_value(writer, w_names, full)
        buf = io.BytesIO()
        fastavro.writer(buf, fastavro.parse_schema(copy.deepcopy(writer)), [datum])
        buf.seek(0)
        try:
            [got] = list(fastavro.reader(buf, reader_schema=fastavro.parse_schema(copy.deepcopy(reader))))
        except Exception as exc:  # fastavro raises several resolution error types
            problems.append(f"{'full' if full else 'minimal'} record: {type(exc).__name__}: {exc}")
            continue
        want = expected_after_resolution(datum, writer, reader, w_names, r_names)
        if got != want:
            problems.append(f"{'full' if full else 'minimal'} record read back as {got!r}, expected {want!r}")
    return problems


# --------------------------------------------------------------------------
# The policy on the real schemas


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_history_files_are_released_versions(name):
    versions = history_versions(name)
    assert versions, f"schemas/history has no released version of {name}: snapshot it as {name}.v1.avsc"
    for version, schema in versions.items():
        assert schema.get("regenwatch_schema_version") == version, f"{name}.v{version}.avsc says otherwise"
        fastavro.parse_schema(copy.deepcopy(schema))


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_current_schema_version_follows_history(name):
    current = load_schema_json(name)["regenwatch_schema_version"]
    latest = max(history_versions(name))
    assert current in (latest, latest + 1), (
        f"{name}.avsc is at version {current} but the latest released version is {latest}: "
        f"a release snapshots schemas/{name}.avsc as schemas/history/{name}.v{current}.avsc")


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_old_readers_read_current_data(name):
    """Files written now are readable with every released reader schema of the same version."""
    current = load_schema_json(name)
    for version, old in sorted(history_versions(name).items()):
        if version != current["regenwatch_schema_version"]:
            continue  # an earlier major version: breaking on purpose (the bump said so)
        problems = resolution_problems(writer=current, reader=old)
        assert not problems, (
            f"schemas/{name}.avsc breaks readers of released v{version}: {problems}. Make the change "
            f"compatible (new fields need defaults; no removals or type changes) or bump "
            f"regenwatch_schema_version to {version + 1} and keep schemas/history/{name}.v{version}.avsc")


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_current_reader_reads_released_data(name):
    """Files written by a released version are readable now (new fields take their defaults)."""
    current = load_schema_json(name)
    for version, old in sorted(history_versions(name).items()):
        if version != current["regenwatch_schema_version"]:
            continue
        problems = resolution_problems(writer=old, reader=current)
        assert not problems, (
            f"schemas/{name}.avsc cannot read files written with released v{version}: {problems}. "
            "Give every new field a default, or bump the version")


# --------------------------------------------------------------------------
# The checker itself must catch breaking changes and accept compatible ones


def _decision():
    return load_schema_json("decision")


def _with_fields(schema, fields):
    changed = copy.deepcopy(schema)
    changed["fields"] = fields
    return changed


def test_checker_accepts_an_added_field_with_default_both_ways():
    old = _decision()
    new = _with_fields(old, old["fields"] + [
        {"name": "cluster_id", "type": ["null", "string"], "default": None},
        {"name": "cluster_size", "type": "int", "default": 1},
    ])
    assert resolution_problems(writer=new, reader=old) == []
    assert resolution_problems(writer=old, reader=new) == []


def test_checker_refuses_a_removed_required_field():
    old = _decision()
    new = _with_fields(old, [f for f in old["fields"] if f["name"] != "score"])
    assert resolution_problems(writer=new, reader=old), "old readers need 'score', which has no default"


def test_checker_refuses_a_type_change():
    old = _decision()
    new = _with_fields(old, [dict(f, type="long") if f["name"] == "id" else f for f in old["fields"]])
    assert resolution_problems(writer=new, reader=old)


def test_checker_refuses_a_new_field_without_default_for_old_data():
    old = _decision()
    new = _with_fields(old, old["fields"] + [{"name": "reviewer", "type": "string"}])
    assert resolution_problems(writer=new, reader=old) == []  # old readers skip it
    assert resolution_problems(writer=old, reader=new), "old files have no 'reviewer' and there is no default"

