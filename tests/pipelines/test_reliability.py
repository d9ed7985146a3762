"""Nothing lost, and input read as a stream.

``test_nothing_lost_20k_pages`` feeds 20,000 pages of which 5% are broken in
the ten ways of issue 7 (plus same-content re-deliveries) and checks, exactly,
that every input line is one decision or one dead letter with its reason, per
kind, and that ``regenwatch run`` exits 0. It prints its figures (pages,
broken by kind, dead letters by kind, time); run with ``-s`` to see them.

What a duplicate ``id`` means (README, "Duplicate ids"; pipelines/pages.py):
a page is (id, content_sha256). The same id with the same content is a
re-delivery, decided once, its further copies dead letters with stage
"duplicate"; the same id with different content is a new version of the
page, decided again and told apart by ``content_sha256``.
"""
from __future__ import annotations

import json
import os
import random
import re
import time
from collections import Counter

import fastavro
import pytest

from regenwatch.cli import main as cli_main
from tests.data.synthetic import authored_sentences, page_content, pages

TOTAL = 20_000
# 5% broken: the ten ways of issue 7, and re-deliveries (same id, same content).
BROKEN = {
    "invalid_json": 111,
    "missing_id": 111,
    "missing_content": 111,
    "wrong_types": 111,
    "empty_content": 111,
    "page_20mb": 3,
    "binary": 111,
    "invalid_utf8": 111,
    "nested_10k": 40,
    "duplicate_id_new_content": 111,
    "redelivered": 69,
}
assert sum(BROKEN.values()) == TOTAL // 20
# Which kinds end as decisions, and for the others the stage and reason of their dead letter.
DECIDED_KINDS = {"nested_10k", "duplicate_id_new_content"}
EXPECTED_REASONS = {
    "invalid_json": ("parse", r"invalid JSON"),
    "missing_id": ("parse", r"missing required field 'id'"),
    "missing_content": ("parse", r"missing required field 'content'"),
    "wrong_types": ("parse", r"must be (a|an|a non-empty) |a page must be a JSON object"),
    "empty_content": ("parse", r"empty or whitespace only"),
    "page_20mb": ("parse", r"over the cap|far over the page cap"),
    "binary": ("parse|normalize", r"BinaryContent|not valid UTF-8|invalid JSON"),
    "invalid_utf8": ("parse", r"not valid UTF-8"),
    "redelivered": ("duplicate", r"DuplicatePage"),
}
MARKER = re.compile(r"kind=([a-z0-9_]+)#(\d+)")
ID_KINDS = {"bin": "binary", "nested": "nested_10k", "e": "empty_content", "u": "invalid_utf8"}


def _marker(kind, n):
    return f"kind={kind}#{n}"


