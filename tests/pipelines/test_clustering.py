"""Near-duplicate clustering: pure functions, the Beam composite, and the batch job's flagged output."""
import copy
import io
import json

import apache_beam as beam
import fastavro
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from regenwatch.models.text import normalize_page
from regenwatch.pipelines.clustering import (
    ClusterNearDuplicates,
    build_cluster_table,
    cluster_id_for,
    estimated_similarity,
    member_digest,
    minhash_signature,
    shingles,
    sketch,
    sketch_row,
    with_cluster,
)
from regenwatch.pipelines.moderate import run
from regenwatch.pipelines.pages import Page
from regenwatch.schemas import load_schema_json
from tests.review_pages import TEMPLATE, TOWNS, UNRELATED, read_avro, template_rows, unrelated_rows


def _text(content, content_type="text/html"):
    return normalize_page(content, content_type).text


def _sketch(text):
    return sketch(minhash_signature(text))


# --------------------------------------------------------------------------
# Pure functions


def test_shingles_are_case_folded_distinct_word_triples():
    assert shingles("Cure cure CURE cure") == [b"cure cure cure"]
    assert shingles("Stem cells heal") == [b"stem cells heal"]
    assert shingles("two words") == [b"two words"]
    assert shingles("") == []


def test_templated_pages_are_similar_and_unrelated_pages_are_not():
    towns = [_text(TEMPLATE.format(town=t, county=c)) for t, c in TOWNS]
    others = [_text(t, "text/plain") for t in UNRELATED.values()]
    for i in range(len(towns)):
        for j in range(i + 1, len(towns)):
            assert estimated_similarity(_sketch(towns[i]), _sketch(towns[j])) >= 0.6, (TOWNS[i], TOWNS[j])
        for other in others:
            assert estimated_similarity(_sketch(towns[i]), _sketch(other)) < 0.2
    assert estimated_similarity(_sketch(towns[0]), _sketch(towns[0])) == 1.0


def test_signature_is_deterministic_and_bounded_on_a_long_page():
    # 60,000 distinct shingles go through datasketch in chunks; the result is
    # the same as for the same text hashed again.
    text = " ".join(f"w{i}" for i in range(60_000))
    a, b = minhash_signature(text), minhash_signature(text)
    assert a.dtype.name == "uint32" and len(a) == 128
    assert (a == b).all()


def test_exact_duplicates_have_equal_sketches_and_wordless_pages_no_row():
    text = _text(TEMPLATE.format(town="Austin", county="Travis County"))
    a = sketch_row("p1", "aa" * 32, text)
    b = sketch_row("p2", "bb" * 32, text)
    assert len(a) == len(b) == 136
    assert a[8:] == b[8:] and a[:8] != b[:8]
    # No word, no shingle: no row, so such pages never cluster together.
    assert sketch_row("p3", "cc" * 32, "★ … —") is None


def _rows(pages):
    return b"".join(sketch_row(pid, sha, text) for pid, sha, text in pages)


WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()


def _variant(k):
    """18 words with word k replaced: word-3-shingle Jaccard between two variants ~0.5-0.7."""
    words = list(WORDS)
    words[k] = f"town{k}"
    return " ".join(words)


def test_cluster_table_links_similar_pages_only_with_stable_ids_whatever_the_order():
    pages = [("a", "1" * 64, _text(TEMPLATE.format(town="Austin", county="Travis County"), "text/html")),
             ("b", "2" * 64, _text(TEMPLATE.format(town="Boise", county="Ada County"), "text/html")),
             ("c", "3" * 64, "one two three four five six seven eight nine ten eleven twelve"),
             ("d", "4" * 64, "one two three four five six seven eight nine ten eleven twelve"),
             ("e", "5" * 64, "an unrelated sentence about knee pain and the weather in spring")]
    table = build_cluster_table(_rows(pages))
    assert table.pages == 5 and len(table) == 2
    (ida, na), (idb, nb) = table.lookup("a", "1" * 64), table.lookup("b", "2" * 64)
    (idc, nc), (idd, nd) = table.lookup("c", "3" * 64), table.lookup("d", "4" * 64)
    assert ida == idb and na == nb == 2
    assert idc == idd and nc == nd == 2 and idc != ida
    assert table.lookup("e", "5" * 64) == (cluster_id_for([member_digest("e", "5" * 64)]), 1)
    # The id derives from the smallest member digest, and arrival order does not matter.
    assert ida == cluster_id_for([member_digest("a", "1" * 64), member_digest("b", "2" * 64)])
    again = build_cluster_table(_rows(list(reversed(pages))))
    assert [again.lookup(p, s) for p, s, _ in pages] == [table.lookup(p, s) for p, s, _ in pages]
    # A page seen twice (same id, same content) is one member, not a cluster of two.
    twice = build_cluster_table(_rows([pages[4], pages[4]]))
    assert twice.pages == 1 and twice.lookup("e", "5" * 64)[1] == 1


