"""The compact re-delivery index: 28-byte rows in, {copy: decided copy} out."""
import pytest

from regenwatch.pipelines.pages import Page, redelivered_copies
from regenwatch.pipelines.redelivery import (
    ROW_BYTES,
    RedeliveryMapCombineFn,
    file_index,
    redelivered_map,
    redelivery_row,
)

FILES = ["b.jsonl", "a.jsonl"]


def _page(pid, content, source, position):
    return Page(id=pid, content=content, source=source, position=position)


def _rows(pages):
    index = file_index(FILES)
    return b"".join(redelivery_row(p, index) for p in pages)


def test_rows_are_fixed_size_and_the_first_copy_in_input_order_is_decided():
    pages = [
        _page("p", "Stem cells.", "b.jsonl", 10),
        _page("p", "Stem cells.", "a.jsonl", 500),
        _page("p", "Stem cells.", "a.jsonl", 20),
        _page("p", "Stem cells!", "a.jsonl", 30),   # a new version, not a copy
        _page("q", "Stem cells.", "a.jsonl", 40),   # another page with the same text
    ]
    rows = _rows(pages)
    assert len(rows) == ROW_BYTES * len(pages)
    got = redelivered_map(rows, FILES)
    assert got == {("a.jsonl", 500): ("a.jsonl", 20), ("b.jsonl", 10): ("a.jsonl", 20)}
    # Same answer as the reference implementation over the grouped refs.
    refs = [("b.jsonl", 10), ("a.jsonl", 500), ("a.jsonl", 20)]
    assert dict(redelivered_copies(refs)) == got
    # Arrival order does not matter.
    assert redelivered_map(_rows(list(reversed(pages))), FILES) == got


def test_the_same_record_read_twice_is_not_its_own_copy_and_empty_is_empty():
    page = _page("p", "x", "a.jsonl", 3)
    assert redelivered_map(_rows([page, page]), FILES) == {}
    assert redelivered_map(b"", FILES) == {}
    with pytest.raises(ValueError):
        redelivered_map(b"\0" * (ROW_BYTES + 1), FILES)


def test_a_page_from_outside_the_matched_files_is_an_error_not_a_silent_miss():
    with pytest.raises(ValueError, match="not one of the matched input files"):
        redelivery_row(_page("p", "x", "elsewhere.jsonl", 1), file_index(FILES))
    # Pages without a source (fed by beam.Create) share the empty source.
    assert len(redelivery_row(Page(id="p", content="x"), file_index(FILES))) == ROW_BYTES


def test_combine_fn_merges_partial_buffers_like_one():
    pages = [_page("p", "Stem cells.", f, pos) for f, pos in (("b.jsonl", 1), ("a.jsonl", 9), ("a.jsonl", 2))]
    fn = RedeliveryMapCombineFn(FILES)
    parts = []
    for page in pages:
        acc = fn.create_accumulator()
        parts.append(fn.add_input(acc, redelivery_row(page, file_index(FILES))))
    merged = fn.extract_output(fn.merge_accumulators(parts))
    assert merged == {("a.jsonl", 9): ("a.jsonl", 2), ("b.jsonl", 1): ("a.jsonl", 2)}


def test_state_is_28_bytes_per_page():
    pages = [_page(f"p{i}", f"content {i}", "a.jsonl", i) for i in range(10_000)]
    rows = _rows(pages)
    assert len(rows) == 28 * 10_000
    assert redelivered_map(rows, FILES) == {}
