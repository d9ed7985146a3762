"""Input formats: WARC (.warc, .warc.gz), Avro (schemas/page.avsc), JSON Lines (.gz).

The WARC samples in tests/data/ are written by tests/data/make_sample_warc.py
with warcio's WARCWriter, as crawlers write them: a warcinfo record, a
request, response records with HTML (UTF-8, ISO-8859-1, gzip
Content-Encoding) and text payloads, an image/jpeg, a stylesheet, a redirect
and a metadata record. Only the 2xx HTML/text responses are pages; the rest
are skipped and counted, never dead-lettered. Whatever the format:
pages in = decisions + dead letters.
"""
from __future__ import annotations

import glob
import gzip
import io
import json
import os
import random
import shutil
import types

import fastavro
import pytest
from apache_beam.io.filesystem import FileMetadata

from regenwatch.pipelines.dofns import ReadAvroFileFn, ReadWarcFileFn
from regenwatch.pipelines.moderate import run
from regenwatch.pipelines.pages import Page, decode_payload, iter_warc_pages
from regenwatch.schemas import load_schema
from tests.data import make_sample_warc as sample

DATA = os.path.dirname(os.path.abspath(sample.__file__))
WARC_GZ = os.path.join(DATA, "sample.warc.gz")
WARC = os.path.join(DATA, "sample.warc")
KIND_INDEX = {record[0]: n for n, record in enumerate(sample.RECORDS)}


def expected_id(kind, variant):
    return sample.record_id(KIND_INDEX[kind], variant).strip("<>")


def read_avro(directory, prefix):
    records = []
    for path in sorted(glob.glob(os.path.join(directory, f"{prefix}-*.avro"))):
        with open(path, "rb") as handle:
            records.extend(fastavro.reader(handle))
    return records


# --------------------------------------------------------------------------
# The committed samples


def test_committed_samples_are_what_the_script_writes(tmp_path):
    sample.main([str(tmp_path)])
    for name in ("sample.warc.gz", "sample.warc"):
        assert (tmp_path / name).read_bytes() == open(os.path.join(DATA, name), "rb").read(), (
            f"tests/data/{name} differs from what make_sample_warc.py writes: rerun the script")


@pytest.mark.parametrize("path, variant", [(WARC_GZ, "gz"), (WARC, "plain")])
def test_warc_records_to_pages(path, variant):
    with open(path, "rb") as handle:
        items = list(iter_warc_pages(handle, source=path, size=os.path.getsize(path)))
    pages = [i for i in items if isinstance(i, Page)]
    skipped = [i[1] for i in items if isinstance(i, tuple) and i[0] == "skip"]
    assert [p.id for p in pages] == [expected_id(k, variant) for k in sample.EXPECTED_PAGES]
    assert skipped == ["warcinfo", "request", "image/jpeg", "text/css", "status 301", "metadata"]
    assert len(pages) + len(skipped) == len(sample.RECORDS)
    by_kind = dict(zip(sample.EXPECTED_PAGES, pages))
    html = by_kind["html"]
    assert html.url == "https://clinic.example/exosomes"
    assert html.fetched_at == sample.warc_date(KIND_INDEX["html"])
    assert html.content_type == "text/html" and html.content == sample.CLAIM_HTML
    assert by_kind["text"].content_type == "text/plain" and by_kind["text"].content == sample.PLAIN_TEXT
    assert by_kind["latin1"].content == sample.LATIN1_HTML, "ISO-8859-1 declared in Content-Type"
    assert by_kind["gzip"].content == sample.GZIPPED_HTML, "Content-Encoding: gzip undone"
    assert all(p.source == path for p in pages)


def test_payload_charsets():
    text = "Thérapie à Genève"
    assert decode_payload(text.encode("latin-1"), "ISO-8859-1") == text
    assert decode_payload(text.encode("utf-8")) == text
    meta = b'<html><head><meta charset="windows-1251"></head><body>' + "Стволовые клетки".encode("cp1251")
    assert "Стволовые клетки" in decode_payload(meta)
    assert decode_payload(text.encode("cp1252")) == text, "undeclared legacy pages: windows-1252"
    assert decode_payload(b"ok", "no-such-charset") == "ok"
    assert decode_payload(b"ok", "base64") == "ok", "a non-text codec name is ignored"


def _cut(path, variant, keep):
    """A WARC with its own record ids, cut after ``keep`` of its bytes."""
    full = path + ".full"
    sample.write_sample(full, gzip_records=path.endswith(".gz"), variant=variant)
    data = open(full, "rb").read()
    os.remove(full)
    with open(path, "wb") as handle:
        handle.write(data[:keep(data)])
    return path


