"""Per-page cost by page shape: the estimate (pipelines/pagecost.py) against measured time.

    python -m bench.page_cost [--max-mib 5] [--model default] [--json out.json]

For each pathological shape (deep markup, many attributes, options, unclosed
lists, giant words, no sentence breaks, abbreviations, spaced letters,
look-alike letters...) at sizes doubling up to ``--max-mib`` MiB of content,
it times (1) the HTML parser alone (selectolax/Lexbor), (2) the estimate,
and (3) the page through the pipeline's per-record path (NormalizeFn,
ScoreBatchFn with records built and encoded, the cluster sketch), and prints
whether the page was decided or refused by --max_page_work. The figures of
record are in docs/ROBUSTNESS.md. Timing is here, never in the unit tests.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

SHAPES = {
    "paragraphs": lambda n: "<p>Exosome therapy cures arthritis, our clinic says.</p>" * (n // 56 + 1),
    "deep_div": lambda n: "<div>" * (n // 11) + "Stem cells cure." + "</div>" * (n // 11),
    "span_soup": lambda n: "<span>" * (n // 6) + "Stem cells cure.",
    "nested_lists": lambda n: "<ul><li>" * (n // 8),
    "unclosed_li": lambda n: "<ul>" + "<li>PRP heals knees" * (n // 18),
    "attributes": lambda n: "<div " + " ".join(f"a{i}=1" for i in range(n // 7)) + ">Stem cells.</div>",
    "select_options": lambda n: "<select>" + "<option>x</option>" * (n // 18),
    "formatting_reopened": lambda n: "<b>" * (n // 7) + "</p>" * (n // 7),
    "table_soup": lambda n: "<table>" + "<tr><td>Stem cells<td>cure" * (n // 27),
    "giant_word": lambda n: "x" * n,
    "no_sentence_breaks": lambda n: "stem cells cure arthritis " * (n // 26),
    "abbreviations": lambda n: "Dr. " * (n // 4),
    "bangs": lambda n: "Stem cells cure" + "!" * n,
    "spaced_letters": lambda n: "s t e m c e l l s " * (n // 18),
    "lookalikes": lambda n: "\u0441\u0442em c\u0435lls \u0441ure " * (n // 16),
    "zero_width": lambda n: "st\u200bem ce\u200blls " * (n // 14),
    "comments": lambda n: "<!-- <div> -->Stem cells. " * (n // 26),
}


def main(argv=None, log=print) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.page_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--max-mib", type=float, default=5.0)
    parser.add_argument("--min-kib", type=float, default=80.0)
    parser.add_argument("--model", default="default")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from selectolax.lexbor import LexborHTMLParser

    from regenwatch.pipelines.pagecost import DEFAULT_MAX_PAGE_WORK, page_work
    from regenwatch.pipelines.pages import Page
    from tests.fuzz.harness import Harness

    harness = Harness(args.model)
    harness.moderate(Page(id="warm", content="Stem cells cure arthritis."))
    rows = []
    log(f"{'shape':<20} {'chars':>9} {'estimate':>13} {'ns/unit':>8} {'parse s':>8} {'scan s':>7} "
        f"{'page s':>7}  outcome")
    for name in args.shapes.split(","):
        size = int(args.min_kib * 1024)
        while size <= args.max_mib * 1024 * 1024:
            content = SHAPES[name](size)[: int(args.max_mib * 1024 * 1024)]
            started = time.perf_counter()
            work = page_work(content)
            scan_s = time.perf_counter() - started
            parse_s = None
            if work.total <= 4 * DEFAULT_MAX_PAGE_WORK:  # beyond that the parser alone takes minutes
                started = time.perf_counter()
                LexborHTMLParser(content)
                parse_s = time.perf_counter() - started
            started = time.perf_counter()
            outcome = harness.moderate(Page(id=name, content=content, content_type="text/html"))
            page_s = time.perf_counter() - started
            result = "decided" if outcome.decided else f"dead ({outcome.stages[0]}: {outcome.errors[0][:60]})"
            row = {"shape": name, "chars": len(content), "estimate": work.total, "parse_s": parse_s,
                   "scan_s": scan_s, "page_s": page_s, "decided": bool(outcome.decided), "outcome": result,
                   "ns_per_unit": (parse_s * 1e9 / work.total) if parse_s else None}
            rows.append(row)
            log(f"{name:<20} {len(content):>9} {work.total:>13,} "
                f"{row['ns_per_unit'] or 0:>8.2f} {parse_s if parse_s is not None else float('nan'):>8.3f} "
                f"{scan_s:>7.3f} {page_s:>7.3f}  {result}")
            size *= 4
    worst = max(rows, key=lambda r: r["page_s"])
    admitted = [r for r in rows if r["decided"]]
    summary = {
        "pages": len(rows),
        "slowest_page_s": round(worst["page_s"], 3), "slowest": f"{worst['shape']} {worst['chars']}",
        "slowest_decided_page_s": round(max(r["page_s"] for r in admitted), 3) if admitted else None,
        "max_ns_per_unit_over_1M_units": round(max((r["ns_per_unit"] for r in rows
                                                    if r["ns_per_unit"] and r["estimate"] > 1e6), default=0), 2),
        "budget": DEFAULT_MAX_PAGE_WORK,
    }
    log(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "summary": summary}, handle, indent=1)
    return summary


if __name__ == "__main__":
    main()
    sys.exit(0)
