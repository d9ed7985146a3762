"""Pure text functions shared by training and serving.

Everything the classifier sees goes through :func:`normalize_page`, in the
training command and in the pipeline alike, so the two cannot drift. The
functions here are deterministic, never raise anything but :class:`PageError`
subclasses on bad content, and keep their work bounded on hostile input
(no recursion over the HTML tree, no backtracking-prone regexes, caps on
sentence length and count).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

from selectolax.lexbor import LexborHTMLParser

# --------------------------------------------------------------------------
# Errors


class PageError(ValueError):
    """A page that cannot be processed; ``stage`` names where it failed."""

    stage = "normalize"


class EmptyContent(PageError):
    pass


class BinaryContent(PageError):
    pass


class ContentTooLarge(PageError):
    pass


# --------------------------------------------------------------------------
# Defaults (the pipeline exposes them as options)

DEFAULT_MAX_CONTENT_CHARS = 5 * 1024 * 1024
DEFAULT_MAX_SENTENCES = 2000
MAX_SENTENCE_CHARS = 600

# --------------------------------------------------------------------------
# HTML to text

# Elements whose text never belongs to the page's own message: code, styling,
# site chrome. nav/header/footer are where menus and cookie banners live, and
# scripts often carry claim-like strings (SEO blobs) that must not be scored.
_DROP_TAGS = frozenset(
    "script style noscript template nav header footer svg iframe object embed "
    "canvas head title select option button form input textarea".split()
)
# Elements after which a reader sees a line break.
_BLOCK_TAGS = frozenset(
    "address article aside blockquote body br dd details dialog div dl dt "
    "fieldset figcaption figure h1 h2 h3 h4 h5 h6 hr html li main ol p pre "
    "section summary table tbody td tfoot th thead tr ul caption center".split()
)

_HTML_SNIFF = re.compile(
    r"<\s*(?:!doctype|html|head|body|div|p|span|br|a\s|li|ul|h[1-6]|script|meta|table|section|article)\b",
    re.IGNORECASE,
)


def looks_like_html(content: str) -> bool:
    """Sniff HTML from the first few KB (used when content_type is absent)."""
    return bool(_HTML_SNIFF.search(content[:4096]))


def html_to_text(html: str) -> str:
    """Visible text of an HTML document, one line per block element.

    Walks the tree with an explicit stack, so a page nested 10,000 levels deep
    costs time linear in its size and never hits Python's recursion limit.
    """
    tree = LexborHTMLParser(html)
    root = tree.root
    if root is None:
        return ""
    out: List[str] = []
    # Stack items: (node, closing); closing=True emits the break after a block.
    stack: List[Tuple[object, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            out.append("\n")
            continue
        tag = node.tag
        if tag == "-text":
            text = node.text_content
            if text:
                out.append(text)
            continue
        if tag in _DROP_TAGS or tag == "-comment" or tag == "_comment":
            continue
        if tag in _BLOCK_TAGS:
            out.append("\n")
            stack.append((node, True))
        children = []
        child = node.child
        while child is not None:
            children.append(child)
            child = child.next
        for child in reversed(children):
            stack.append((child, False))
    return "".join(out)


# --------------------------------------------------------------------------
# Character-level folding

# Zero-width and invisible formatting characters used to break up words.
_ZERO_WIDTH = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e\u034f"), None
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

# Cyrillic and Greek letters that render like Latin ones (Unicode
# confusables, restricted to the common one-to-one lookalikes).
_CONFUSABLES = {
    # Cyrillic lower
    "а": "a", "в": "b", "с": "c", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i",
    "ј": "j", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "г": "r", "ѕ": "s",
    "т": "t", "у": "y", "х": "x", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ү": "y", "ɡ": "g",
    "п": "n", "ь": "b", "ӏ": "l",
    # Cyrillic upper
    "А": "A", "В": "B", "С": "C", "Е": "E", "Ё": "E", "Н": "H", "І": "I", "Ї": "I",
    "Ј": "J", "К": "K", "М": "M", "О": "O", "Р": "P", "Ѕ": "S", "Т": "T", "У": "Y",
    "Х": "X", "Ү": "Y", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
    # Greek lower
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ω": "w",
    # Greek upper
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
}
_CONFUSABLE_TABLE = str.maketrans(_CONFUSABLES)
_WORD = re.compile(r"\w+")


def _script(ch: str) -> Optional[str]:
    """'latin', 'cyrillic', 'greek' or None for one letter (fast paths first)."""
    o = ord(ch)
    if o < 0x250:
        return "latin" if ch.isalpha() else None
    if 0x400 <= o < 0x530:
        return "cyrillic"
    if 0x370 <= o < 0x400:
        return "greek"
    if 0x1E00 <= o < 0x1F00:
        return "latin"
    return None


# The same classes as _script(), as regexes: counting letters of a whole page
# with a Python loop over characters was the top cost of training.
_LATIN_LETTER = re.compile("[A-Za-z\u00aa\u00b5\u00ba\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff]")
_OTHER_LETTER = re.compile("[\u0370-\u052f]")


def _script_counts(text: str) -> Tuple[int, int]:
    """(Latin letters, Cyrillic/Greek characters) in text."""
    other = len(_OTHER_LETTER.findall(text))
    if not other:
        return 0, 0
    return len(_LATIN_LETTER.findall(text)), other


def _word_scripts(word: str) -> Tuple[bool, bool]:
    """(any Latin letter, any Cyrillic/Greek character) in word, as _script() classes them.

    Two regex searches instead of _script() per character: the same classes
    (checked over every code point), and this ran for every word of a page
    holding any Cyrillic or Greek letter (most of normalization's cost there).
    """
    return _LATIN_LETTER.search(word) is not None, _OTHER_LETTER.search(word) is not None


# A lone Greek letter used as a scientific symbol: "TGF-β", "IL-1β", "β細胞"
# (the word holds one Greek letter and no other Cyrillic/Greek one), or a
# Greek suffix on an upper-case or numeric name: "TNFα", "HIF1α", "IFNγ".
# Research and clinic pages are full of them; folding them would change the
# words and raise the obfuscation signal on honest pages. Obfuscators swap
# letters inside ordinary lower-case words, which these rules never spare.
_SYMBOL_SUFFIX = re.compile(r"^[A-Z0-9][A-Z0-9-]*[\u0370-\u03ff]$")


def _is_greek_symbol(word: str) -> bool:
    others = [c for c in word if _script(c) in ("cyrillic", "greek")]
    if len(others) != 1 or _script(others[0]) != "greek":
        return False
    if not any(_script(c) == "latin" for c in word):
        return True
    return bool(_SYMBOL_SUFFIX.match(word))


def fold_homoglyphs(text: str) -> Tuple[str, int]:
    """Fold Cyrillic/Greek look-alike letters to Latin inside Latin-script words.

    A word is folded when it mixes Latin with Cyrillic/Greek letters, or when it
    is written only in confusable letters on a page whose letters are mostly
    Latin (obfuscators swap whole short words such as "оn"). Genuine Russian or
    Greek text is left alone: its words contain non-confusable letters and its
    page is not mostly Latin. Returns the text and the number of words folded.

    Two passes, mixed words first: "mostly Latin" is judged on the page after
    its mixed words are folded. Judged before, folding could tip the balance
    and a second call would fold more (fold_text must be a fixed point).
    """
    latin, other = _script_counts(text)
    if other == 0:
        return text, 0
    folded = 0

    def fold_mixed(m: "re.Match[str]") -> str:
        nonlocal folded
        word = m.group(0)
        has_latin, has_other = _word_scripts(word)
        if not (has_latin and has_other) or _is_greek_symbol(word):
            return word
        translated = word.translate(_CONFUSABLE_TABLE)
        if translated != word:
            folded += 1
        return translated

    text = _WORD.sub(fold_mixed, text)
    latin, other = _script_counts(text)
    if other == 0 or not latin > 2 * other:
        return text, folded

    def fold_confusable_only(m: "re.Match[str]") -> str:
        nonlocal folded
        word = m.group(0)
        has_latin, has_other = _word_scripts(word)
        if has_latin or not has_other or _is_greek_symbol(word):
            return word
        translated = word.translate(_CONFUSABLE_TABLE)
        if any(_script(c) in ("cyrillic", "greek") for c in translated):
            return word  # a real Cyrillic/Greek word, not a disguise
        folded += 1
        return translated

    return _WORD.sub(fold_confusable_only, text), folded


# "c u r e s", "c.u.r.e.s", "c-u-r-e-s": three or more single letters joined
# by one repeated separator. Linear-time pattern (no nested quantifiers on
# overlapping classes).
_SPACED = re.compile(r"(?<![\w])([^\W\d_])((?:([ .\-*_])[^\W\d_])(?:\3[^\W\d_]){1,})(?![\w])")


def join_spaced_letters(text: str) -> Tuple[str, int]:
    count = 0

    def repl(m: "re.Match[str]") -> str:
        nonlocal count
        whole = m.group(0)
        sep = m.group(3)
        letters = whole.split(sep)
        # "U.S.A" style abbreviations and "I a m" are rare; long runs are the
        # obfuscation signal. Require four letters for the dot separator so
        # ordinary initialisms survive as they are.
        if sep == "." and len(letters) < 4:
            return whole
        count += 1
        return "".join(letters)

    return _SPACED.sub(repl, text), count


_HSPACE = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")
# Line and paragraph separators end a line like "\n" does.
_NEWLINES = str.maketrans({"\r": "\n", "\u2028": "\n", "\u2029": "\n"})


def _tidy_whitespace(text: str) -> str:
    lines = [_HSPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


def fold_text(text: str) -> Tuple[str, List[str]]:
    """NFKC, invisible-character removal, homoglyph folding, de-spacing.

    Returns the folded text and the obfuscation signals found, in a fixed order.
    Idempotent: fold_text(fold_text(x)[0])[0] == fold_text(x)[0], and the
    folded text shows no signals. The order of the steps is what makes it so:
    whitespace is tidied before de-spacing (collapsing "c  u  r" afterwards
    would make a new run for the next call), and homoglyphs are folded after
    de-spacing (joining "с u r e" makes a mixed-script word to fold).
    """
    signals: List[str] = []
    stripped = text.translate(_ZERO_WIDTH)
    if len(stripped) != len(text):
        signals.append("zero_width")
    unified = stripped.replace("\r\n", "\n").translate(_NEWLINES)
    cleaned = _CONTROL.sub(" ", unified)
    if cleaned != unified:
        signals.append("control_chars")
    nfkc = unicodedata.normalize("NFKC", cleaned)
    # NFKC can itself produce zero-width, control or line-separator characters
    # from compatibility forms; remove them again so the result is a fixed point.
    nfkc = _CONTROL.sub(" ", nfkc.translate(_ZERO_WIDTH).translate(_NEWLINES))
    tidy = _tidy_whitespace(nfkc)
    despaced, n_runs = join_spaced_letters(tidy)
    folded, n_words = fold_homoglyphs(despaced)
    if n_words:
        signals.append("homoglyphs")
    if n_runs:
        signals.append("spaced_letters")
    return folded, signals


# --------------------------------------------------------------------------
# Sentences

_ABBREV = frozenset(
    "dr mr mrs ms prof st vs etc inc ltd co corp no nr fig approx dept jr sr e.g i.e "
    "u.s a.m p.m ca bzw z.b usw sra sr dra".split()
)
# Candidate boundaries: terminal punctuation (optionally closing quotes or
# brackets) followed by space, or glued directly to a capitalised word
# ("involved.One") or to a Chinese or Japanese character (NFKC turns the
# full-width "！" and "？" of CJK text into "!" and "?", which that text
# never follows with a space), or CJK full stops. The lookbehind lets a match start
# only at the first mark of a run: without it every position inside "!!!!…"
# retried the whole run, quadratic in its length (a 1 MB run took hours).
_BOUNDARY = re.compile(r"(?<![.!?…])([.!?…]+[\"'”’)\]]*)(\s+|(?=[A-Z][a-z])|(?=[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]))|([。！？]+)")
# Longest abbreviation in _ABBREV is 4 characters; looking further back for
# the word before a full stop is never needed.
_LAST_WORD_WINDOW = 16
_BULLET = re.compile(r"^[\-\*•·▪►✓✔–—]+\s*")


def _split_line(line: str) -> Iterator[str]:
    # A generator: split_sentences stops pulling at its sentence cap, so a
    # line of 100k sentences costs only as much as the sentences kept.
    start = 0
    for m in _BOUNDARY.finditer(line):
        end = m.end(1) if m.group(1) else m.end(3)
        if m.group(1):
            # A bounded window, not line[start:...]: on "Dr. Dr. Dr. ..." every
            # candidate is skipped and the slice from start grew each time.
            before = line[max(start, m.start(1) - _LAST_WORD_WINDOW):m.start(1)]
            last = before.rsplit(None, 1)[-1].lower() if before.strip() else ""
            # Abbreviations, initials ("J. Smith") and decimals are not ends.
            if m.group(1) == "." and (last in _ABBREV or (len(last) == 1 and last.isalpha())):
                continue
            nxt = line[m.end():m.end() + 1]
            if nxt and nxt.islower():
                continue
        piece = line[start:end].strip()
        if piece:
            yield piece
        start = m.end()
    tail = line[start:].strip()
    if tail:
        yield tail


def _chunk(sentence: str, limit: int = MAX_SENTENCE_CHARS) -> Iterator[str]:
    """Cut an overlong run-on 'sentence' at spaces so work per sentence is bounded.

    Walks an index instead of re-slicing the remainder (which copied a 5 MB
    word once per 600-character chunk), and yields so the caller's sentence
    cap ends the work.
    """
    if len(sentence) <= limit:
        yield sentence
        return
    pos, n = 0, len(sentence)
    while n - pos > limit:
        cut = sentence.rfind(" ", pos + limit // 2, pos + limit)
        if cut <= pos:
            cut = pos + limit
        chunk = sentence[pos:cut].strip()
        if chunk:
            yield chunk
        pos = cut
        while pos < n and sentence[pos].isspace():
            pos += 1
    rest = sentence[pos:].strip()
    if rest:
        yield rest


def split_sentences(text: str, max_sentences: int = DEFAULT_MAX_SENTENCES) -> List[str]:
    """Sentences of folded text: block lines first, then terminal punctuation.

    At most ``max_sentences`` are returned, and no line is split further once
    the cap is reached.
    """
    out: List[str] = []
    if max_sentences <= 0:
        return out
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        for piece in _split_line(line):
            piece = _BULLET.sub("", piece).strip()
            if not any(ch.isalnum() for ch in piece):
                continue
            for chunk in _chunk(piece):
                out.append(chunk)
                if len(out) >= max_sentences:
                    return out
    return out


# --------------------------------------------------------------------------
# The page


@dataclass(frozen=True)
class NormalizedPage:
    """What the model scores: folded text, its sentences, obfuscation signals."""

    text: str
    sentences: Tuple[str, ...]
    signals: Tuple[str, ...] = field(default_factory=tuple)


# Control characters other than tab, newline and carriage return, and the
# replacement character: what decoded binary data is full of. A regex count,
# not a Python loop over 8 KB per page (a measurable share of normalization).
_BINARY_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd]")


def _is_binary(content: str) -> bool:
    sample = content[:8192]
    if "\x00" in sample:
        return True
    bad = len(_BINARY_CHAR.findall(sample))
    return bad > max(8, len(sample) // 10)


def normalize_page(
    content: str,
    content_type: Optional[str] = None,
    max_chars: int = DEFAULT_MAX_CONTENT_CHARS,
    max_sentences: int = DEFAULT_MAX_SENTENCES,
) -> NormalizedPage:
    """HTML or plain text -> NormalizedPage. Raises PageError subclasses only."""
    if not isinstance(content, str):
        raise PageError(f"content must be a string, got {type(content).__name__}")
    if len(content) > max_chars:
        raise ContentTooLarge(f"content has {len(content)} characters, over the cap of {max_chars}")
    if _is_binary(content):
        raise BinaryContent("content looks binary (NUL or control bytes)")
    if content_type is None:
        is_html = looks_like_html(content)
    else:
        is_html = "html" in content_type.lower()
    raw = html_to_text(content) if is_html else content
    text, signals = fold_text(raw)
    sentences = split_sentences(text, max_sentences=max_sentences)
    if not sentences:
        raise EmptyContent("no text left after HTML extraction and normalization")
    return NormalizedPage(text=text, sentences=tuple(sentences), signals=tuple(signals))


_FEATURE_SPACE = re.compile(r"\s+")


def sentence_key(sentence: str) -> str:
    """Canonical form for matching sentences across renderings (evidence, tests).

    A leading list marker is dropped as the splitter drops it: evidence
    copied with its bullet ("• Don't cause tumors") is the same sentence as
    the page's "Don't cause tumors", which would otherwise stay a non-claim
    row of a flagged page beside a claim row of the same words.
    """
    folded, _ = fold_text(sentence)
    key = _FEATURE_SPACE.sub(" ", folded.lower()).strip(" .!?\"'“”")
    return _BULLET.sub("", key).strip(" .!?\"'“”")
