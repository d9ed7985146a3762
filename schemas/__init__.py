"""Avro schemas of regenwatch's inputs and outputs, loaded from the .avsc files here.

Each schema carries ``regenwatch_schema_version``; a change that old readers
cannot resolve must bump it (tests/schemas checks compatibility).
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any, Dict

import fastavro

SCHEMA_NAMES = ("page", "flagged", "decision", "deadletter", "verdict")
_DIR = os.path.dirname(os.path.abspath(__file__))


def schema_path(name: str) -> str:
    if name not in SCHEMA_NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    return os.path.join(_DIR, f"{name}.avsc")


def load_schema_json(name: str) -> Dict[str, Any]:
    with open(schema_path(name), encoding="utf-8") as handle:
        return json.load(handle)


@lru_cache(maxsize=None)
def _parsed(name: str):
    return fastavro.parse_schema(load_schema_json(name))


def load_schema(name: str):
    """Parsed (validated) fastavro schema; raises SchemaParseException if malformed."""
    return _parsed(name)


def schema_version(name: str) -> int:
    return int(load_schema_json(name)["regenwatch_schema_version"])
