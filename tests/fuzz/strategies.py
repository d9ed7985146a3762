"""Hypothesis strategies for hostile input: JSON structure, page records, byte-level file mutations."""
from __future__ import annotations

import gzip
import io
import json
import os
import string

import fastavro
from hypothesis import strategies as st

from regenwatch.schemas import load_schema

# --------------------------------------------------------------------------
# JSON text, built as text so that what json.dumps never writes is covered:
# NaN / Infinity, integers past 4,300 digits, duplicate keys, lone-surrogate
# escapes, nesting past the recursion limit, truncations.

LONE_SURROGATES = st.sampled_from(["\\ud800", "\\udfff", "\\udc00\\ud800", "\\ud83d", "x\\ude00y"])
ESCAPES = st.sampled_from(["\\n", "\\r\\n", "\\t", "\\u0000", "\\\"", "\\\\", "\\/", "\\u2028", "\\ufeff",
                           "\\u200b", "\\ud83d\\ude00", "\\u0430"])


@st.composite
def json_string(draw, max_size=40):
    parts = draw(st.lists(st.one_of(
        st.text(max_size=12).map(lambda t: json.dumps(t, ensure_ascii=False)[1:-1]),
        ESCAPES, LONE_SURROGATES), max_size=max_size // 4 + 1))
    return '"' + "".join(parts) + '"'


def json_number():
    return st.one_of(
        st.integers().map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0", "0.0e0"]),
        st.integers(4000, 6000).map(lambda n: "9" * n),          # past int's 4,300-digit limit
        st.integers(1, 400).map(lambda n: "1" + "0" * n + ".5"),
    )


def json_scalar():
    return st.one_of(st.sampled_from(["null", "true", "false"]), json_number(), json_string())


def json_value():
    return st.recursive(
        json_scalar(),
        lambda children: st.one_of(
            st.lists(children, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
            st.lists(st.tuples(json_string(max_size=8), children), max_size=4).map(
                lambda kvs: "{" + ",".join(f"{k}:{v}" for k, v in kvs) + "}"),
        ),
        max_leaves=12,
    )


def deep_nesting():
    return st.tuples(st.integers(1, 120_000), st.sampled_from(["[", '{"a":']), st.booleans()).map(
        lambda t: t[1] * t[0] + ("1" + ("]" if t[1] == "[" else "}") * t[0] if t[2] else ""))


PATHOLOGICAL_HTML = [
    lambda n: "<div>" * n + "Stem cells cure." + "</div>" * n,
    lambda n: "<div " + " ".join(f"a{i}=1" for i in range(n)) + ">Stem cells.</div>",
    lambda n: "<select>" + "<option>x</option>" * n,
    lambda n: "<ul><li>" * n,
    lambda n: "<b>" * n + "</p>" * n,
    lambda n: "x" * (n * 5),
    lambda n: "Dr. " * n,
    lambda n: "!" * (n * 3),
    lambda n: "s t e m c e l l s " * n,
    lambda n: "<!--" * n,
    lambda n: "<a <a <a " * n,
    lambda n: "<script>" + "<div>" * n,
    lambda n: "&#x" + "1" * n + ";",
    lambda n: "\u0441\u0442em c\u0435lls " * n,
]


def page_content():
    return st.one_of(
        st.text(max_size=300),
        st.sampled_from(["", " \n\t ", "Exosome therapy cures arthritis. Book now.",
                         "<html><body><p>Stem cells reverse aging.</p></body></html>"]),
        st.tuples(st.sampled_from(range(len(PATHOLOGICAL_HTML))), st.integers(1, 3000)).map(
            lambda t: PATHOLOGICAL_HTML[t[0]](t[1])),
    ).map(lambda text: json.dumps(text, ensure_ascii=False))


def page_id():
    return st.one_of(
        json_string(max_size=20),
        st.integers(1, 3000).map(lambda n: json.dumps("i" * n)),   # very long ids
        json_number(), st.sampled_from(["null", "true", "[]", "{}", '"   "', '""']),
        LONE_SURROGATES.map(lambda s: f'"p{s}"'),
    )


@st.composite
def page_record_line(draw) -> bytes:
    """One JSON Lines line of a page-like object: right or wrong in every field, with duplicate keys."""
    fields = []
    if draw(st.integers(0, 9)):
        fields.append(("id", draw(page_id())))
    if draw(st.integers(0, 9)):
        fields.append(("content", draw(st.one_of(page_content(), json_value()))))
    for key in draw(st.lists(st.sampled_from(["url", "fetched_at", "content_type", "title", "id", "content",
                                              "extra"]), max_size=4)):
        value = draw(st.one_of(json_string(), json_value(), st.sampled_from(
            ['"text/html"', '"text/plain; charset=utf-8"', '"application/pdf"', '"TEXT/HTML;;"']),
            st.integers(1, 10000).map(lambda n: json.dumps("u" * n))))
        fields.append((key, value))
    draw(st.randoms()).shuffle(fields)
    text = "{" + ",".join(f'"{k}":{v}' for k, v in fields) + "}"
    data = text.encode("utf-8", "surrogatepass")
    how = draw(st.sampled_from(["plain", "plain", "plain", "bom", "crlf", "cut", "utf16"]))
    if how == "bom":
        data = b"\xef\xbb\xbf" + data
    elif how == "crlf":
        data += b"\r"
    elif how == "cut":
        data = data[:draw(st.integers(0, len(data)))]
    elif how == "utf16":
        data = text.encode("utf-16-le", "surrogatepass")
    return data


# A good page, written as a crawl may write it (BOM, CRLF, HTML): always decided.
# The bounded test and the long campaign draw the same examples.
GOOD_PAGE = dict(
    text=st.text(alphabet=string.ascii_letters + " .,éü\u0430", min_size=1, max_size=400).filter(
        lambda t: any(c.isalpha() for c in t)),
    page_id=st.text(min_size=1, max_size=60).filter(str.strip),
    how=st.sampled_from(["plain", "bom", "crlf", "html"]),
)


def good_page_line(text: str, page_id: str, how: str) -> bytes:
    """One JSON Lines record of a good page, in the form ``how`` names."""
    content = f"<p>{text}</p>" if how == "html" else text
    line = json.dumps({"id": page_id, "content": content}).encode()
    return b"\xef\xbb\xbf" + line if how == "bom" else line + (b"\r" if how == "crlf" else b"")


def json_line() -> st.SearchStrategy:
    return st.one_of(
        page_record_line(),
        json_value().map(lambda t: t.encode("utf-8", "surrogatepass")),
        deep_nesting().map(str.encode),
        st.binary(max_size=200),
    )


# --------------------------------------------------------------------------
# Valid files, then byte-level mutations and truncations of them

SEED_PAGES = [
    {"id": f"seed-{i}", "content": text, "url": f"https://clinic.example/{i}", "fetched_at": None,
     "content_type": ctype}
    for i, (text, ctype) in enumerate([
        ("<html><body><p>Our exosome therapy cures arthritis without side effects.</p></body></html>", "text/html"),
        ("Stem cell injections reverse aging. Book your consultation today.", "text/plain"),
        ("<p>The FDA warns consumers about unapproved stem cell products.</p>", None),
        ("PRP treatments: results vary, ask your doctor.", None),
    ])
]


def seed_files(folder: str) -> dict:
    """Valid seed files of every format, by kind -> path."""
    from tests.data import make_sample_warc

    os.makedirs(folder, exist_ok=True)
    jsonl = "".join(json.dumps(p) + "\n" for p in SEED_PAGES).encode()
    paths = {}

    def write(name, data):
        path = os.path.join(folder, name)
        with open(path, "wb") as handle:
            handle.write(data)
        paths[name] = path

    write("seed.jsonl", jsonl)
    write("seed.jsonl.gz", gzip.compress(jsonl[:len(jsonl) // 2]) + gzip.compress(jsonl[len(jsonl) // 2:]))
    for codec in ("null", "deflate"):
        buf = io.BytesIO()
        fastavro.writer(buf, load_schema("page"), SEED_PAGES, codec=codec, sync_interval=200)
        write(f"seed-{codec}.avro", buf.getvalue())
    data_dir = os.path.dirname(make_sample_warc.__file__)
    for name in ("sample.warc", "sample.warc.gz"):
        with open(os.path.join(data_dir, name), "rb") as handle:
            write(name, handle.read())
    return paths


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with a few byte-level edits: overwrite, insert, delete, duplicate a slice, truncate."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 6))):
        if not buf:
            break
        op = draw(st.sampled_from(["set", "insert", "delete", "dup", "zero", "ff"]))
        at = draw(st.integers(0, len(buf) - 1))
        if op == "set":
            buf[at] = draw(st.integers(0, 255))
        elif op == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del buf[at:at + draw(st.integers(1, 16))]
        elif op == "dup":
            size = draw(st.integers(1, 64))
            buf[at:at] = buf[at:at + size]
        elif op == "zero":
            buf[at:at + 4] = b"\0\0\0\0"
        else:
            buf[at:at + 4] = b"\xff\xff\xff\x7f"
    if draw(st.integers(0, 3)) == 0:
        buf = buf[:draw(st.integers(0, len(buf)))]
    return bytes(buf)


def gzip_members(lines, cuts) -> bytes:
    """The lines (bytes, newline-terminated) as gzip members split at the given line indices."""
    bounds = [0] + sorted(set(c for c in cuts if 0 < c < len(lines))) + [len(lines)]
    return b"".join(gzip.compress(b"".join(lines[a:b])) for a, b in zip(bounds, bounds[1:]))


def stdlib_gunzip_prefix(data: bytes) -> bytes:
    """What the standard library's zlib can inflate from (possibly cut) gzip data: the reference."""
    import zlib

    out = []
    while data:
        inflater = zlib.decompressobj(31)
        try:
            out.append(inflater.decompress(data))
        except zlib.error:
            break
        if not inflater.eof:
            break
        data = inflater.unused_data
    return b"".join(out)
