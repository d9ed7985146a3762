"""The other readers (review, sample, train --feedback, stream): a bad file is a clear error, never a traceback."""
from __future__ import annotations

import gzip
import json
import types

import apache_beam as beam
import fastavro
import pytest
from apache_beam.io.filesystem import FileMetadata

from regenwatch.cli import main as cli_main
from regenwatch.reading import InputFileError
from regenwatch.schemas import load_schema
from regenwatch.training.feedback import FeedbackError, read_verdicts
from regenwatch.training.sampling import iter_input_pages

SHA = "a" * 64
VERDICT = {"id": "p1", "content_sha256": SHA, "verdict": "reject", "categories": [], "reviewer": "ann",
           "decided_at": 1}


def _decisions(path, n=3):
    with open(path, "wb") as handle:
        fastavro.writer(handle, load_schema("decision"), [
            {"id": f"p{i}", "url": None, "score": 0.5, "flagged": False, "severity": None, "model_version": "m",
             "content_sha256": SHA, "processed_at": 1} for i in range(n)])


BAD_PAGE_FILES = {
    "cut.jsonl.gz": lambda: _half(gzip.compress(b"".join(
        b'{"id": "p%d", "content": "Stem cells."}\n' % i for i in range(5000)))),
    "garbage.avro": lambda: b"Obj\x01" + b"\xff" * 64,
    "cut.avro": lambda: _avro_bytes()[:-40],
    "bomb.jsonl.gz": lambda: gzip.compress(b"x" * (40 << 20)),
    "cut.warc.gz": lambda: open(__import__("os").path.join(
        __import__("os").path.dirname(__file__), "data", "sample.warc.gz"), "rb").read()[:3000],
}


def _half(data):
    return data[:len(data) // 2]


def _avro_bytes():
    import io

    buf = io.BytesIO()
    fastavro.writer(buf, load_schema("page"), [
        {"id": f"a{i}", "content": "Stem cells. " * 50, "url": None, "fetched_at": None, "content_type": None}
        for i in range(200)], codec="deflate", sync_interval=500)
    return buf.getvalue()


@pytest.mark.parametrize("name", sorted(BAD_PAGE_FILES))
def test_sample_names_a_bad_page_file_and_where(tmp_path, capsys, name):
    out = tmp_path / "out"
    out.mkdir()
    _decisions(out / "decisions-00000-of-00001.avro")
    bad = tmp_path / name
    bad.write_bytes(BAD_PAGE_FILES[name]())
    code = cli_main(["sample", str(out), "--uncertain", "2", "--threshold", "0.5", "--pages", str(bad),
                     "--out", str(tmp_path / "to_label.jsonl")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(bad) in err and "Traceback" not in err
    assert any(word in err for word in ("line", "record", "cannot be read", "not a readable")), err


def test_page_files_with_bom_crlf_utf16_and_bad_records_are_read_like_the_pipeline(tmp_path):
    rows = [{"id": f"p{i}", "content": "Stem cells cure."} for i in range(5)]
    text = "".join(json.dumps(r) + "\r\n" for r in rows)
    (tmp_path / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + text.encode() + b"[[[[" * 50000 + b"\n")
    (tmp_path / "b.jsonl").write_bytes(text.replace("p", "q").encode("utf-16"))
    ids = [p.id for p in iter_input_pages([str(tmp_path / "*.jsonl")])]
    assert ids == [f"p{i}" for i in range(5)] + [f"q{i}" for i in range(5)]


@pytest.mark.parametrize("content, where", [
    (b"\xff\xfe\xfa not utf-8\n", ":1"),
    (json.dumps(VERDICT).encode() + b"\n" + b"[" * 100_000 + b"\n", ":2"),
    (json.dumps({**VERDICT, "decided_at": 7}).replace('"decided_at": 7', '"decided_at": ' + "9" * 5000).encode()
     + b"\n", ":1"),
    (json.dumps({**VERDICT, "decided_at": 7}).replace('"decided_at": 7', '"decided_at": 1e999').encode()
     + b"\n", ":1"),
    (json.dumps({**VERDICT, "reviewer": {"a": [1, 2]}}).encode() + b"\n", ":1"),
    (json.dumps({**VERDICT, "id": "p\udc00"}).encode() + b"\n", ":1"),
])
def test_a_bad_verdict_file_names_the_file_and_line(tmp_path, content, where):
    path = tmp_path / "verdicts.jsonl"
    path.write_bytes(content)
    with pytest.raises(FeedbackError) as info:
        read_verdicts([str(path)])
    assert f"{path}{where}" in str(info.value)


def test_verdicts_with_a_bom_and_crlf_are_read(tmp_path):
    path = tmp_path / "verdicts.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(VERDICT).encode() + b"\r\n\r\n" + json.dumps(VERDICT).encode())
    assert [v["id"] for v in read_verdicts([str(path)])] == ["p1", "p1"]


def test_train_feedback_with_a_corrupt_verdict_file_exits_2_with_its_name(tmp_path, capsys):
    path = tmp_path / "verdicts.avro"
    path.write_bytes(b"Obj\x01garbage")
    code = cli_main(["train", "--feedback", str(path), "--out", str(tmp_path / "m.joblib")])
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err and "Traceback" not in err, err


@pytest.mark.parametrize("content", [b"not avro at all", b"Obj\x01" + b"\x00" * 10, None])
def test_review_names_a_bad_output_file(tmp_path, capsys, content):
    out = tmp_path / "out"
    out.mkdir()
    path = out / "flagged-00000-of-00001.avro"
    if content is None:
        # A readable Avro file that is not a flagged output: its schema is named as wrong.
        with open(path, "wb") as handle:
            fastavro.writer(handle, load_schema("page"), [
                {"id": "a", "content": "b", "url": None, "fetched_at": None, "content_type": None}])
    else:
        path.write_bytes(content)
    code = cli_main(["review", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err and "Traceback" not in err, err


def test_stream_reads_bad_files_into_dead_letters(tmp_path):
    from regenwatch.pipelines.streaming import ReadStreamFileFn

    files = {
        "deep.jsonl": b"[" * 100_000 + b"\n" + json.dumps({"id": "ok", "content": "Stem cells."}).encode() + b"\n",
        "bomb.jsonl.gz": gzip.compress(b"x" * (40 << 20)),
        "utf16.jsonl": (json.dumps({"id": "u", "content": "PRP heals."}) + "\n").encode("utf-16"),
        "cut.avro": _avro_bytes()[:-40],
    }
    fn = ReadStreamFileFn(1 << 20)
    pages, dead = [], []
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        readable = types.SimpleNamespace(metadata=FileMetadata(str(path), len(data)))
        for item in fn.process(readable):
            (dead.append(item.value) if isinstance(item, beam.pvalue.TaggedOutput) else pages.append(item))
    assert {p.id for p in pages} >= {"ok", "u"}
    assert sorted(d["stage"] for d in dead) == ["parse", "read", "read"]
    assert any("--max_expansion_ratio" in d["error"] for d in dead)


def test_checked_names_the_unit():
    def items():
        yield 1
        raise EOFError("cut")

    with pytest.raises(InputFileError, match=r"f.bin: record 2 cannot be read: EOFError: cut"):
        list(__import__("regenwatch.reading", fromlist=["checked"]).checked("f.bin", items()))