def test_truncated_gzip_warc_is_not_silently_short(tmp_path):
    # A gzip member cut short ends warcio's iteration without an error.
    path = _cut(str(tmp_path / "cut.warc.gz"), "cut", lambda d: len(d) // 2)
    with open(path, "rb") as handle:
        items = []
        with pytest.raises(Exception) as info:
            for item in iter_warc_pages(handle, source=path, size=os.path.getsize(path)):
                items.append(item)
    assert type(info.value).__name__ == "WarcReadError" and info.value.stage == "read"
    assert "truncated or corrupt" in str(info.value)
    assert [i.id for i in items if isinstance(i, Page)] == [expected_id(k, "cut") for k in ("html", "text", "latin1")]


def test_truncated_plain_warc_record_is_a_read_error(tmp_path):
    path = _cut(str(tmp_path / "cut.warc"), "cut", lambda d: d.index(b"Parkinson") + 5)
    with open(path, "rb") as handle:
        items = list(iter_warc_pages(handle, source=path, size=os.path.getsize(path)))
    raw, error = items[-1]
    assert error.stage == "read" and "truncated" in str(error)
    assert raw["warc_record_id"] == sample.record_id(KIND_INDEX["html"], "cut")


# --------------------------------------------------------------------------
# Corrupt files never crash a run (fuzzed)


def _process(fn, path):
    readable = types.SimpleNamespace(metadata=FileMetadata(path, os.path.getsize(path)))
    return list(fn.process(readable))


def _fuzz(source, tmp_path, suffix, count, seed):
    rng = random.Random(seed)
    data = open(source, "rb").read()
    for i in range(count):
        corrupt = bytearray(data)
        for _ in range(rng.choice((1, 3, 10))):
            corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        if i % 4 == 0:
            corrupt = corrupt[:rng.randrange(len(corrupt))]
        path = tmp_path / f"fuzz-{i}{suffix}"
        path.write_bytes(bytes(corrupt))
        yield str(path)


def _assert_only_pages_and_dead_letters(outputs):
    for item in outputs:
        if isinstance(item, Page):
            continue
        assert item.tag == "dead_letter", item
        assert item.value["error"] and item.value["stage"] in ("read", "parse")


@pytest.mark.parametrize("source", [WARC_GZ, WARC])
def test_corrupt_warc_files_become_dead_letters(source, tmp_path):
    # Found by this fuzzing: warcio raises AttributeError (not only
    # ArchiveLoadFailed) on some corrupt headers, which crashed the run.
    suffix = ".warc.gz" if source.endswith(".gz") else ".warc"
    for path in _fuzz(source, tmp_path, suffix, count=150, seed=len(suffix)):
        _assert_only_pages_and_dead_letters(_process(ReadWarcFileFn(1 << 20), path))


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_corrupt_avro_files_become_dead_letters(codec, tmp_path):
    # Found by this fuzzing: fastavro raises IndexError, KeyError, zlib.error
    # and SchemaParseException besides ValueError/EOFError.
    source = tmp_path / f"pages-{codec}.avro"
    records = [{"id": f"a{i}", "content": "A page about stem cells. " * 10, "url": None, "fetched_at": None,
                "content_type": None} for i in range(60)]
    with open(source, "wb") as handle:
        fastavro.writer(handle, load_schema("page"), records, codec=codec, sync_interval=1500)
    for path in _fuzz(str(source), tmp_path, ".avro", count=150, seed=7):
        _assert_only_pages_and_dead_letters(_process(ReadAvroFileFn(1 << 20), path))


# --------------------------------------------------------------------------
# All formats through `regenwatch run`


def _write_avro(path, schema, records, **kwargs):
    with open(path, "wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(schema), records, **kwargs)


@pytest.fixture(scope="module")
def formats_run(tmp_path_factory, small_model_uri):
    """One run over every format, good and broken files side by side (threshold 0: all decided pages flagged)."""
    folder = tmp_path_factory.mktemp("formats")
    inputs = folder / "in"
    inputs.mkdir()
    expected = {"pages": 0, "dead": {}}

    def dead(stage, n=1):
        expected["dead"][stage] = expected["dead"].get(stage, 0) + n

    # WARC, both compressions: 5 pages each, one of them empty (dead at normalize).
    shutil.copy(WARC_GZ, inputs / "crawl-a.warc.gz")
    shutil.copy(WARC, inputs / "crawl-b.warc")
    expected["pages"] += 2 * len(sample.EXPECTED_PAGES)
    dead("normalize", 2)
    # A WARC cut mid-file: 3 pages, then one read dead letter for the rest.
    _cut(str(inputs / "crawl-c.warc.gz"), "cut", lambda d: len(d) // 2)
    expected["pages"] += 3 + 1
    dead("read")
    # Avro of schemas/page.avsc: 3 pages and 2 records that are not valid pages.
    avro_pages = [
        {"id": "avro-1", "content": "Our exosome therapy cures arthritis with no side effects.",
         "url": "https://a.example/1", "fetched_at": "2026-11-20T08:00:00Z", "content_type": "text/plain"},
        {"id": "avro-2", "content": "<p>The FDA warns that no stem cell product is approved for autism.</p>",
         "url": "https://a.example/2", "fetched_at": None, "content_type": "text/html"},
        {"id": "avro-3", "content": "Stem cells are studied in clinical trials.", "url": None,
         "fetched_at": None, "content_type": None},
        {"id": "avro-bad-empty", "content": "   \n ", "url": None, "fetched_at": None, "content_type": None},
        {"id": "avro-bad-type", "content": "%PDF-1.7", "url": None, "fetched_at": None,
         "content_type": "application/pdf"},
    ]
    _write_avro(inputs / "pages.avro", load_schema("page"), avro_pages)
    expected["pages"] += 5
    dead("parse", 2)
    # Avro with another schema: id is a long. Every record is a parse dead letter.
    other = {"type": "record", "name": "Other", "fields": [{"name": "id", "type": "long"},
                                                           {"name": "content", "type": "string"}]}
    _write_avro(inputs / "other-schema.avro", other, [{"id": 1, "content": "x"}, {"id": 2, "content": "y"}])
    expected["pages"] += 2
    dead("parse", 2)
    # Avro cut inside its second block: the first block's 10 pages, then one read dead letter.
    buf = io.BytesIO()
    fastavro.writer(buf, load_schema("page"), [
        {"id": f"blk-{i}", "content": f"Page {i} about regenerative medicine research.", "url": None,
         "fetched_at": None, "content_type": None} for i in range(40)], sync_interval=400)
    blocks = list(fastavro.block_reader(io.BytesIO(buf.getvalue())))
    first_block = blocks[0].num_records
    (inputs / "cut.avro").write_bytes(buf.getvalue()[:blocks[1].offset + 20])
    expected["pages"] += first_block + 1
    dead("read")
    # Not Avro at all, and a file of no known format.
    (inputs / "garbage.avro").write_bytes(b"this is not an avro container")
    (inputs / "notes.txt").write_text("a file of no known format")
    expected["pages"] += 2
    dead("read", 2)
    # JSON Lines, gzipped.
    with gzip.open(inputs / "pages.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "jl-1", "content": "PRP injections regrow cartilage in every knee."}) + "\n")
        handle.write("\n")  # a blank line is not a page
        handle.write(json.dumps({"id": "jl-2", "content": "Ask your doctor about approved treatments."}) + "\n")
    expected["pages"] += 2

    out = folder / "out"
    result = run(["--input", str(inputs / "*"), "--output", str(out), "--model", small_model_uri,
                  "--threshold", "0"])
    return out, result, expected, first_block


def test_every_format_pages_in_equal_decisions_plus_dead_letters(formats_run):
    out, result, expected, _ = formats_run
    decisions, dead = read_avro(out, "decisions"), read_avro(out, "deadletter")
    marker = json.load(open(out / "_SUCCESS"))
    assert result.summary.pages_read == expected["pages"] == marker["counts"]["pages_read"]
    assert len(decisions) + len(dead) == expected["pages"]
    by_stage = {}
    for record in dead:
        by_stage[record["stage"]] = by_stage.get(record["stage"], 0) + 1
        assert record["error"], record
    assert by_stage == expected["dead"]
    # Non-pages: 6 per complete WARC, 2 before the cut in the third.
    assert marker["counters"]["warc_records_not_pages"] == 6 + 6 + 2


def test_warc_pages_keep_record_id_url_and_date(formats_run):
    out, _, _, _ = formats_run
    flagged = {f["id"]: f for f in read_avro(out, "flagged")}
    for variant in ("gz", "plain"):
        for kind in ("html", "text", "latin1", "gzip"):
            record = flagged[expected_id(kind, variant)]
            n = KIND_INDEX[kind]
            assert record["url"] == sample.RECORDS[n][2]
            assert record["fetched_at"] == sample.warc_date(n)
    for kind in ("html", "text", "latin1"):
        assert expected_id(kind, "cut") in flagged
    dead = read_avro(out, "deadletter")
    empty = [d for d in dead if d["stage"] == "normalize"]
    assert sorted(d["id"] for d in empty) == sorted(expected_id("empty", v) for v in ("gz", "plain"))
    cut = [d for d in dead if d["source"] and d["source"].endswith("crawl-c.warc.gz")]
    assert len(cut) == 1 and "truncated or corrupt" in cut[0]["error"]


def test_avro_and_jsonl_records(formats_run):
    out, _, _, first_block = formats_run
    decided = {d["id"] for d in read_avro(out, "decisions")}
    assert {"avro-1", "avro-2", "avro-3", "jl-1", "jl-2"} <= decided
    assert {f"blk-{i}" for i in range(first_block)} <= decided
    assert not {f"blk-{i}" for i in range(first_block, 40)} & decided
    dead = read_avro(out, "deadletter")
    reasons = {json.loads(d["raw"]).get("id"): d["error"] for d in dead
               if d["stage"] == "parse" and d["raw"].startswith("{")}
    assert "empty or whitespace" in reasons["avro-bad-empty"]
    assert "unsupported content_type 'application/pdf'" in reasons["avro-bad-type"]
    assert "'id' must be a non-empty string, got int" in reasons[1]
    unsupported = [d for d in dead if d["source"] and d["source"].endswith("notes.txt")]
    assert len(unsupported) == 1 and "unsupported file extension" in unsupported[0]["error"]
