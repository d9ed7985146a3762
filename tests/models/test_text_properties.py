"""Property tests of parsing and normalization on hostile input (hypothesis).

What is promised (models/text.py, pipelines/pages.py):

* parsing and normalization raise nothing but the project's typed errors
  (PageError and its subclasses, InputError for records);
* normalization is a fixed point: folding folded text changes nothing, and
  normalizing the normalized text gives the same sentences;
* work is bounded by caps that are options (``max_chars``/``--max_page_bytes``,
  ``max_sentences``/``--max_sentences``, MAX_SENTENCE_CHARS per sentence).
  Pathological pages are checked on the work done (sentences produced,
  boundaries examined, chunk sizes), never on time. The regex fixes they
  forced (a run of 1 MB of '!' was quadratic) are covered by the cases below
  finishing at all: before the fix they ran for hours.
"""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regenwatch.models import text as text_module
from regenwatch.models.text import (
    DEFAULT_MAX_SENTENCES,
    MAX_SENTENCE_CHARS,
    ContentTooLarge,
    PageError,
    fold_text,
    html_to_text,
    normalize_page,
    split_sentences,
)
from regenwatch.pipelines.pages import InputError, page_from_json_line, page_from_record

# REGENWATCH_HYPOTHESIS_EXAMPLES=5000 for a long bug hunt; the suite's default
# keeps this file to about 20 seconds.
EXAMPLES = int(os.environ.get("REGENWATCH_HYPOTHESIS_EXAMPLES", "200"))
PROPERTY_SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])

# Characters that exercise every branch of the folding: Latin, Cyrillic and
# Greek look-alikes, zero-width and control characters, NFKC compatibility
# forms (ligatures, full-width, superscripts, Hangul jamo), separators used by
# letter spacing, sentence punctuation, CJK stops, markup and surrogates.
HOSTILE_ALPHABET = (
    "abcxyzACEHOPT eе оoаa рp сc іi ΑΒΕΗΙΚΜΝΟΡΤΥΧαοινρ"
    "\u200b\u200c\u200d\u2060\ufeff\u00ad\x00\x01\x07\x0b\x0c\x1b\x7f\x85\x9f\r\n\t"
    "ﬁﬂＡＢａｂ１２¹²가…‥ \u00a0\u2003\u3000\u2028\u2029"
    ".!?-*_ \"'”’)]。！？•–—<>/&;=#"
)
hostile_text = st.one_of(
    st.text(alphabet=HOSTILE_ALPHABET, max_size=300),
    st.text(max_size=300),  # all of Unicode, surrogates included
    st.lists(st.sampled_from(["<p>", "</p>", "<div>", "<li>", "<script>", "</script>", "<!--", "-->",
                              "<br>", "Dr.", "e.g.", "c u r e s", "с.т.е.м", "Exоsоmе", " ", ". ", "!",
                              "\n", "&amp;", "&#0;", "<![CDATA[", "]]>", "<nav>", "</nav>", "ＦＤＡ"]),
             max_size=60).map("".join),
)
content_types = st.sampled_from([None, "text/html", "text/plain", "application/xhtml+xml", "TEXT/HTML; x"])


def _normalize_or_typed_error(content, content_type=None, **caps):
    try:
        return normalize_page(content, content_type, **caps)
    except PageError:
        return None


# --------------------------------------------------------------------------
# Only typed errors


@PROPERTY_SETTINGS
@given(hostile_text, content_types)
def test_normalize_raises_only_page_errors(content, content_type):
    page = _normalize_or_typed_error(content, content_type)
    if page is not None:
        assert page.sentences and len(page.sentences) <= DEFAULT_MAX_SENTENCES
        assert all(s and len(s) <= MAX_SENTENCE_CHARS for s in page.sentences)