def broken_lines(kind, count, rng, good):
    """``count`` input lines (bytes) broken in the way ``kind``; each carries its marker near the start."""
    sentences = authored_sentences()
    for n in range(count):
        mark = _marker(kind, n)
        if kind == "invalid_json":
            yield (f'{{"marker": "{mark}", "id": "x", "content": "unterminated' if n % 2 else
                   f"{{'marker': '{mark}', 'id': 'single quotes'}}").encode()
        elif kind == "missing_id":
            yield json.dumps({"marker": mark, "content": page_content(rng, sentences, False)}).encode()
        elif kind == "missing_content":
            yield json.dumps({"marker": mark, "id": f"broken-{n}", "url": "https://x.example"}).encode()
        elif kind == "wrong_types":
            variants = [
                {"marker": mark, "id": 1000 + n, "content": "Stem cells."},
                {"marker": mark, "id": f"wt-{n}", "content": 42},
                {"marker": mark, "id": f"wt-{n}", "content": ["Stem", "cells"]},
                {"marker": mark, "id": f"wt-{n}", "content": "Stem cells.", "url": 5},
                {"marker": mark, "id": f"wt-{n}", "content": "Stem cells.", "content_type": 7},
            ]
            yield (json.dumps(variants[n % 5]) if n % 6 else json.dumps([mark, "an array"])).encode()
        elif kind == "empty_content":
            yield json.dumps({"marker": mark, "id": f"e-{n}", "content": " \n\t " if n % 2 else ""}).encode()
        elif kind == "page_20mb":
            yield (f'{{"marker": "{mark}", "id": "big-{n}", "content": "'.encode()
                   + b"exosomes cure everything " * (20 * 1024 * 1024 // 25) + b'"}')
        elif kind == "binary":
            if n % 2:
                junk = bytes(b for b in rng.randbytes(300) if b not in (10, 13))
                yield mark.encode() + b" " + junk
            else:
                yield json.dumps({"marker": mark, "id": f"bin-{n}",
                                  "content": "".join(chr(rng.randrange(0, 32)) for _ in range(400))}).encode()
        elif kind == "invalid_utf8":
            yield (f'{{"marker": "{mark}", "id": "u-{n}", "content": "caf'.encode() + b"\xe9 \xff\xfe\xc3\x28"
                   + b' stem cells"}')
        elif kind == "nested_10k":
            html = "<div>" * 10_000 + f"<p>{rng.choice(sentences)}</p>" + "</div>" * 10_000
            yield json.dumps({"marker": mark, "id": f"nested-{n}", "content": html,
                              "content_type": "text/html"}).encode()
        elif kind == "duplicate_id_new_content":
            original = good[n * 37]
            yield json.dumps({"marker": mark, "id": original["id"], "url": original["url"],
                              "content": original["content"] + " Updated: prices from $2,000."}).encode()
        elif kind == "redelivered":
            yield json.dumps(good[n * 41 + 5]).encode()
        else:
            raise KeyError(kind)


def write_inputs(folder, seed=20):
    """Four JSONL files, broken lines shuffled among good ones. Returns (good pages, expectations)."""
    rng = random.Random(seed)
    # Short pages (2-3 sentences, a product blurb): the test is about
    # accounting, and scoring time grows with sentences.
    good = list(pages(TOTAL - sum(BROKEN.values()), seed=seed, prefix="good-", length=(2, 3)))
    lines = [(json.dumps(p).encode(), None) for p in good]
    for kind, count in BROKEN.items():
        lines.extend((line, kind) for line in broken_lines(kind, count, rng, good))
    rng.shuffle(lines)
    for part in range(4):
        with open(os.path.join(folder, f"pages-{part}.jsonl"), "wb") as handle:
            for line, _ in lines[part::4]:
                handle.write(line + b"\n")
    return good, lines


def read_avro(paths):
    records = []
    for path in paths:
        with open(path, "rb") as handle:
            records.extend(fastavro.reader(handle))
    return records


@pytest.mark.slow
def test_nothing_lost_20k_pages(tmp_path, small_model_uri, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    good, lines = write_inputs(str(folder))
    assert len(lines) == TOTAL
    out = tmp_path / "out"

    started = time.monotonic()
    code = cli_main(["run", "--input", str(folder / "*.jsonl"), "--output", str(out), "--model", small_model_uri,
                     "--run_id", "reliability"])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]

    run_dir = out / "reliability"
    decisions = read_avro(sorted(run_dir.glob("decisions-*.avro")))
    dead = read_avro(sorted(run_dir.glob("deadletter-*.avro")))
    marker = json.load(open(run_dir / "_SUCCESS"))

    # Exactly: every input line is one decision or one dead letter.
    assert len(decisions) + len(dead) == TOTAL == marker["counts"]["pages_read"]
    expected_dead = sum(c for k, c in BROKEN.items() if k not in DECIDED_KINDS)
    assert len(dead) == expected_dead
    assert len(decisions) == TOTAL - expected_dead

    # Every dead letter has a reason, and it is the reason of its kind.
    dead_by_kind = Counter()
    for record in dead:
        assert record["error"] and record["stage"], record
        if record["stage"] == "duplicate":
            kind = "redelivered"
            assert record["id"].startswith("good-")
        elif record["stage"] == "normalize":
            # A valid record whose content failed: its raw is the Page (the
            # marker field is not a page field), its id names the kind.
            kind = ID_KINDS[record["id"].split("-")[0]]
        else:
            found = MARKER.search(record["raw"][:300])
            assert found, f"dead letter without its marker: {record['raw'][:200]!r}"
            kind = found.group(1)
        stage, reason = EXPECTED_REASONS[kind]
        assert re.fullmatch(stage, record["stage"]), (kind, record["stage"], record["error"])
        assert re.search(reason, record["error"]), (kind, record["error"])
        dead_by_kind[kind] += 1
    assert dict(dead_by_kind) == {k: c for k, c in BROKEN.items() if k not in DECIDED_KINDS}
    big = [d for d in dead if d["raw"].startswith('{"marker": "kind=page_20mb')]
    assert len(big) == 3 and all(d["raw_truncated"] and len(d["raw"].encode()) <= 1024 * 1024 for d in big)

    # Decisions: every good page once, each new version too, the nested pages decided.
    keys = [(d["id"], d["content_sha256"]) for d in decisions]
    assert len(set(keys)) == len(keys), "a page decided twice"
    ids = Counter(d["id"] for d in decisions)
    assert {p["id"] for p in good} <= set(ids)
    versions = {good[n * 37]["id"] for n in range(BROKEN["duplicate_id_new_content"])}
    assert all(ids[i] == 2 for i in versions), "the same id with new content is decided as a second version"
    assert sum(1 for i in ids if i.startswith("nested-")) == BROKEN["nested_10k"]

    stages = Counter(d["stage"] for d in dead)
    print(f"\nnothing-lost: {TOTAL} pages in ({len(good)} good, {sum(BROKEN.values())} broken: "
          f"{dict(BROKEN)}); {len(decisions)} decisions, {len(dead)} dead letters by kind "
          f"{dict(dead_by_kind)}, by stage {dict(stages)}; flagged {marker['counts']['flagged']}; "
          f"regenwatch run took {elapsed:.1f} s")


def test_redelivered_copies_keep_the_first_in_input_order():
    from regenwatch.pipelines.pages import Page, redelivered_copies, redelivery_key

    refs = [("b.jsonl", 10), ("a.jsonl", 500), ("a.jsonl", 20)]
    assert redelivered_copies(refs) == [(("a.jsonl", 500), ("a.jsonl", 20)), (("b.jsonl", 10), ("a.jsonl", 20))]
    assert redelivered_copies([("a.jsonl", 3)]) == []
    page = Page(id="p", content="Stem cells.", url="https://a.example")
    assert redelivery_key(page) == redelivery_key(Page(id="p", content="Stem cells.", url="https://b.example"))
    assert redelivery_key(page) != redelivery_key(Page(id="p", content="Stem cells!"))
    assert redelivery_key(page) != redelivery_key(Page(id="q", content="Stem cells."))


# --------------------------------------------------------------------------
# Input is read as a stream, never a whole file at a time


def _jsonl_cases():
    rng = random.Random(5)
    for _ in range(1200):
        lines = [bytes(rng.choice(b'ab{}"\r') for _ in range(rng.randrange(0, 30)))
                 for _ in range(rng.randrange(0, 12))]
        yield (b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b""), rng.randrange(3, 40),
               rng.randrange(1, 8), rng.randrange(1, 20))


def test_jsonl_ranges_read_every_line_exactly_once(monkeypatch):
    """Byte ranges (split for parallel reads) give the lines of the whole file, each once, whatever the cut."""
    import io

    from regenwatch.pipelines import pages as pages_module

    monkeypatch.setattr(pages_module, "JSONL_READ_CHUNK", 7)  # chunk edges everywhere
    for data, cap, keep, range_bytes in _jsonl_cases():
        whole = list(pages_module.iter_jsonl_lines(io.BytesIO(data).read, 0, None, cap, keep))
        ranged = []
        for _, start, end in pages_module.jsonl_ranges("f.jsonl", len(data), range_bytes):
            handle = io.BytesIO(data)
            handle.seek(max(start - 1, 0))
            ranged += pages_module.iter_jsonl_lines(handle.read, start, end, cap, keep)
        assert ranged == whole
        expected, offset = [], 0
        for raw in data.split(b"\n")[:len(whole)]:
            length = len(raw) + (1 if offset + len(raw) < len(data) else 0)
            expected.append((offset, length))
            offset += len(raw) + 1
        assert [(line.offset, line.length) for line in whole] == expected
        for line in whole:
            full = data[line.offset:line.offset + line.length]
            if line.length > cap:
                assert line.over_cap and line.data == full[:keep], "only a prefix of an over-long line is kept"
            else:
                assert not line.over_cap and line.data == _strip_end_of_line(full)


def test_small_inputs_are_cut_into_enough_ranges_for_every_worker(tmp_path):
    """One file under 64 MiB is no longer one range (one worker's work): the input is cut into
    JSONL_TARGET_RANGES ranges, down to JSONL_MIN_RANGE_BYTES, and never over JSONL_RANGE_BYTES."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from regenwatch.pipelines import pages as pages_module
    from regenwatch.pipelines.moderate import make_options
    from regenwatch.pipelines.transforms import ReadPages

    assert pages_module.jsonl_range_bytes(0) == pages_module.JSONL_MIN_RANGE_BYTES
    assert pages_module.jsonl_range_bytes(10 << 30) == pages_module.JSONL_RANGE_BYTES
    size = 4 << 20
    ranges = pages_module.jsonl_ranges("f.jsonl", size, pages_module.jsonl_range_bytes(size))
    assert len(ranges) == 16
    # Compressed files are still read whole (never seeked into).
    assert len(pages_module.jsonl_ranges("f.jsonl.gz", size, pages_module.jsonl_range_bytes(size))) == 1

    # End to end: one 1-file input read as several ranges gives every line once.
    rows = [json.dumps({"id": f"p{i}", "content": "word " * (50 + i % 400)}) for i in range(1500)]
    path = tmp_path / "one.jsonl"
    path.write_text("\n".join(rows) + "\n")
    assert path.stat().st_size > 2 * pages_module.JSONL_MIN_RANGE_BYTES
    with beam.Pipeline(options=make_options([])) as p:
        read_pages, dead = p | ReadPages(str(path), 5 * 1024 * 1024)
        assert_that(read_pages | beam.Map(lambda page: page.id), equal_to([f"p{i}" for i in range(1500)]))
        assert_that(dead, _no_records, label="NoDeadLetters")


def _strip_end_of_line(line):
    line = line[:-1] if line.endswith(b"\n") else line
    return line[:-1] if line.endswith(b"\r") else line


def test_a_one_line_file_of_256_mib_is_never_held_whole():
    """The cap holds while reading: memory stays within the line cap plus a few chunks, not the line."""
    import tracemalloc

    from regenwatch.pipelines.pages import DEAD_LETTER_RAW_LIMIT, JSONL_READ_CHUNK, iter_jsonl_lines

    size = 256 * 1024 * 1024
    cap = 2 * 1024 * 1024  # --max_page_bytes of 512 Ki characters
    block = b'{"id": "huge", "content": "' + b"x" * (JSONL_READ_CHUNK - 27)
    filler = b"y" * JSONL_READ_CHUNK
    served = 0

    def read(n):
        # A file that exists only as it is read: one line of 256 MiB, then a small one.
        nonlocal served
        if served >= size:
            tail, served = (b'\n{"id": "next", "content": "after"}\n', size + 1) if served == size else (b"", served)
            return tail
        chunk = block if served == 0 else filler
        chunk = chunk[:min(n, size - served)]
        served += len(chunk)
        return chunk

    tracemalloc.start()
    try:
        lines = list(iter_jsonl_lines(read, max_line_bytes=cap))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    huge, small = lines
    assert huge.over_cap and huge.length == size + 1 and len(huge.data) == DEAD_LETTER_RAW_LIMIT
    assert huge.data.startswith(b'{"id": "huge"') and small.data == b'{"id": "next", "content": "after"}'
    # Bounded by the cap (a line up to the cap must be assembled), not by the line.
    assert peak < cap + 4 * JSONL_READ_CHUNK, f"peak {peak} bytes while reading a 256 MiB line"


class _ReadLog:
    """Wraps the handles FileSystems.open returns and records every read request size."""

    def __init__(self, real_open):
        self.real_open = real_open
        self.requests = []

    def open(self, path, *args, **kwargs):
        log = self

        class Handle:
            def __init__(self, inner):
                self._inner = inner

            def read(self, n=-1):
                log.requests.append((os.path.basename(path), n))
                return self._inner.read(n)

            def readline(self, *a):
                log.requests.append((os.path.basename(path), "readline"))
                return self._inner.readline(*a)

            def readinto(self, buf):
                log.requests.append((os.path.basename(path), len(buf)))
                return self._inner.readinto(buf)

            def __iter__(self):
                log.requests.append((os.path.basename(path), "iter"))
                return iter(self._inner)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self._inner.__exit__(*exc)

            def __getattr__(self, name):
                return getattr(self._inner, name)

        return Handle(self.real_open(path, *args, **kwargs))


def _write_warc(path, n):
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for record in pages(n, seed=9, prefix="warc-"):
            body = record["content"].encode("utf-8")
            http = StatusAndHeaders("200 OK", [("Content-Type", record["content_type"])], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                record["url"], "response", payload=io.BytesIO(body), http_headers=http,
                warc_headers_dict={"WARC-Record-ID": f"<urn:uuid:{record['id']}>"}))


def _no_records(records):
    assert not records, records[:3]


def test_readers_stream_files_in_bounded_reads(tmp_path, monkeypatch):
    """JSONL in byte ranges read 1 MiB at a time; Avro block by block; WARC record by record.

    Every read request the three readers make is recorded: none asks for a
    whole file (no read() / read(-1), no line iteration), none for more than
    1 MiB, while each file is several MiB.
    """
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.testing.util import assert_that

    from regenwatch.pipelines import pages as pages_module
    from regenwatch.pipelines.moderate import make_options
    from regenwatch.pipelines.transforms import ReadPages
    from regenwatch.schemas import load_schema
    from tests.data.synthetic import write_jsonl

    folder = tmp_path / "in"
    folder.mkdir()
    counts = {"jsonl": 9000, "avro": 5000, "warc": 4000}
    write_jsonl(str(folder / "pages.jsonl"), counts["jsonl"], seed=3, prefix="jsonl-")
    with open(folder / "pages.avro", "wb") as handle:
        fastavro.writer(handle, load_schema("page"), [
            {k: r.get(k) for k in ("id", "content", "url", "fetched_at", "content_type")}
            for r in pages(counts["avro"], seed=4, prefix="avro-")])
    _write_warc(str(folder / "crawl.warc.gz"), counts["warc"])
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert all(size > 2 * pages_module.JSONL_READ_CHUNK for size in sizes.values()), sizes

    # 1 MiB ranges: the JSONL file is read as several ranges, as a worker pool would.
    monkeypatch.setattr(pages_module, "JSONL_RANGE_BYTES", 1 << 20)
    log = _ReadLog(FileSystems.open)
    monkeypatch.setattr(FileSystems, "open", staticmethod(log.open))
    total = sum(counts.values())

    def check(ids):
        assert len(ids) == total, f"{len(ids)} pages read, {total} written"
        assert len(set(ids)) == total, "a page read twice at a range boundary"

    with beam.Pipeline(options=make_options([])) as p:
        read_pages, dead = p | ReadPages(str(folder / "*"), 5 * 1024 * 1024)
        assert_that(read_pages | beam.Map(lambda page: page.id), check)
        assert_that(dead, _no_records, label="NoDeadLetters")

    by_file = {}
    for name, request in log.requests:
        by_file.setdefault(name, []).append(request)
    assert set(by_file) == set(sizes), by_file.keys()
    for name, requests in by_file.items():
        unbounded = [r for r in requests if not isinstance(r, int) or r < 0]
        assert not unbounded, f"{name}: whole-file or line-iterating reads {unbounded[:5]}"
        assert max(requests) <= pages_module.JSONL_READ_CHUNK, f"{name}: a read of {max(requests)} bytes"
    jsonl_ranges = pages_module.jsonl_ranges("pages.jsonl", sizes["pages.jsonl"])
    assert len(jsonl_ranges) >= 5


# The peak RSS of a whole ``regenwatch run`` at SMALL and 10x SMALL pages.
# Everything run-wide (re-delivery keys, cluster sketches, flagged records
# waiting for their cluster) is staged to files, so the bigger run may not
# take more than FLAT_TOLERANCE more memory. The 20,000 / 200,000 figures
# (README, "Memory") take a quarter of an hour; this takes ~2 minutes and
# still catches per-page state: the band grouping this replaced (measured
# 1.56 GB at 20,000 pages) would add over a gigabyte here, and anything that
# keeps ~700 bytes per page (16 MB) would fail.
FLAT_SMALL = 2_500
FLAT_TOLERANCE = 1.05
_PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def _peak_rss_kb(tmp_path, n, model_uri):
    import subprocess
    import sys

    folder = tmp_path / f"in{n}"
    folder.mkdir()
    # Four files, short pages (one or two sentences: the run's cost is per page, not per byte).
    handles = [open(folder / f"part-{k}.jsonl", "w", encoding="utf-8") for k in range(4)]
    try:
        for i, record in enumerate(pages(n, seed=n, prefix="m", length=(1, 2))):
            handles[i % 4].write(json.dumps(record) + "\n")
    finally:
        for handle in handles:
            handle.close()
    # A child per size: the wrapper's RUSAGE_CHILDREN is that run's peak alone.
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, sys.executable, "-m", "regenwatch.cli", "run",
         "--input", str(folder / "*.jsonl"), "--output", str(tmp_path / f"out{n}"), "--model", model_uri],
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    marker = json.load(open(tmp_path / f"out{n}" / "_SUCCESS"))
    assert marker["counts"]["pages_read"] == n
    return int(done.stdout.strip().splitlines()[-1])


def test_memory_stays_flat_as_the_run_grows_tenfold(tmp_path, small_model_uri):
    started = time.monotonic()
    small = _peak_rss_kb(tmp_path, FLAT_SMALL, small_model_uri)
    large = _peak_rss_kb(tmp_path, 10 * FLAT_SMALL, small_model_uri)
    print(f"\nmemory: peak RSS {small / 1024:.0f} MB at {FLAT_SMALL} pages, {large / 1024:.0f} MB at "
          f"{10 * FLAT_SMALL} pages (x{large / small:.3f}); {time.monotonic() - started:.0f} s")
    assert large <= FLAT_TOLERANCE * small, f"peak RSS grew from {small} KB to {large} KB"
