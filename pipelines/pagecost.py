"""What a page would cost to normalize, estimated before it is parsed (pure, no Beam).

Normalization (models/text.py) is linear in the page's size everywhere in
our own code, but the HTML parser it uses (selectolax / Lexbor, a
dependency) is not: measured (bench/page_cost.py, docs/ROBUSTNESS.md), its
time grows with the square of

* the depth of open elements when a tag is met (``<div>`` x n, nested lists,
  unclosed formatting elements followed by end tags that reopen them:
  each such tag scans the stack of open elements);
* the attributes of one element (each new attribute is checked against the
  ones before it);
* the options of one ``<select>`` (the option list is re-walked on insert).

A 5 MiB page of any of these shapes would take minutes. :func:`page_work`
is an upper bound of that work in units of roughly 3-7 ns of parser time,
computed in one linear pass over the tags (no parse): the page's length,
plus 500 per character of visible text (the text stages and the model's
features cost 1-5 us a character, linear but not cheap), plus a constant per
tag (the tree walk), plus for every tag the number of elements open at that
point, plus the
square of each tag's attribute count, plus for every option the options
before it in its select. The pipeline refuses a page whose estimate is over
``--max_page_work`` (a dead letter with the estimate and the largest term),
so no admitted page costs more than the budget, whatever its markup.

The estimate errs on the side of the parser: an unclosed ``<span>`` x
100,000 is cheap for Lexbor but estimated like ``<div>`` x 100,000; real
pages stay far below the default (the sample set's largest estimate is in
docs/ROBUSTNESS.md).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional

# Default --max_page_work: ~1-3 s of parser time at the measured 3-7 ns per
# unit, or ~1M characters of visible text (see TEXT_UNITS); a 10,000-level
# <div> nest is 100 M units.
DEFAULT_MAX_PAGE_WORK = 500_000_000
# Each character of visible text (outside tags, comments, scripts and
# styles) costs the text stages and the model's features 1-5 us whatever its
# shape (measured: 1 us in ordinary sentences, 3 us in spaced-out letters,
# 4 us in look-alike-letter words, 5 us in one giant word, whose every
# character n-gram is new): 500 units, the worst case at ~10 ns per unit.
TEXT_UNITS = 500
# Each option of a <select> costs the parser ~4x a level of nesting (measured).
OPTION_UNITS = 4

# Each tag also costs a node or two in the tree that models/text.html_to_text
# walks in Python (~0.3-0.5 us a node: ~100 units).
TAG_UNITS = 100

# A tag: "<" name, or "</" name, then anything up to the next "<" or ">".
# [^<>]* stops at the next "<", so a page of "<a <a <a" is still one pass.
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/<>]{0,40})([^<>]*)>?")
_ATTR = re.compile(r"[^\s=/<>\"']+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>]*))?")
# Elements whose content is text to the parser, not markup: skipped to their end tag.
_RAW_TEXT = frozenset("script style textarea title xmp iframe noembed noframes plaintext".split())
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr keygen frame "
                  "basefont bgsound image isindex menuitem".split())
# A start tag of the key closes an open element of one of these names first (HTML's implied end tags).
_CLOSES = {
    "li": ("li",), "dt": ("dt", "dd"), "dd": ("dt", "dd"), "option": ("option",),
    "optgroup": ("option", "optgroup"), "tr": ("td", "th", "tr"), "td": ("td", "th"), "th": ("td", "th"),
    "tbody": ("td", "th", "tr", "tbody", "thead", "tfoot"), "thead": ("td", "th", "tr", "tbody", "thead"),
    "tfoot": ("td", "th", "tr", "tbody", "thead"), "rb": ("rb", "rt", "rp"), "rt": ("rb", "rt", "rp"),
    "rp": ("rb", "rt", "rp"),
}
_CLOSES_P = frozenset(
    "address article aside blockquote center details dialog dir div dl fieldset figcaption figure footer form "
    "h1 h2 h3 h4 h5 h6 header hgroup hr main menu nav ol p pre section summary table ul li dd dt".split())


@dataclass(frozen=True)
class PageWork:
    """An upper bound of the parser work a page would take, by term (units of ~3-7 ns)."""

    length: int = 0
    text: int = 0
    tags: int = 0
    depth: int = 0
    attributes: int = 0
    options: int = 0
    max_depth: int = 0
    max_attributes: int = 0
    # True when the scan stopped early, its total already over ``stop_above``:
    # the figures are then a lower bound of the page's, and over the budget.
    partial: bool = False

    @property
    def total(self) -> int:
        return (self.length + TEXT_UNITS * self.text + TAG_UNITS * self.tags + self.depth + self.attributes
                + OPTION_UNITS * self.options)

    def describe(self) -> str:
        terms = {"open elements at each tag": self.depth, "attribute pairs": self.attributes,
                 "options per select": OPTION_UNITS * self.options, "characters": self.length,
                 "tags": TAG_UNITS * self.tags, f"{self.text:,} characters of text": TEXT_UNITS * self.text}
        largest = max(terms, key=terms.get)
        return (f"{'at least ' if self.partial else ''}{self.total:,} units ({largest}: {terms[largest]:,}; "
                f"deepest nesting {self.max_depth:,}, "
                f"most attributes on one element {self.max_attributes:,})")


def page_work(content: str, is_html: bool = True, stop_above: Optional[int] = None) -> PageWork:
    """The work estimate of one page, in one pass over its tags (linear in its length).

    With ``stop_above``, the scan stops as soon as the estimate so far is
    over it (checked every 1,024 tags), so refusing a page costs no more than
    scanning the part of it that fits the budget.
    """
    if not is_html:
        return PageWork(length=len(content), text=len(content))
    stack: List[str] = []
    open_count: Dict[str, int] = {}
    depth = attributes = options = tags = 0
    max_depth = max_attributes = 0
    select_options: List[int] = []  # options so far in each open <select>
    n = len(content)
    pos = 0
    markup = 0  # characters in tags, comments and raw-text elements: not text
    has_comments = "<!--" in content
    search = _TAG.search
    find_attrs = _ATTR.findall
    closes_get = _CLOSES.get
    check_at = 1024
    while True:
        if stop_above is not None and tags >= check_at:
            check_at = tags + 1024
            so_far = (pos + TEXT_UNITS * max(pos - markup, 0) + TAG_UNITS * tags + depth + attributes
                      + OPTION_UNITS * options)
            if so_far > stop_above:
                return PageWork(length=pos, text=max(pos - markup, 0), tags=tags, depth=depth,
                                attributes=attributes, options=options, max_depth=max_depth,
                                max_attributes=max_attributes, partial=True)
        m = search(content, pos)
        if m is None:
            break
        if has_comments:
            # A comment between the last tag and this one hides what follows up to its end.
            comment = content.find("<!--", pos, m.start())
            if comment >= 0:
                end = content.find("-->", comment + 4)
                if end < 0:
                    markup += n - comment
                    pos = n
                    break
                markup += end + 3 - comment
                pos = end + 3
                continue
        pos = m.end()
        markup += pos - m.start()
        tags += 1
        closing, name, body = m.groups()
        name = name.lower()
        level = len(stack)
        depth += level
        if closing:
            if open_count.get(name):
                while stack:
                    top = stack.pop()
                    open_count[top] -= 1
                    if top == "select" and select_options:
                        select_options.pop()
                    if top == name:
                        break
            continue
        if body and not body.isspace():
            count = len(find_attrs(body))
            attributes += count * count
            if count > max_attributes:
                max_attributes = count
        if stack:
            closes = closes_get(name, ())
            while stack and (stack[-1] in closes or (stack[-1] == "p" and name in _CLOSES_P)):
                top = stack.pop()
                open_count[top] -= 1
                if top == "select" and select_options:
                    select_options.pop()
        if select_options and (name == "option" or name == "optgroup"):
            options += select_options[-1]
            select_options[-1] += 1
        if name in _RAW_TEXT:
            end = _find_end_tag(content, name, pos)
            if end < 0:
                markup += n - pos
                pos = n
                break
            markup += end - pos
            pos = end
            continue
        if name in _VOID:
            continue
        stack.append(name)
        open_count[name] = open_count.get(name, 0) + 1
        if name == "select":
            select_options.append(0)
        if level >= max_depth:
            max_depth = level + 1
    if has_comments and pos < n:
        comment = content.find("<!--", pos)
        if comment >= 0:
            end = content.find("-->", comment + 4)
            markup += (n if end < 0 else end + 3) - comment
    return PageWork(length=n, text=max(n - markup, 0), tags=tags, depth=depth, attributes=attributes, options=options, max_depth=max_depth,
                    max_attributes=max_attributes)


_LONG_TAG = re.compile(r"<[^<>]{1000}")


def quick_bound(content: str, is_html: bool = True) -> int:
    """An upper bound of ``page_work(content).total`` from two C-speed passes, without the tag scan.

    With T the number of "<": at most T tags, each with at most T elements
    open and at most T options before it; when no tag runs 1,000 characters
    without a ">", each has fewer than 1,000 attributes, so the attribute
    pairs are under 1,000 per character. Most pages are far within the
    budget by this bound and skip the scan (~1 us a tag in Python).
    """
    n = len(content)
    if not is_html:
        return n + TEXT_UNITS * n
    if _LONG_TAG.search(content):
        return n * n + (TEXT_UNITS + 1) * n  # no cheap bound on one tag's attributes: scan
    tags = content.count("<")
    return (1 + TEXT_UNITS + 1000) * n + TAG_UNITS * tags + (1 + OPTION_UNITS) * tags * tags


_END_TAGS = {name: re.compile(r"</" + name, re.IGNORECASE) for name in _RAW_TEXT}


def _find_end_tag(content: str, name: str, pos: int) -> int:
    """Start of the end tag ``</name`` (any case) at or after pos, or -1, without copying the page."""
    m = _END_TAGS[name].search(content, pos)
    return m.start() if m else -1