@PROPERTY_SETTINGS
@given(st.one_of(st.binary(max_size=400), hostile_text.map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_json_line_parsing_raises_only_input_errors(line):
    try:
        page = page_from_json_line(line)
    except InputError:
        return
    assert isinstance(page.id, str) and isinstance(page.content, str) and page.content.strip()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
record_like = st.fixed_dictionaries(
    {},
    optional={"id": json_values | hostile_text, "content": json_values | hostile_text, "url": json_values,
              "fetched_at": json_values, "content_type": json_values | content_types},
)


@PROPERTY_SETTINGS
@given(st.one_of(record_like, json_values))
def test_record_validation_raises_only_input_errors(record):
    try:
        page = page_from_record(record)
    except InputError:
        return
    assert page.id.strip() and page.content.strip()
    json.loads(page.to_json())  # what a dead letter would carry is valid JSON


@PROPERTY_SETTINGS
@given(hostile_text)
def test_html_to_text_never_raises(content):
    assert isinstance(html_to_text(content), str)


# --------------------------------------------------------------------------
# Idempotence


@PROPERTY_SETTINGS
@given(hostile_text)
def test_fold_text_is_idempotent(raw):
    once, _ = fold_text(raw)
    twice, signals = fold_text(once)
    assert twice == once
    assert signals == [], f"folded text still shows obfuscation: {signals}"


@PROPERTY_SETTINGS
@given(hostile_text, content_types)
def test_normalizing_normalized_text_gives_the_same_sentences(content, content_type):
    page = _normalize_or_typed_error(content, content_type)
    if page is None:
        return
    again = normalize_page(page.text, "text/plain")
    assert again.sentences == page.sentences
    assert again.text == page.text


@PROPERTY_SETTINGS
@given(hostile_text, st.integers(min_value=1, max_value=5))
def test_sentence_cap_is_a_prefix(content, cap):
    folded, _ = fold_text(content)
    capped = split_sentences(folded, max_sentences=cap)
    full = split_sentences(folded, max_sentences=10_000)
    assert capped == full[:cap]


# --------------------------------------------------------------------------
# Pathological pages: bounded work, checked on the work done

MB = 1 << 20
PATHOLOGICAL = {
    "a megabyte of '<'": ("<" * MB, "text/html"),
    "a megabyte of '<' as text": ("<" * MB, "text/plain"),
    "a 1 MB word": ("w" * MB, "text/plain"),
    "100k sentences": ("Cures all. " * 100_000, "text/plain"),
    "'a.' * 10**5": ("a." * 10 ** 5, "text/plain"),
    "'. ' * 10**5": (". " * 10 ** 5, "text/plain"),
    "a megabyte of '!'": ("!" * MB + " Then words.", "text/plain"),
    "'Dr. ' * 10**5": ("Dr. " * 10 ** 5, "text/plain"),
    "'c u r e s ' spaced for 1 MB": ("c u r e s " * (MB // 10), "text/plain"),
    "10,000 nested divs": ("<div>" * 10_000 + "deep text" + "</div>" * 10_000, "text/html"),
    "50,000 nested inline tags": ("<b><i>" * 50_000 + "inner" + "</i></b>" * 50_000, "text/html"),
    "unclosed script of 1 MB": ("<p>visible</p><script>" + "x" * MB, "text/html"),
    "unclosed comment of 1 MB": ("<p>visible</p><!--" + "y " * (MB // 2), "text/html"),
}


@pytest.fixture(scope="module")
def pathological_results():
    """Each pathological page normalized once: NormalizedPage, or None for a typed refusal."""
    return {name: _normalize_or_typed_error(content, content_type)
            for name, (content, content_type) in PATHOLOGICAL.items()}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_page_does_bounded_work(name, pathological_results):
    content, _ = PATHOLOGICAL[name]
    page = pathological_results[name]
    if page is None:
        return  # a typed refusal (nothing left to score) is a finished page too
    assert len(page.sentences) <= DEFAULT_MAX_SENTENCES
    assert all(len(s) <= MAX_SENTENCE_CHARS for s in page.sentences)
    assert len(page.text) <= len(content)


def test_expected_outcomes_of_some_pathological_pages(pathological_results):
    results = pathological_results
    assert results["a megabyte of '<'"] is None
    assert results["10,000 nested divs"].sentences == ("deep text",)
    assert results["50,000 nested inline tags"].sentences == ("inner",)
    assert results["unclosed script of 1 MB"].sentences == ("visible",)
    assert results["100k sentences"].sentences[:2] == ("Cures all.", "Cures all.")
    assert len(results["100k sentences"].sentences) == DEFAULT_MAX_SENTENCES
    word = results["a 1 MB word"]
    assert len(word.sentences) == (MB + MAX_SENTENCE_CHARS - 1) // MAX_SENTENCE_CHARS
    assert "".join(word.sentences) == "w" * MB  # cut into chunks, nothing lost
    assert results["a megabyte of '!'"].sentences[-1] == "Then words."
    assert "spaced_letters" in results["'c u r e s ' spaced for 1 MB"].signals


class CountingPattern:
    """Wraps a compiled regex and counts the matches a caller pulls from finditer."""

    def __init__(self, pattern):
        self.pattern = pattern
        self.pulled = 0

    def finditer(self, string):
        for m in self.pattern.finditer(string):
            self.pulled += 1
            yield m


def test_sentence_cap_stops_the_splitter_early(monkeypatch):
    counter = CountingPattern(text_module._BOUNDARY)
    monkeypatch.setattr(text_module, "_BOUNDARY", counter)
    page = normalize_page("Cures all. " * 100_000, "text/plain", max_sentences=50)
    assert len(page.sentences) == 50
    # 100k boundaries exist; only those up to the cap were examined.
    assert counter.pulled <= 51


def test_long_word_chunking_stops_at_the_cap():
    sentences = split_sentences("z" * (5 * MB), max_sentences=3)
    assert sentences == ["z" * MAX_SENTENCE_CHARS] * 3


def test_page_size_cap_is_checked_before_any_parsing(monkeypatch):
    def parse_forbidden(_html):
        raise AssertionError("parsed a page over the cap")

    monkeypatch.setattr(text_module, "html_to_text", parse_forbidden)
    with pytest.raises(ContentTooLarge):
        normalize_page("<p>" + "x" * 2000, "text/html", max_chars=1000)


def test_caps_are_pipeline_options_with_defaults():
    from regenwatch.pipelines.moderate import make_options
    from regenwatch.pipelines.options import RegenwatchOptions

    defaults = make_options([]).view_as(RegenwatchOptions)
    assert defaults.max_sentences == DEFAULT_MAX_SENTENCES
    assert defaults.max_page_bytes == text_module.DEFAULT_MAX_CONTENT_CHARS
    custom = make_options(["--max_sentences", "7", "--max_page_bytes", "1000"]).view_as(RegenwatchOptions)
    assert (custom.max_sentences, custom.max_page_bytes) == (7, 1000)
