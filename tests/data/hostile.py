"""A folder of input holding every hostile kind of issue 15, beside good pages.

``write_hostile_mix(folder, full=False)`` writes it and returns what a run
must make of it: the ids of the good pages (every one must be decided) and
the number of inputs (pages in = decided + dead letters). ``full=True`` is
the benchmark's size (bench/hostile_mix.py: a gzip line of 1 GiB, 5 MiB
pathological pages); the default is the test's (tests/pipelines/test_hostile_mix.py).
"""
from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import random
import zlib
from dataclasses import dataclass, field
from typing import List

import fastavro

from regenwatch.schemas import load_schema
from tests.data.synthetic import pages as synthetic_pages


@dataclass
class Mix:
    good_ids: List[str] = field(default_factory=list)
    inputs: int = 0                       # inputs of the files whose count is known (all but corrupt ones)
    kinds: List[str] = field(default_factory=list)


def _gzip_one_line(path, size, chunk=1 << 20, before=b"", after=b""):
    """A .gz of one JSON line of ``size`` bytes of one letter, written without holding it."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"x" * chunk
    with open(path, "wb") as handle:
        handle.write(deflate.compress(before + b'{"id": "bomb", "content": "'))
        for _ in range(size // chunk):
            handle.write(deflate.compress(block))
        handle.write(deflate.compress(b'"}\n' + after))
        handle.write(deflate.flush())


def write_hostile_mix(folder: str, full: bool = False, seed: int = 15) -> Mix:
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    mix = Mix()
    good = list(synthetic_pages(60, seed=seed, prefix="good-", length=(2, 4)))

    def take(n):
        rows = good[:n]
        del good[:n]
        mix.good_ids.extend(r["id"] for r in rows)
        return rows

    def line(record):
        return json.dumps(record, ensure_ascii=False)

    def write(name, data, inputs, kind):
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(data)
        mix.inputs += inputs
        mix.kinds.append(kind)

    # Good pages, plainly.
    rows = take(12)
    write("good.jsonl", "".join(line(r) + "\n" for r in rows).encode(), len(rows), "good")
    # Windows tools: UTF-8 BOM and CRLF.
    rows = take(6)
    write("windows.jsonl", codecs.BOM_UTF8 + "".join(line(r) + "\r\n" for r in rows).encode(), len(rows), "bom+crlf")
    # UTF-16 (BOM) and UTF-32 (BOM), one of them gzipped.
    rows = take(6)
    write("utf16.jsonl", "".join(line(r) + "\r\n" for r in rows).encode("utf-16"), len(rows), "utf-16")
    rows = take(6)
    write("utf32.jsonl.gz", gzip.compress("".join(line(r) + "\n" for r in rows).encode("utf-32")), len(rows),
          "utf-32.gz")

    # JSON the standard library refuses for reasons other than syntax, or accepts but cannot encode.
    ok = take(6)
    hostile_lines = [
        b"[" * 200_000,                                                          # RecursionError
        b'{"id": "deep", "content": "x", "k": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
        b'{"id": "bigint", "content": "Stem cells.", "n": ' + b"9" * 5000 + b"}",  # int > 4,300 digits
        b'{"id": "nan", "content": NaN}',
        b'{"id": Infinity, "content": "Stem cells."}',
        b'{"id": "sur\\ud800", "content": "Stem cells."}',                       # lone surrogate in the id
        b'{"id": "u", "content": "ok", "url": "https://x.example/\\udfff"}',
        json.dumps({"id": "i" * 5000, "content": "Stem cells."}).encode(),       # id over --max_id_chars
        json.dumps({"id": "longurl", "content": "Stem cells.", "url": "https://x.example/" + "a" * 20_000}).encode(),
        json.dumps({"id": "longtitle", "content": "Stem cells.", "title": "t" * 10_000}).encode(),
        json.dumps({"id": "longct", "content": "Stem cells.", "content_type": "text/html;" + " " * 400}).encode(),
        json.dumps({"id": "longdate", "content": "Stem cells.", "fetched_at": "2026" * 100}).encode(),
        b'{"id": "badutf8", "content": "caf\xe9 \xff"}',
        b'{"id": "cut", "content": "Stem ce',
        b"\x00\x01\x02 binary \xfe\xff",
        json.dumps({"id": 12, "content": "Stem cells."}).encode(),
    ]
    # Accepted JSON that must still be decided: a lone surrogate in the content
    # (replaced), duplicate keys (the last wins).
    decided_lines = [
        ('{"id": "%s", "content": "' % ok[0]["id"]).encode() + json.dumps(ok[0]["content"])[1:-1].encode()
        + b' \\ud83d"}',
        ('{"id": "dup-first", "id": "%s", "content": %s}' % (ok[1]["id"], json.dumps(ok[1]["content"]))).encode(),
    ] + [line(r).encode() for r in ok[2:]]
    all_lines = hostile_lines + decided_lines
    rng.shuffle(all_lines)
    write("json_hostile.jsonl", b"\n".join(all_lines) + b"\n\n", len(all_lines), "hostile json")

    # Compressed input: a one-line bomb (1 GiB in the benchmark) after good lines, a line over
    # the cap that is not a bomb (random letters), a truncated gzip.
    rows = take(4)
    before = "".join(line(r) + "\n" for r in rows).encode()
    _gzip_one_line(os.path.join(folder, "bomb.jsonl.gz"), (1 << 30) if full else (96 << 20), before=before)
    mix.inputs += len(rows) + 1
    mix.kinds.append("gzip bomb")
    letters = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz ") for _ in range(21 << 20 if full else 1 << 20))
    rows = take(3)
    write("overcap.jsonl.gz", gzip.compress(
        b'{"id": "overcap", "content": "' + letters * (1 if full else 21) + b'"}\n'
        + "".join(line(r) + "\n" for r in rows).encode(), compresslevel=1), 1 + len(rows), "gzip line over cap")
    rows = take(3)
    second = gzip.compress(bytes(rng.choice(b"abcdef") for _ in range(50_000)))
    # Cut inside the second gzip member: the first member's pages come out, then one read dead letter.
    write("truncated.jsonl.gz", gzip.compress("".join(line(r) + "\n" for r in rows).encode())
          + second[:len(second) // 2], len(rows) + 1, "truncated gzip")

    # Avro: good records, a deflate block that inflates past the block limit, a corrupt file.
    schema = fastavro.parse_schema(load_schema("page"))
    rows = take(4)
    buf = io.BytesIO()
    writer = fastavro.write.Writer(buf, schema, codec="deflate")
    for r in rows:
        writer.write({k: r.get(k) for k in ("id", "content", "url", "fetched_at", "content_type")})
    writer.flush()
    writer.write({"id": "avro-bomb", "content": "x" * ((200 << 20) if full else (80 << 20)), "url": None,
                  "fetched_at": None, "content_type": None})
    writer.flush()
    write("pages.avro", buf.getvalue(), len(rows) + 1, "avro bomb")
    rows = take(4)
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [{k: r.get(k) for k in ("id", "content", "url", "fetched_at", "content_type")}
                                  for r in rows], codec="null")
    corrupt = bytearray(buf.getvalue())
    # How many of its records come out before the damage is the reader's business: not counted in
    # ``inputs``, and its pages are not among the good ones.
    write("corrupt.avro", bytes(corrupt[:len(corrupt) - 30]) + b"\xff" * 7, 0, "corrupt avro")
    mix.good_ids = [i for i in mix.good_ids if i not in {r["id"] for r in rows}]

    # WARC: good responses, a pathological page inside one, a truncated .warc.gz.
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    rows = take(4)
    out = io.BytesIO()
    warc = WARCWriter(out, gzip=True)
    for r in rows:
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        warc.write_record(warc.create_warc_record(
            r["url"], "response", payload=io.BytesIO(r["content"].encode()), http_headers=http,
            warc_headers_dict={"WARC-Record-ID": f"<urn:uuid:{r['id']}>"}))
    mix.good_ids[-len(rows):] = [f"urn:uuid:{r['id']}" for r in rows]
    write("crawl.warc.gz", out.getvalue(), len(rows), "warc")
    write("cut.warc.gz", out.getvalue()[: len(out.getvalue()) // 2], 0, "truncated warc")

    # Pages whose markup or text is pathological (sizes: the benchmark's up to 5 MiB).
    n = 5 * 1024 * 1024 - 64 if full else 400_000  # within --max_page_bytes: the work budget decides
    pathological = [
        ("deep-div", "<div>" * (n // 11) + "Stem cells cure." + "</div>" * (n // 11)),
        ("attributes", "<div " + " ".join(f"a{i}=1" for i in range(n // 8)) + ">Stem cells.</div>"),
        ("select", "<select>" + "<option>x</option>" * (n // 18) + "</select><p>Stem cells.</p>"),
        ("nested-lists", "<ul><li>" * (n // 8) + "Stem cells."),
        ("reopened", "<b>" * (n // 7) + "</p>" * (n // 7)),
        ("giant-word", "x" * n),
        ("no-breaks", "stem cells cure arthritis " * (n // 26)),
        ("dots", "Dr. " * (n // 4)),
        ("nested-10k", "<div>" * 10_000 + "<p>Exosomes cure arthritis.</p>" + "</div>" * 10_000),
        ("spaced", "s t e m c e l l s " * (n // 18)),
    ]
    write("pathological.jsonl", b"".join(
        json.dumps({"id": f"patho-{name}", "content": content[:n], "content_type": "text/html"}).encode() + b"\n"
        for name, content in pathological), len(pathological), "pathological pages")
    # Not a page format.
    write("notes.pdf", b"%PDF-1.4 not pages", 1, "unsupported")
    write("empty.jsonl", b"", 0, "empty")
    return mix