def test_cluster_table_respects_the_representative_cap_and_counts_what_it_left_out():
    exact = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    pages = [(f"p{i}", f"{i:064d}", exact) for i in range(5)]
    table = build_cluster_table(_rows(pages), max_representatives=1)
    # All five are identical: the single representative links them all.
    assert table.lookup("p0", f"{0:064d}")[1] == 5 and table.capped == 0
    unrelated = [(f"q{i}", f"{i:064d}", f"word{i} " * 3 + _variant(i % 10)) for i in range(4)]
    assert build_cluster_table(_rows(unrelated), similarity=1.0).pages == 4
    # Near variants share LSH buckets, but at similarity 1.0 none links to
    # another: with one representative per bucket, every other member of a
    # bucket is left out by the cap and counted; with room for all, none is.
    variants = [(f"v{i}", f"{i + 10:064d}", _variant(i)) for i in range(8)]
    capped = build_cluster_table(_rows(variants), similarity=1.0, max_representatives=1)
    roomy = build_cluster_table(_rows(variants), similarity=1.0, max_representatives=64)
    assert capped.pages == roomy.pages == 8 and len(capped) == len(roomy) == 0
    assert roomy.capped == 0 and capped.capped > 0
    # At the default similarity the same variants link despite the cap: a
    # member left out in one band still meets the representative in another.
    linked = build_cluster_table(_rows(variants), max_representatives=1)
    assert len(linked) >= 1 and linked.capped < capped.capped


def test_cluster_table_rejects_a_torn_buffer():
    with pytest.raises(ValueError):
        build_cluster_table(b"x" * 137)


def test_cluster_table_memory_is_one_small_row_per_page():
    """The state the run holds per page: 136 bytes in, only near-duplicate members in the table."""
    pages = [(f"p{i}", f"{i:064d}", f"page {i} " + " ".join(f"w{i}x{j}" for j in range(40))) for i in range(2000)]
    rows = _rows(pages)
    assert len(rows) == 2000 * 136
    table = build_cluster_table(rows)
    assert table.pages == 2000 and len(table) == 0 and table.digests.nbytes == 0


def test_record_without_near_duplicate_is_its_own_cluster():
    rec = {"id": "p", "content_sha256": "ab" * 32}
    out = with_cluster(rec, None)
    assert out["cluster_size"] == 1
    assert out["cluster_id"] == cluster_id_for([member_digest("p", "ab" * 32)])
    assert "cluster_id" not in rec  # the input record is not mutated


# --------------------------------------------------------------------------
# The composite


def _pairs(rows):
    out = []
    for row in rows:
        page = Page(id=row["id"], content=row["content"], content_type=row.get("content_type"))
        out.append((page, normalize_page(page.content, page.content_type)))
    return out


@pytest.mark.parametrize("staged", [False, True], ids=["combined-in-memory", "staged-to-files"])
def test_composite_groups_templates_and_exact_duplicates_and_keeps_every_flagged_record(staged, tmp_path):
    rows = template_rows() + unrelated_rows()
    # An exact copy of an unrelated page under another id, and a page seen twice.
    rows.append({"id": "knee-clinic-copy", "content": UNRELATED["knee-clinic"], "content_type": "text/plain"})
    rows.append(dict(rows[0]))
    pairs = _pairs(rows)
    # Only some pages are flagged: the clusters still count every page of the run.
    flagged_ids = {"tmpl-austin", "tmpl-boise", "knee-clinic", "fda-warning"}
    flagged = [{"id": p.id, "content_sha256": p.content_sha256(), "score": 0.9}
               for p, _ in pairs if p.id in flagged_ids]
    flagged.append(dict(flagged[0]))  # the duplicate input's flagged record

    def check(records):
        by_id = {}
        for r in records:
            by_id.setdefault(r["id"], []).append(r)
        assert sorted(by_id) == sorted(flagged_ids)
        assert len(records) == len(flagged)
        austin, boise = by_id["tmpl-austin"][0], by_id["tmpl-boise"][0]
        # Four towns of one template (the page seen twice counts once).
        assert austin["cluster_id"] == boise["cluster_id"] and austin["cluster_size"] == 4
        assert all(r["cluster_id"] == austin["cluster_id"] for r in by_id["tmpl-austin"])
        assert by_id["knee-clinic"][0]["cluster_size"] == 2
        assert by_id["fda-warning"][0]["cluster_size"] == 1
        ids = {austin["cluster_id"], by_id["knee-clinic"][0]["cluster_id"], by_id["fda-warning"][0]["cluster_id"]}
        assert len(ids) == 3
        assert all(r["score"] == 0.9 for r in records)

    with TestPipeline() as p:
        out = ((p | "Pages" >> beam.Create(pairs), p | "Flagged" >> beam.Create(flagged))
               | ClusterNearDuplicates(staging=str(tmp_path / "rows") if staged else None))
        assert_that(out, check)
    if staged:
        # The rows went to files (136 bytes per page with words), which the table was built from.
        files = list((tmp_path / "rows").iterdir())
        assert files and sum(f.stat().st_size for f in files) == 136 * len(rows)


