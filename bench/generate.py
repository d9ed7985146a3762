"""Realistic benchmark input built from the labeled sample set.

Real scraped input is neither the tidy ~1.7 KB labeled pages nor random text,
so pages are assembled from the labeled pages in ``training/data/**/*pages*.jsonl``:

* length: a log-normal body length (median ~1.8 KB, long tail to 60 KB),
  filled by concatenating consecutive paragraphs of randomly chosen labeled
  pages and cut at a word boundary;
* HTML: a share of pages is wrapped in site chrome seen in the wild (head with
  analytics and JSON-LD scripts, style, nav menu, header, sidebar, cookie
  banner, footer), some with ``content_type`` given and some left to sniffing;
* obfuscation: a share of pages has Cyrillic look-alike letters swapped into
  Latin words and/or zero-width characters inserted inside words;
* a few broken records (invalid JSON, empty or binary content) that every
  contender must turn into dead letters.

Page ``i`` depends only on (seed, i), so the first 20k pages of a 200k input
are the 20k input. The default mix gives a median content size near 3 KB
(printed by the benchmark with the other input figures).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import random
import statistics
from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(REPO, "training", "data")

# Latin letter -> Cyrillic look-alike, the swaps obfuscators use most.
CYRILLIC_LOOKALIKES = {"a": "а", "e": "е", "o": "о", "c": "с", "p": "р", "x": "х", "y": "у", "i": "і",
                       "A": "А", "E": "Е", "O": "О", "C": "С", "P": "Р", "T": "Т", "H": "Н", "M": "М"}
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff")


@dataclass(frozen=True)
class Mix:
    """Shares of the page kinds; the defaults are what the benchmark uses."""

    body_median_chars: int = 1800
    body_sigma: float = 0.75
    long_tail_share: float = 0.01      # pages of 20-60 KB
    html_share: float = 0.35
    html_sniffed_share: float = 0.35   # of HTML pages: no content_type, sniffed
    homoglyph_share: float = 0.10
    zero_width_share: float = 0.08
    bad_share: float = 0.003


def load_source_texts(data_dir: str = DATA_DIR) -> List[dict]:
    """(title, paragraphs) of every labeled page, in file order."""
    sources = []
    paths = glob.glob(os.path.join(data_dir, "**", "*pages*.jsonl"), recursive=True)
    for path in sorted(paths):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                row = json.loads(line)
                paragraphs = [p.strip() for p in row["text"].split("\n") if p.strip()]
                if paragraphs:
                    sources.append({"title": row.get("title") or paragraphs[0][:80], "paragraphs": paragraphs})
    if not sources:
        raise FileNotFoundError(f"no labeled pages (*pages*.jsonl) under {data_dir}")
    return sources


def _body(rng: random.Random, sources: Sequence[dict], target: int) -> tuple:
    """Concatenate consecutive paragraphs of random labeled pages up to ``target`` chars."""
    first = rng.choice(sources)
    title = first["title"]
    out: List[str] = []
    size = 0
    src = first
    # Start at the top of the first page (its title line), anywhere for the others.
    start = 0
    while size < target:
        for para in src["paragraphs"][start:]:
            out.append(para)
            size += len(para) + 2
            if size >= target:
                break
        src = rng.choice(sources)
        start = rng.randrange(len(src["paragraphs"]))
    text = "\n\n".join(out)
    if len(text) > target:
        cut = text.rfind(" ", 0, target)
        text = text[: cut if cut > target // 2 else target]
    return title, text


def _obfuscate_homoglyphs(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    for k, word in enumerate(words):
        if rng.random() < 0.3:
            words[k] = "".join(CYRILLIC_LOOKALIKES.get(ch, ch) if rng.random() < 0.5 else ch for ch in word)
    return " ".join(words)


def _insert_zero_width(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    for k, word in enumerate(words):
        if len(word) > 3 and rng.random() < 0.12:
            cut = rng.randrange(1, len(word))
            words[k] = word[:cut] + rng.choice(ZERO_WIDTH) + word[cut:]
    return " ".join(words)


_NAV_ITEMS = ["Home", "About us", "Treatments", "Stem Cell Therapy", "Exosomes", "PRP", "Conditions we treat",
              "Our doctors", "Patient stories", "Pricing", "Blog", "FAQ", "Contact", "Book a consultation",
              "News", "Research", "Careers", "Locations", "Shop", "Login"]

_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<meta name="description" content="{desc}">
<link rel="stylesheet" href="/wp-content/themes/clinic/style.min.css?ver=6.4.2">
<link rel="canonical" href="{url}">
<style>.site-header{{position:sticky;top:0;z-index:99}}.cookie-banner{{position:fixed;bottom:0;width:100%}}
.nav-menu li{{display:inline-block;margin:0 .5em}}.btn-primary{{background:#0a7;color:#fff;border-radius:4px}}</style>
<script async src="https://www.googletagmanager.com/gtag/js?id=G-{gid}"></script>
<script>window.dataLayer=window.dataLayer||[];function gtag(){{dataLayer.push(arguments);}}gtag('js',new Date());
gtag('config','G-{gid}',{{'anonymize_ip':true}});</script>
<script type="application/ld+json">{{"@context":"https://schema.org","@type":"MedicalClinic","name":"{site}",
"url":"{url}","description":"Stem cell and exosome therapy that cures arthritis and reverses aging"}}</script>
</head>
"""

