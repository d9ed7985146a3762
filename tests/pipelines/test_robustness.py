"""Issue 15: any input, whatever it holds, never fails a run or exhausts memory.

One test (or more) per point: per-record isolation, Avro-valid outputs,
encodings, bounded decompression, the per-page work budget, record limits
and their options. The fuzzing is tests/fuzz/; the whole-run mix of every
hostile kind is tests/pipelines/test_hostile_mix.py.
"""
from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import tracemalloc
import types
import zlib

import apache_beam as beam
import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from apache_beam.io.filesystem import FileMetadata

from regenwatch.pipelines import pages as pages_module
from regenwatch.pipelines.bounded import (
    DecompressionLimit,
    ExpansionGuard,
    GunzipReader,
    avro_guard,
    install_bounded_avro_codecs,
    sniff_bom,
)
from regenwatch.pipelines.dofns import (
    NormalizeFn,
    ParseJsonLineFn,
    ReadAvroFileFn,
    ReadJsonlRangeFn,
    ReadWarcFileFn,
    ScoreBatchFn,
    check_page_work,
)
from regenwatch.pipelines.pagecost import DEFAULT_MAX_PAGE_WORK, TEXT_UNITS, page_work
from regenwatch.pipelines.pages import Page, RecordLimits, dead_letter, page_from_json_line
from regenwatch.schemas import load_schema

DEAD_LETTER_SCHEMA = fastavro.parse_schema(load_schema("deadletter"))


def encode(record, schema=DEAD_LETTER_SCHEMA):
    fastavro.schemaless_writer(io.BytesIO(), schema, record)


def split(outputs):
    outputs = list(outputs)
    good = [o for o in outputs if not isinstance(o, beam.pvalue.TaggedOutput)]
    dead = [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)]
    for record in dead:
        encode(record)
    return good, dead


# --------------------------------------------------------------------------
# Per-record isolation


