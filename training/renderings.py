"""Adversarial renderings of a labeled page, for robustness measurement.

Each function rewrites a plain-text page the way spammed or crawled pages
arrive: Latin letters swapped for Cyrillic look-alikes, zero-width
characters inside words, or the text wrapped in real-world HTML whose
navigation, scripts and footer carry claim-like strings. A robust model gives
each rendering the same decision as the plain page, and nearly the same score.
"""
from __future__ import annotations

import html
import random
import re
from typing import Callable, Dict

# Latin -> Cyrillic look-alikes (the inverse of part of models/text.py's table).
_TO_CYRILLIC = str.maketrans({
    "a": "а", "c": "с", "e": "е", "o": "о", "p": "р", "x": "х", "y": "у", "i": "і",
    "A": "А", "B": "В", "C": "С", "E": "Е", "H": "Н", "K": "К", "M": "М", "O": "О",
    "P": "Р", "T": "Т", "X": "Х",
})
_WORD = re.compile(r"[A-Za-z]{2,}")


def cyrillic(text: str, seed: int = 0, share: float = 0.7) -> str:
    """Swap look-alike letters to Cyrillic in a share of the words (as seeds 001/003 do)."""
    rng = random.Random(seed)

    def swap(m: "re.Match[str]") -> str:
        word = m.group(0)
        return word.translate(_TO_CYRILLIC) if rng.random() < share else word

    return _WORD.sub(swap, text)


def zero_width(text: str, seed: int = 0) -> str:
    """Insert zero-width characters inside words of four letters or more."""
    rng = random.Random(seed)
    marks = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")

    def insert(m: "re.Match[str]") -> str:
        word = m.group(0)
        if len(word) < 4:
            return word
        cut = rng.randint(1, len(word) - 1)
        return word[:cut] + rng.choice(marks) + word[cut:]

    return re.sub(r"\w+", insert, text)


_CLAIMY_SCRIPT = (
    'window.__SEO__ = {"keywords": "stem cells cure parkinsons, exosomes reverse aging, '
    'FDA approved, no side effects, 100% guaranteed results"};'
)


def html_wrap(text: str, seed: int = 0) -> str:
    """The page as a crawler fetches it: head, nav, scripts, the body as blocks, footer."""
    blocks = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        escaped = html.escape(line)
        if len(line) < 70 and not line.endswith((".", "!", "?", ":")):
            blocks.append(f"<h2>{escaped}</h2>")
        elif line.startswith(("- ", "• ", "* ")):
            blocks.append(f"<ul><li>{html.escape(line[2:])}</li></ul>")
        else:
            blocks.append(f"<p>{escaped}</p>")
    body = "\n".join(blocks)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Regenerative clinic</title>
<style>.hero{{color:#333}} nav a{{margin:0 4px}}</style>
<script>{_CLAIMY_SCRIPT}</script>
<script type="application/ld+json">{{"@type":"MedicalClinic","description":"Stem cells cure everything, guaranteed"}}</script>
</head><body>
<header><div class="logo">RegenCare</div><div class="cookie">We use cookies. Accept all</div></header>
<nav><a href="/">Home</a><a href="/stem-cells">Stem cells cure arthritis</a><a href="/exosomes">Exosomes: no side effects</a><a href="/book">Book now</a></nav>
<main><article>
{body}
</article></main>
<footer><p>© 2024 RegenCare. FDA approved and clinically proven results.</p><a href="/privacy">Privacy</a></footer>
<script>document.querySelectorAll('a').forEach(function(a){{a.rel='noopener'}});</script>
</body></html>"""


RENDERINGS: Dict[str, Callable[[str], str]] = {
    "cyrillic": cyrillic,
    "zero_width": zero_width,
    "html": html_wrap,
}