_NAV = """<body class="page-template-default page"><div id="page" class="site">
<a class="skip-link screen-reader-text" href="#content">Skip to content</a>
<header id="masthead" class="site-header"><div class="site-branding"><a href="/" rel="home">{site}</a></div>
<nav id="site-navigation" class="main-navigation"><button class="menu-toggle" aria-expanded="false">Menu</button>
<ul id="primary-menu" class="nav-menu">{items}</ul></nav></header>
"""

_ASIDE = """<aside class="widget-area"><section class="widget"><h2 class="widget-title">Recent posts</h2><ul>{posts}</ul>
</section><section class="widget"><h2 class="widget-title">Call us today</h2><p>Mon-Fri 9am-6pm</p></section></aside>
"""

_FOOTER = """<div class="cookie-banner" role="dialog"><p>We use cookies to improve your experience. By continuing to
browse you agree to our <a href="/privacy">privacy policy</a>.</p><button>Accept</button></div>
<footer id="colophon" class="site-footer"><nav class="footer-nav"><ul>{items}</ul></nav>
<div class="site-info">&copy; 2024 {site}. All rights reserved. | <a href="/terms">Terms</a> |
<a href="/privacy">Privacy</a></div></footer></div>
<script src="/wp-includes/js/jquery/jquery.min.js?ver=3.7.1"></script>
<script>jQuery(function($){{$('.menu-toggle').on('click',function(){{$('#primary-menu').toggle();}});
var claims=["cures diabetes","FDA approved","reverse aging"];console.log(claims.length);}});</script>
<!-- Page generated in 0.{gid} seconds -->
</body></html>
"""