@pytest.mark.parametrize("line, reason", [
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper than the parser's limit"),
    (b'{"id": "a", "content": "x", "n": ' + b"9" * 5000 + b"}", "Exceeds the limit"),
    (b'{"id": "a", "content": "x", "n": 1' + b"0" * 5000 + b"}", "Exceeds the limit"),
    (b'{"id": "a", "content": "x", "k": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}", "nested deeper"),
])
def test_json_the_stdlib_refuses_is_a_parse_dead_letter(line, reason):
    pages, dead = split(ParseJsonLineFn(1 << 20).process(("f.jsonl", line, 0)))
    assert not pages and len(dead) == 1
    assert dead[0]["stage"] == "parse" and reason in dead[0]["error"]


def test_lone_surrogates_never_reach_an_output_unencodable():
    fn = ParseJsonLineFn(1 << 20)
    # In the id (or url...): refused, and the dead letter's raw is valid UTF-8.
    for field in ("id", "url", "fetched_at", "content_type", "title"):
        record = {"id": "ok", "content": "Stem cells.", field: "a\udc00b"}
        line = json.dumps(record).encode()  # ensure_ascii: the escape \udc00 is in the line
        pages, dead = split(fn.process(("f.jsonl", line, 0)))
        assert not pages and "lone surrogate U+DC00" in dead[0]["error"], field
    # In the content: replaced by U+FFFD, and the page goes on.
    [page], _ = split(fn.process(("f.jsonl", b'{"id": "p", "content": "Stem \\ud800cells \\ud83d."}', 0)))
    assert page.content == "Stem \ufffdcells \ufffd."
    page.content.encode("utf-8")
    # Whatever a dead letter is given, its strings encode.
    nasty = "raw \ud800 text"
    record = dead_letter({"id": nasty, "content": nasty}, "parse", ValueError(nasty), source=nasty, page_id=nasty)
    encode(record)
    assert "\\ud800" in record["raw"] and "\\ud800" in record["error"]
    encode(dead_letter(Page(id=nasty, content=nasty), "normalize", "x"))


class _Boom:
    def __repr__(self):
        raise RuntimeError("no repr either")


def test_dead_letter_of_anything_never_raises():
    for raw in (b"\xff\xfe" * 10, _Boom(), {"a": _Boom()}, [1] * 3, {"n": 10 ** 5000}, None):
        encode(dead_letter(raw, "parse", RecursionError("deep")))

    class Unprintable(Exception):
        def __str__(self):
            raise ValueError("nope")
    encode(dead_letter("x", "score", Unprintable()))


@pytest.mark.parametrize("exc", [RecursionError("deep"), KeyError("k"), MemoryError(), UnicodeEncodeError(
    "utf-8", "\ud800", 0, 1, "surrogates not allowed"), AttributeError("a library bug")])
def test_any_exception_while_normalizing_is_that_pages_dead_letter(monkeypatch, exc):
    from regenwatch.pipelines import dofns

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(dofns, "normalize_page", boom)
    pages, dead = split(NormalizeFn(1 << 20, 100).process(Page(id="p", content="Stem cells.")))
    assert not pages and dead[0]["stage"] == "normalize" and type(exc).__name__ in dead[0]["error"]
    assert dead[0]["id"] == "p"


class _FakeModel:
    """score_pages raises for pages whose text says so; otherwise a real-shaped score."""

    def __init__(self, exc):
        self.exc = exc

    def score_pages(self, normalized, threshold):
        from regenwatch.models.classifier import PageScore

        if any("boom" in n.text for n in normalized):
            if len(normalized) == 1:
                raise self.exc
            raise ValueError("a batch with a bad page")
        return [PageScore(score=0.9, categories=("disease_treatment",), rationale=()) for _ in normalized]


@pytest.mark.parametrize("exc", [RecursionError("deep"), KeyError("k"), IndexError("i"), RuntimeError("r")])
def test_any_exception_while_scoring_is_that_pages_dead_letter(exc):
    from regenwatch.models.text import normalize_page
    from regenwatch.pipelines.dofns import _ModelHolder

    fn = ScoreBatchFn("unused", 0.5)
    loaded = types.SimpleNamespace(model=_FakeModel(exc), version="fake", manifest={"sha256": "x", "threshold": 0.5})
    fn.holder = _ModelHolder(loaded, float("inf"))
    batch = [(Page(id=f"p{i}", content=text), normalize_page(text))
             for i, text in enumerate(["Stem cells cure.", "boom boom.", "PRP heals."])]
    outputs = list(fn.process(batch))
    decisions = [o for o in outputs if not isinstance(o, beam.pvalue.TaggedOutput)]
    dead = [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == "dead_letter"]
    assert sorted(d["id"] for d in decisions) == ["p0", "p2"]
    assert [d["id"] for d in dead] == ["p1"] and dead[0]["stage"] == "score"


def test_a_record_that_would_not_encode_is_an_encode_dead_letter_not_a_failed_write():
    from regenwatch.models.text import normalize_page
    from regenwatch.pipelines.dofns import _ModelHolder

    fn = ScoreBatchFn("unused", 0.5)
    loaded = types.SimpleNamespace(model=_FakeModel(None), version="fake", manifest={"sha256": "x"})
    fn.holder = _ModelHolder(loaded, float("inf"))
    # A Page built around the parser (as a future reader might): its id cannot be written.
    bad = Page(id="p\ud800", content="Stem cells cure.")
    outputs = list(fn.process([(bad, normalize_page(bad.content)),
                               (Page(id="ok", content="PRP."), normalize_page("PRP."))]))
    dead = [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == "dead_letter"]
    flagged = [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == "flagged"]
    decisions = [o for o in outputs if not isinstance(o, beam.pvalue.TaggedOutput)]
    assert [d["stage"] for d in dead] == ["encode"] and "surrogates" in dead[0]["error"]
    encode(dead[0])
    assert [d["id"] for d in decisions] == ["ok"] and [f["id"] for f in flagged] == ["ok"]


# --------------------------------------------------------------------------
# Encodings


def _read_jsonl(path, max_bytes=1 << 20, range_bytes=None):
    fn, parse = ReadJsonlRangeFn(max_bytes), ParseJsonLineFn(max_bytes)
    size = os.path.getsize(path)
    outputs = []
    for _, start, end in pages_module.jsonl_ranges(path, size, range_bytes):
        for item in fn.process((path, start, end)):
            outputs.extend([item] if isinstance(item, beam.pvalue.TaggedOutput) else parse.process(item))
    return split(outputs)


ROWS = [{"id": f"p{i}", "content": f"Stem cells {i} — cure ünd heal 𝄞 {'x' * (i * 37 % 300)}"} for i in range(60)]


def test_utf8_bom_and_crlf_are_read_as_pages(tmp_path):
    path = tmp_path / "windows.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\r\n" for r in ROWS))
    pages, dead = _read_jsonl(str(path))
    assert not dead and [p.id for p in pages] == [r["id"] for r in ROWS]
    assert [p.content for p in pages] == [r["content"] for r in ROWS]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-32-be"])
