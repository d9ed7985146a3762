"""Short, realistic synthetic pages for the large tests (deterministic).

Pages are stitched from the repository's authored sentences (claims and
non-claims of every policy category, as clinics, regulators and reporters
write them), 3-6 sentences each by default, half as HTML with the chrome a scraped page
has, half as plain text.
"""
from __future__ import annotations

import glob
import json
import os
import random
from typing import Dict, Iterator, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AUTHORED = os.path.join(REPO, "training", "data", "authored", "sentences_*.jsonl")


def authored_sentences() -> List[str]:
    sentences = []
    for path in sorted(glob.glob(AUTHORED)):
        with open(path, encoding="utf-8") as handle:
            sentences.extend(json.loads(line)["text"] for line in handle if line.strip())
    if not sentences:
        raise FileNotFoundError(f"no authored sentences at {AUTHORED}")
    return sentences


def page_content(rng: random.Random, sentences: List[str], html: bool, length: Tuple[int, int] = (3, 6)) -> str:
    body = " ".join(rng.choice(sentences) for _ in range(rng.randint(*length)))
    if not html:
        return body
    return (f"<html><head><title>Clinic</title><script>track()</script></head><body>"
            f"<nav>Home | Treatments | Book</nav><h1>{rng.choice(sentences)[:60]}</h1><p>{body}</p>"
            f"<footer>© Clinic</footer></body></html>")


def pages(n: int, seed: int = 0, prefix: str = "p", length: Tuple[int, int] = (3, 6)) -> Iterator[Dict[str, str]]:
    """n JSON page records with ids ``<prefix>000000``..., of ``length`` (min, max) sentences."""
    rng = random.Random(seed)
    sentences = authored_sentences()
    for i in range(n):
        html = i % 2 == 1
        yield {"id": f"{prefix}{i:06d}", "url": f"https://clinic-{i % 997}.example/page/{i}",
               "fetched_at": f"2026-11-{1 + i % 28:02d}T08:00:00Z",
               "content_type": "text/html" if html else "text/plain",
               "content": page_content(rng, sentences, html, length)}


def write_jsonl(path: str, n: int, seed: int = 0, prefix: str = "p") -> str:
    with open(path, "w", encoding="utf-8") as handle:
        for record in pages(n, seed, prefix):
            handle.write(json.dumps(record) + "\n")
    return path
