"""One run over a mix of every hostile kind of issue 15 (tests/data/hostile.py), through ``run(argv)``.

It must exit 0 (published, no problem), account for every input (pages in
= decisions + dead letters, checked by the run on the records written),
decide every good page, and give every dead letter a stage and a reason.
Peak RSS and time per page are measured by bench/hostile_mix.py at full
size (a 1 GiB gzipped line, 5 MiB pathological pages), not here.
"""
from __future__ import annotations

import glob
import json
import os
from collections import Counter

import fastavro

from regenwatch.cli import main as cli_main
from tests.data.hostile import write_hostile_mix


def _records(folder, prefix):
    out = []
    for path in sorted(glob.glob(os.path.join(folder, f"{prefix}-*.avro"))):
        with open(path, "rb") as handle:
            out.extend(fastavro.reader(handle))
    return out


def test_a_run_over_every_hostile_kind_exits_0_and_loses_nothing(tmp_path, small_model_uri, capsys):
    folder = str(tmp_path / "in")
    mix = write_hostile_mix(folder)
    code = cli_main(["run", "--input", os.path.join(folder, "*"), "--output", str(tmp_path / "out"),
                     "--run_id", "hostile", "--model", small_model_uri])
    err = capsys.readouterr().err
    assert code == 0, err[-4000:]
    run_dir = str(tmp_path / "out" / "hostile")
    marker = json.load(open(os.path.join(run_dir, "_SUCCESS")))
    decisions, dead = _records(run_dir, "decisions"), _records(run_dir, "deadletter")
    assert marker["status"] == "complete" and not marker["problems"]
    assert marker["counts"]["pages_read"] == len(decisions) + len(dead)
    assert marker["counts"]["pages_read"] >= mix.inputs
    decided = {d["id"] for d in decisions}
    assert set(mix.good_ids) <= decided, sorted(set(mix.good_ids) - decided)
    for record in dead:
        assert record["stage"] in ("read", "parse", "normalize", "score", "encode", "duplicate"), record
        assert record["error"]
    errors = " | ".join(d["error"] for d in dead)
    for reason in ("nested deeper than the parser's limit", "Exceeds the limit", "lone surrogate",
                   "--max_id_chars", "--max_url_chars", "--max_title_chars", "--max_content_type_chars",
                   "--max_fetched_at_chars", "not valid UTF-8", "--max_expansion_ratio", "far over the page cap",
                   "DecompressionLimit", "--max_page_work", "unsupported file extension"):
        assert reason in errors, reason
    refused = {d["id"] for d in dead if "--max_page_work" in d["error"]}
    assert refused == {"patho-deep-div", "patho-attributes", "patho-select", "patho-nested-lists", "patho-reopened"}
    assert {"patho-giant-word", "patho-no-breaks", "patho-dots", "patho-nested-10k", "patho-spaced"} <= decided
    stages = Counter(d["stage"] for d in dead)
    print(f"\nhostile mix: {marker['counts']['pages_read']} inputs, {len(decisions)} decided "
          f"({len(mix.good_ids)} good, all decided), {len(dead)} dead letters by stage {dict(stages)}")