def _html(rng: random.Random, title: str, text: str, site: str, url: str) -> str:
    def esc(s: str) -> str:
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")

    items = "".join(f'<li class="menu-item"><a href="/{k}">{esc(name)}</a></li>'
                    for k, name in enumerate(rng.sample(_NAV_ITEMS, rng.randint(6, 14))))
    paragraphs = text.split("\n\n")
    body = [f"<h1 class=\"entry-title\">{esc(title)}</h1>"]
    for k, para in enumerate(paragraphs[1:] if paragraphs and paragraphs[0] == title else paragraphs):
        if len(para) < 70 and rng.random() < 0.5:
            body.append(f"<h2>{esc(para)}</h2>")
        elif para.startswith(("•", "-", "*")):
            body.append(f"<ul><li>{esc(para.lstrip('•-* '))}</li></ul>")
        else:
            body.append(f"<p>{esc(para)}</p>")
        if k == 2 and rng.random() < 0.4:
            body.append('<div class="cta"><a class="btn-primary" href="/book">Book your free consultation</a></div>')
    posts = "".join(f'<li><a href="/blog/{rng.randrange(999)}">{esc(rng.choice(_NAV_ITEMS))} update</a></li>'
                    for _ in range(rng.randint(3, 6)))
    gid = f"{rng.randrange(16 ** 8):08X}"
    parts = [
        _HEAD.format(title=esc(title), desc=esc(text[:150]), url=url, gid=gid, site=esc(site)),
        _NAV.format(site=esc(site), items=items),
        '<div id="content" class="site-content"><main id="main"><article class="post">\n',
        "\n".join(body),
        "\n</article></main>\n",
        _ASIDE.format(posts=posts) if rng.random() < 0.6 else "",
        "</div>\n",
        _FOOTER.format(items=items[: len(items) // 2], site=esc(site), gid=gid),
    ]
    return "".join(parts)


def _bad_record(rng: random.Random, i: int) -> bytes:
    kind = rng.randrange(3)
    if kind == 0:
        return b'{"id": "bench-%07d", "content": "truncated mid-stri' % i
    if kind == 1:
        return json.dumps({"id": f"bench-{i:07d}", "content": "   "}).encode()
    return json.dumps({"id": f"bench-{i:07d}", "content": "\x00\x01\x02binary\x00" * 20}).encode()


def make_page(seed: int, i: int, sources: Sequence[dict], mix: Mix = Mix()) -> bytes:
    """One JSON Lines record (bytes, no newline) for page ``i``."""
    rng = random.Random(f"regenwatch-bench-{seed}-{i}")
    if rng.random() < mix.bad_share:
        return _bad_record(rng, i)
    if rng.random() < mix.long_tail_share:
        target = rng.randint(20_000, 60_000)
    else:
        target = int(min(60_000, max(200, rng.lognormvariate(math.log(mix.body_median_chars), mix.body_sigma))))
    title, text = _body(rng, sources, target)
    if rng.random() < mix.homoglyph_share:
        text = _obfuscate_homoglyphs(rng, text)
    if rng.random() < mix.zero_width_share:
        text = _insert_zero_width(rng, text)
    site = rng.choice(["Regen Clinic", "Stem Cell Institute", "Renew Health", "City Wellness News",
                       "BioLife Forum", "Longevity Center"]) + f" {rng.randrange(500)}"
    url = f"https://www.{site.lower().replace(' ', '-')}.example/{rng.choice(['blog', 'news', 'treatments', 'faq'])}/{i}"
    record: Dict[str, object] = {"id": f"bench-{i:07d}", "url": url,
                                 "fetched_at": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00Z"}
    if rng.random() < mix.html_share:
        record["content"] = _html(rng, title, text, site, url)
        if rng.random() >= mix.html_sniffed_share:
            record["content_type"] = "text/html; charset=utf-8"
    else:
        record["content"] = text
        if rng.random() < 0.5:
            record["content_type"] = "text/plain"
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def iter_pages(n: int, seed: int = 0, mix: Mix = Mix(), sources=None) -> Iterator[bytes]:
    sources = sources if sources is not None else load_source_texts()
    for i in range(n):
        yield make_page(seed, i, sources, mix)


@dataclass
class InputInfo:
    directory: str
    files: List[str]
    pages: int
    bytes_total: int
    content_chars_p10: int
    content_chars_p50: int
    content_chars_p90: int
    html_pages: int
    obfuscated_pages: int
    bad_records: int

    @property
    def glob(self) -> str:
        return os.path.join(self.directory, "pages-*.jsonl")


def write_input(directory: str, n: int, seed: int = 0, shards: int = 8, mix: Mix = Mix()) -> InputInfo:
    """Write ``n`` pages as ``shards`` JSON Lines files; returns what was written."""
    os.makedirs(directory, exist_ok=True)
    shards = max(1, min(shards, n))
    sources = load_source_texts()
    per = -(-n // shards)
    files, sizes = [], []
    html = obfuscated = bad = total = 0
    pages = iter_pages(n, seed, mix, sources)
    for s in range(shards):
        path = os.path.join(directory, f"pages-{s:05d}-of-{shards:05d}.jsonl")
        with open(path, "wb") as handle:
            for _ in range(min(per, n - s * per)):
                line = next(pages)
                handle.write(line + b"\n")
                total += len(line) + 1
                try:
                    rec = json.loads(line)
                    content = rec["content"]
                except (ValueError, KeyError):
                    bad += 1
                    continue
                if not content.strip() or "\x00" in content:
                    bad += 1
                    continue
                sizes.append(len(content))
                html += content.startswith("<!DOCTYPE")
                obfuscated += any(ch in content for ch in ZERO_WIDTH) or any(
                    ch in content for ch in CYRILLIC_LOOKALIKES.values())
        files.append(path)
    q = statistics.quantiles(sizes, n=10) if len(sizes) >= 2 else [sizes[0] if sizes else 0] * 9
    return InputInfo(directory=directory, files=files, pages=n, bytes_total=total,
                     content_chars_p10=int(q[0]), content_chars_p50=int(statistics.median(sizes) if sizes else 0),
                     content_chars_p90=int(q[-1]), html_pages=html, obfuscated_pages=obfuscated, bad_records=bad)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write benchmark input pages (JSON Lines shards).")
    parser.add_argument("--out", required=True, help="Directory for pages-*.jsonl.")
    parser.add_argument("--pages", type=int, default=2000, help="Number of pages.")
    parser.add_argument("--shards", type=int, default=8, help="Number of input files.")
    parser.add_argument("--seed", type=int, default=0, help="Generator seed.")
    args = parser.parse_args(argv)
    info = write_input(args.out, args.pages, args.seed, args.shards)
    print(json.dumps(info.__dict__, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