@pytest.mark.parametrize("gz", [False, True])
def test_utf16_and_utf32_with_a_bom_are_decoded(tmp_path, encoding, gz):
    text = "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in ROWS)
    bom = {"utf-16-be": codecs.BOM_UTF16_BE, "utf-32-be": codecs.BOM_UTF32_BE}.get(encoding, b"")
    data = bom + text.encode(encoding)
    path = tmp_path / ("pages.jsonl.gz" if gz else "pages.jsonl")
    path.write_bytes(gzip.compress(data) if gz else data)
    # Cut into small byte ranges, as a large file would be: still every page once.
    pages, dead = _read_jsonl(str(path), range_bytes=1000)
    assert not dead and [p.id for p in pages] == [r["id"] for r in ROWS]
    assert [p.content for p in pages] == [r["content"] for r in ROWS]
    assert sniff_bom(data[:4])


# --------------------------------------------------------------------------
# Bounded decompression


def _gzip_stream_of_one_line(size, chunk=1 << 20):
    """A gzip file of one JSON line of ``size`` bytes, compressed without ever holding it."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [deflate.compress(b'{"id": "bomb", "content": "')]
    block = b"x" * chunk
    for _ in range(size // chunk):
        parts.append(deflate.compress(block))
    parts.append(deflate.compress(b'"}\n{"id": "after", "content": "Stem cells."}\n'))
    parts.append(deflate.flush())
    return b"".join(parts)


def test_a_gzip_line_is_inflated_in_chunks_and_capped_like_a_plain_line(tmp_path):
    """256 MiB of one line in a .jsonl.gz: memory stays within the line cap plus a few chunks."""
    path = tmp_path / "bomb.jsonl.gz"
    path.write_bytes(_gzip_stream_of_one_line(256 << 20))
    limits = RecordLimits(max_bytes=512 * 1024, max_expansion_ratio=1e9)  # the ratio limit out of the way
    fn = ReadJsonlRangeFn(limits.max_bytes, limits)
    tracemalloc.start()
    try:
        outputs = list(fn.process((str(path), 0, None)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    lines, dead = split(outputs)
    assert len(dead) == 1 and dead[0]["raw_truncated"] and "far over the page cap" in dead[0]["error"]
    assert [line[1] for line in lines] == [b'{"id": "after", "content": "Stem cells."}']
    assert peak < 4 * limits.max_bytes + 8 * (1 << 20), f"peak {peak} bytes reading a 256 MiB gzipped line"


def test_a_file_past_the_expansion_limits_is_read_up_to_there_then_dead_lettered(tmp_path):
    good = b"".join(json.dumps(r).encode() + b"\n" for r in ROWS[:5])
    path = tmp_path / "bomb.jsonl.gz"
    path.write_bytes(gzip.compress(good) + _gzip_stream_of_one_line(64 << 20))
    lines, dead = split(ReadJsonlRangeFn(1 << 20).process((str(path), 0, None)))
    assert len(lines) == 5
    assert len(dead) == 1 and dead[0]["stage"] == "read" and "--max_expansion_ratio 100" in dead[0]["error"]
    # The total limit, with the ratio out of the way.
    limits = RecordLimits(max_bytes=1 << 20, max_expanded_bytes=16 << 20, max_expansion_ratio=1e9)
    lines, dead = split(ReadJsonlRangeFn(limits.max_bytes, limits).process((str(path), 0, None)))
    assert len(lines) == 5 and "--max_expanded_bytes" in dead[0]["error"]


def test_gunzip_reader_is_gzip():
    data = b"".join(json.dumps(r).encode() + b"\n" for r in ROWS)
    packed = gzip.compress(data[:1000]) + gzip.compress(data[1000:]) + b"\0" * 20
    for raw_chunk in (1, 7, 4096):
        reader = GunzipReader(io.BytesIO(packed).read, raw_chunk=raw_chunk)
        out = []
        while True:
            piece = reader.read(333)
            assert len(piece) <= 333
            if not piece:
                break
            out.append(piece)
        assert b"".join(out) == data
    for broken in (packed[:len(packed) // 2], packed + b"garbage"):
        with pytest.raises((EOFError, zlib.error)):
            reader = GunzipReader(io.BytesIO(broken).read)
            while reader.read(1 << 16):
                pass
    guard = ExpansionGuard(max_expanded=10 ** 12, max_ratio=2.0)
    with pytest.raises(DecompressionLimit):
        reader = GunzipReader(io.BytesIO(gzip.compress(b"x" * (20 << 20))).read, guard)
        while reader.read(1 << 20):
            pass


def _readable(path):
    return types.SimpleNamespace(metadata=FileMetadata(str(path), os.path.getsize(path)))


@pytest.mark.parametrize("codec", ["deflate", "bzip2", "xz"])
def test_an_avro_block_that_inflates_past_the_limit_is_a_read_dead_letter(tmp_path, codec):
    install_bounded_avro_codecs()
    schema = load_schema("page")
    records = [{"id": f"a{i}", "content": "Stem cells.", "url": None, "fetched_at": None, "content_type": None}
               for i in range(3)]
    path = tmp_path / f"bomb-{codec}.avro"
    with open(path, "wb") as handle:
        writer = fastavro.write.Writer(handle, fastavro.parse_schema(schema), codec=codec)
        for r in records:
            writer.write(r)
        writer.flush()
        writer.write({**records[0], "id": "bomb", "content": "x" * (80 << 20)})
        writer.flush()
    assert os.path.getsize(path) < 2 << 20
    pages, dead = split(ReadAvroFileFn(1 << 20).process(_readable(path)))
    assert [p.id for p in pages] == ["a0", "a1", "a2"]
    assert len(dead) == 1 and dead[0]["stage"] == "read"
    assert "DecompressionLimit" in dead[0]["error"]


def test_bounded_avro_codecs_read_what_fastavro_reads(tmp_path):
    install_bounded_avro_codecs()
    records = [{"id": f"a{i}", "content": "y" * i, "url": None, "fetched_at": None, "content_type": None}
               for i in range(0, 5000, 13)]
    for codec in ("null", "deflate", "bzip2", "xz"):
        buf = io.BytesIO()
        fastavro.writer(buf, load_schema("page"), records, codec=codec, sync_interval=2000)
        buf.seek(0)
        guard = ExpansionGuard()
        with avro_guard(guard):
            assert list(fastavro.reader(buf)) == records
        assert guard.expanded > 0


def test_a_warc_gz_past_the_expansion_ratio_stops_there(tmp_path):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    path = tmp_path / "bomb.warc.gz"
    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for i, body in enumerate([b"<p>Stem cells cure.</p>", b"<p>" + b"x" * (40 << 20) + b"</p>"]):
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(f"https://x.example/{i}", "response",
                                                          payload=io.BytesIO(body), http_headers=http))
    pages, dead = split(ReadWarcFileFn(1 << 20).process(_readable(path)))
    assert len(pages) == 1 and len(dead) == 1 and "--max_expansion_ratio" in dead[0]["error"]


# --------------------------------------------------------------------------
# Work bounded per page


SHAPES = {
    # Linear for the parser and for us: the estimate is a constant times the length.
    "paragraphs": lambda n: "<p>Stem cells cure arthritis.</p>" * n,
    "unclosed_li": lambda n: "<ul>" + "<li>PRP heals" * n,
    "giant_word": lambda n: "x" * (30 * n),
    "no_sentence_breaks": lambda n: "stem cells cure " * (2 * n),
    "abbreviations": lambda n: "Dr. " * (8 * n),
    "comments": lambda n: "<!-- <div> -->" * n,
    "scripts": lambda n: "<script>'<div>'</script>" * n,
    # Quadratic in the parser (measured, bench/page_cost.py): depth, attributes, options.
    "deep_div": lambda n: "<div>" * n + "x" + "</div>" * n,
    "nested_lists": lambda n: "<ul><li>" * n,
    "attributes": lambda n: "<div " + " ".join(f"a{i}=1" for i in range(n)) + ">x</div>",
    "select_options": lambda n: "<select>" + "<option>x</option>" * n,
    "formatting_reopened": lambda n: "<b>" * n + "</p>" * n,
}
LINEAR = ("paragraphs", "unclosed_li", "giant_word", "no_sentence_breaks", "abbreviations", "comments", "scripts")


def test_page_work_is_linear_for_linear_shapes_and_catches_the_quadratic_ones():
    for name, shape in SHAPES.items():
        small, large = page_work(shape(2_000)), page_work(shape(8_000))
        ratio = large.total / small.total
        if name in LINEAR:
            assert ratio < 4.5, (name, small, large)
            assert large.total <= (TEXT_UNITS + 2) * len(shape(8_000)), (name, large)
        else:
            assert ratio > 12, (name, small, large)  # 4x the size, ~16x the estimate


def test_the_work_budget_refuses_what_would_cost_more_and_admits_the_rest():
    """The bound: a page is admitted only when its estimate is within --max_page_work."""
    budget = DEFAULT_MAX_PAGE_WORK
    for name, shape in SHAPES.items():
        # Small and large: the quadratic shapes at 40,000 are over the budget (and refused before parsing).
        for n in (1_000, 10_000) if name in LINEAR else (1_000, 40_000):
            content = shape(n)
            page = Page(id=name, content=content, content_type="text/html")
            estimate = page_work(content).total
            outputs = list(NormalizeFn(5 * 1024 * 1024, 2000, budget).process(page))
            refused = [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)
                       and "--max_page_work" in o.value["error"]]
            assert bool(refused) == (estimate > budget), (name, n, estimate)
            if name in LINEAR:
                assert not refused, (name, n)
            if refused:
                assert refused[0]["stage"] == "normalize" and "PageTooCostly" in refused[0]["error"]
    # The 10,000-level nest of tests/pipelines/test_reliability.py stays within the budget (it is decided).
    check_page_work(Page(id="n", content="<div>" * 10_000 + "<p>Stem cells.</p>" + "</div>" * 10_000), budget)


def test_real_pages_are_far_below_the_budget():
    from regenwatch.training.data_io import load_sample_set

    estimates = [page_work(p["text"]).total for p in load_sample_set().pages]
    assert max(estimates) < DEFAULT_MAX_PAGE_WORK / 10, max(estimates)


def test_page_work_scan_is_one_pass():
    # A tag-like run with no ">" and unterminated comments or scripts cannot make the scan quadratic:
    # the estimate's own work (tags matched) is at most one per "<".
    for content in ("<a <a <a " * 50_000, "<!--" * 50_000, "<script>" * 50_000, "<" * 200_000):
        work = page_work(content)
        assert work.tags <= content.count("<")


# --------------------------------------------------------------------------
# Limits on what a record carries, and their options


@pytest.mark.parametrize("field, option", [("id", "--max_id_chars"), ("url", "--max_url_chars"),
                                           ("title", "--max_title_chars"),
                                           ("content_type", "--max_content_type_chars"),
                                           ("fetched_at", "--max_fetched_at_chars")])
def test_a_field_over_its_limit_is_a_dead_letter(field, option):
    limits = RecordLimits(max_bytes=1 << 20, max_id_chars=50, max_url_chars=60, max_title_chars=70,
                          max_content_type_chars=40, max_fetched_at_chars=30)
    limit = limits.field_limit(field)
    value = "text/html;" + "x" * limit if field == "content_type" else "x" * (limit + 1)
    base = {"id": "p", "content": "Stem cells."}
    fn = ParseJsonLineFn(limits.max_bytes, limits)
    pages, dead = split(fn.process(("f.jsonl", json.dumps({**base, field: value}).encode(), 0)))
    assert not pages and option in dead[0]["error"] and dead[0]["stage"] == "parse"
    at_limit = "text/html" if field == "content_type" else "x" * limit
    pages, dead = split(fn.process(("f.jsonl", json.dumps({**base, field: at_limit}).encode(), 0)))
    assert len(pages) == 1 and not dead
    # The same limits hold for Avro records and WARC records (page_from_record).
    with pytest.raises(pages_module.InputError, match=option):
        pages_module.page_from_record({**base, field: value}, limits=limits)


def test_limit_options_have_help_defaults_and_cross_field_checks():
    import argparse

    from regenwatch.pipelines.options import RegenwatchOptions, record_limits, validate_options

    parser = argparse.ArgumentParser()
    RegenwatchOptions._add_argparse_args(parser)
    new = ("--max_id_chars", "--max_url_chars", "--max_title_chars", "--max_content_type_chars",
           "--max_fetched_at_chars", "--max_expanded_bytes", "--max_expansion_ratio", "--max_page_work")
    actions = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    for flag in new:
        assert actions[flag].help and actions[flag].default is not None, flag

    def opts(*argv):
        return RegenwatchOptions(["--input", "x", "--output", "y", *argv])

    validate_options(opts())
    assert record_limits(opts("--max_id_chars", "9")).max_id_chars == 9
    # A lowered page cap takes the field defaults down with it, without an error.
    validate_options(opts("--max_page_bytes", "1000"))
    assert record_limits(opts("--max_page_bytes", "1000")).max_url_chars == 1000
    for argv, message in [
        (("--max_url_chars", "0"), "--max_url_chars must be positive"),
        (("--max_page_bytes", "1000", "--max_id_chars", "2000"), "cannot be over --max_page_bytes"),
        (("--max_page_bytes", "1000", "--max_expanded_bytes", "3999"), "at least 4x --max_page_bytes"),
        (("--max_expansion_ratio", "0.5"), "--max_expansion_ratio must be at least 1"),
        (("--max_page_bytes", "1000", "--max_page_work", "999"), "--max_page_work (999) must be at least"),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            validate_options(opts(*argv))


def test_page_from_json_line_keeps_its_old_signature():
    page = page_from_json_line(b'{"id": "a", "content": "b"}', source="s", max_bytes=100, position=3)
    assert (page.id, page.source, page.position) == ("a", "s", 3)
    with pytest.raises(pages_module.InputError, match="over the cap of 10"):
        page_from_json_line(b'{"id": "a", "content": "' + b"b" * 11 + b'"}', max_bytes=10)


def test_refusing_a_page_costs_no_more_than_scanning_its_budget():
    content = "<ul><li>" * 600_000
    work = page_work(content, stop_above=10_000_000)
    assert work.partial and work.total > 10_000_000 and work.length < len(content) // 10
    assert "at least" in work.describe()
    whole = page_work(content)
    assert not whole.partial and whole.total > work.total


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(pieces=st.lists(st.sampled_from(["<div>", "</div>", "<select>", "<option>", "</p>", "<b>", "<li>", "<ul>",
                                        "<a b c d e f>", "<x " + "a " * 600 + ">", "<!--", "-->", "<script>",
                                        "</script>", "text ", "<", ">", "=", "'", '"', "<p a=1 b='2' c=\"3\">"]),
                       max_size=400), html=st.booleans())
def test_quick_bound_is_an_upper_bound_of_the_estimate(pieces, html):
    from regenwatch.pipelines.pagecost import quick_bound

    content = "".join(pieces)
    assert page_work(content, html).total <= quick_bound(content, html)


def test_most_pages_skip_the_scan():
    from regenwatch.pipelines.pagecost import quick_bound
    from regenwatch.training.data_io import load_sample_set

    pages = load_sample_set().pages
    html = ["<html><body>" + "".join(f"<div class='row'><p data-i='{i}'>{line}</p></div>"
                                     for i, line in enumerate(p["text"].split("\n"))) + "</body></html>"
            for p in pages]
    assert all(quick_bound(h) <= DEFAULT_MAX_PAGE_WORK for h in html)