def test_composite_with_no_flagged_record_outputs_nothing():
    with TestPipeline() as p:
        out = ((p | "Pages" >> beam.Create(_pairs(unrelated_rows())), p | "Flagged" >> beam.Create([]))
               | ClusterNearDuplicates())
        assert_that(out, equal_to([]))


def test_similarity_must_be_a_share():
    with pytest.raises(ValueError):
        ClusterNearDuplicates(similarity=0)


# --------------------------------------------------------------------------
# The batch job


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory, small_model_uri):
    tmp = tmp_path_factory.mktemp("cluster-run")
    rows = template_rows() + unrelated_rows()
    lines = [json.dumps(r) for r in rows] + ['{"id": "broken", ', json.dumps({"id": "e", "content": " "})]
    path = tmp / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = str(tmp / "out")
    # Threshold 0 flags every page that is decided, so every cluster shows up.
    result = run(["--input", str(path), "--output", out, "--model", small_model_uri, "--threshold", "0"])
    return rows, lines, out, result


def test_batch_job_writes_cluster_fields_and_keeps_pages_in_equal_decisions_plus_dead_letters(batch_run):
    rows, lines, out, result = batch_run
    decisions, dead, flagged = read_avro(out, "decisions"), read_avro(out, "deadletter"), read_avro(out, "flagged")
    assert len(lines) == len(decisions) + len(dead) == result.summary.pages_read
    assert len(dead) == 2 and len(flagged) == len(decisions) == len(rows)
    by_id = {r["id"]: r for r in flagged}
    template_clusters = {by_id[r["id"]]["cluster_id"] for r in template_rows()}
    assert len(template_clusters) == 1
    assert all(by_id[r["id"]]["cluster_size"] == len(TOWNS) for r in template_rows())
    others = [by_id[key] for key in UNRELATED]
    assert all(r["cluster_size"] == 1 for r in others)
    assert len({r["cluster_id"] for r in others} | template_clusters) == len(UNRELATED) + 1
    # Each rationale sentence carries its neighbours from the page's normalized text.
    austin = by_id["tmpl-austin"]
    sentences = list(normalize_page(template_rows()[0]["content"], "text/html").sentences)
    for item in austin["rationale"]:
        i = sentences.index(item["sentence"])
        assert item["context_before"] == sentences[max(0, i - 2):i]
        assert item["context_after"] == sentences[i + 1:i + 3]


def _without_new_fields(schema):
    old = copy.deepcopy(schema)
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("cluster_id", "cluster_size")]
    for f in old["fields"]:
        if f["name"] == "rationale":
            item = f["type"]["items"]
            item["fields"] = [x for x in item["fields"] if not x["name"].startswith("context_")]
    return old


def test_flagged_records_without_cluster_fields_still_resolve_both_ways(batch_run):
    """Readers of the queue before clustering read new files; new readers fill defaults in old files."""
    new_records = read_avro(batch_run[2], "flagged")
    current = load_schema_json("flagged")
    old = _without_new_fields(current)
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(copy.deepcopy(current)), new_records)
    buf.seek(0)
    read_old = list(fastavro.reader(buf, reader_schema=fastavro.parse_schema(copy.deepcopy(old))))
    assert [r["id"] for r in read_old] == [r["id"] for r in new_records]
    assert "cluster_id" not in read_old[0]

    old_style = [{k: v for k, v in r.items() if k not in ("cluster_id", "cluster_size")} for r in read_old]
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(copy.deepcopy(old)), old_style)
    buf.seek(0)
    read_new = list(fastavro.reader(buf, reader_schema=fastavro.parse_schema(copy.deepcopy(current))))
    assert all(r["cluster_id"] is None and r["cluster_size"] == 1 for r in read_new)
    assert all(item["context_before"] == [] for r in read_new for item in r["rationale"])
