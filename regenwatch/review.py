"""``regenwatch review``: the flagged queue for people.

* ``regenwatch review OUTPUT_DIR...``: a terminal table of the flagged pages
  (severity, score, cluster, categories, signals, id, and each rationale
  sentence once with all its categories) under a summary header (counts by
  severity, category and cluster), sorted and filtered by severity, category
  and cluster;
* ``--html report.html``: one self-contained static page (no script, no
  external asset, a Content-Security-Policy that forbids loading anything but
  inline styles and embedded images) with each flagged page, its rationale
  sentences highlighted in their context, grouped by near-duplicate cluster,
  plus the PR-curve and calibration pictures when they are present;
* ``--decide --verdicts FILE``: go through the queue one cluster at a time
  and append a verdict (schemas/verdict.avsc) for every flagged page of the
  cluster, so a template repeated across fifty towns is decided once;
* ``--serve``: the review workspace in the browser (``regenwatch/web/``);
  ``--export FILE``: its verdicts as schemas/verdict.avsc records.

Page text is hostile: every string that comes from a page (id, url, sentences,
terms) is HTML-escaped in the report, and stripped of control, format and
bidi-override characters in the terminal, so a page cannot inject markup or
terminal escape sequences into a reviewer's screen.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import os
import shutil
import sys
import textwrap
import unicodedata
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Optional, Sequence, TextIO, Tuple

from regenwatch.models.classifier import CATEGORIES

SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}
SORT_KEYS = ("severity", "score", "cluster", "id")
# The largest picture embedded in the report; a bigger file is linked instead.
MAX_EMBEDDED_PLOT_BYTES = 4 * 1024 * 1024


# --------------------------------------------------------------------------
# Queue: read, filter, sort, group


def load_queue(output_dir: str) -> List[dict]:
    """The flagged records of a run (schema defaults filled for older records)."""
    from regenwatch.training.sampling import read_outputs

    records = read_outputs(output_dir, "flagged")
    for r in records:
        r.setdefault("cluster_id", None)
        r.setdefault("cluster_size", 1)
    return records


def cluster_key(record: dict) -> str:
    """The cluster a record is grouped under (its own id for records without one)."""
    return record.get("cluster_id") or f"page:{record['id']}"


def filter_queue(records: Iterable[dict], severities: Sequence[str] = (), categories: Sequence[str] = (),
                 clusters: Sequence[str] = ()) -> List[dict]:
    """Records matching every given filter: any of the severities, any of the categories, any cluster.

    A cluster filter matches a cluster id or its prefix (ids are shown shortened).
    """
    out = []
    for r in records:
        if severities and r["severity"] not in severities:
            continue
        if categories and not set(categories) & set(r["categories"]):
            continue
        if clusters and not any(cluster_key(r).startswith(c) for c in clusters):
            continue
        out.append(r)
    return out


def sort_queue(records: Iterable[dict], by: str = "severity") -> List[dict]:
    """severity: most severe then highest score first; score; cluster: largest cluster first; id."""
    if by == "severity":
        key: Callable = lambda r: (SEVERITY_RANK.get(r["severity"], 9), -r["score"], r["id"])
    elif by == "score":
        key = lambda r: (-r["score"], r["id"])
    elif by == "cluster":
        key = lambda r: (-int(r.get("cluster_size") or 1), cluster_key(r), -r["score"], r["id"])
    elif by == "id":
        key = lambda r: r["id"]
    else:
        raise ValueError(f"unknown sort key {by!r}; expected one of {', '.join(SORT_KEYS)}")
    return sorted(records, key=key)


def group_by_cluster(records: Sequence[dict]) -> List[Tuple[str, List[dict]]]:
    """(cluster key, records best first), most severe and highest-scoring cluster first."""
    groups: Dict[str, List[dict]] = OrderedDict()
    for r in records:
        groups.setdefault(cluster_key(r), []).append(r)
    ordered = []
    for key, members in groups.items():
        members = sort_queue(members, "severity")
        ordered.append((key, members))
    ordered.sort(key=lambda kv: (SEVERITY_RANK.get(kv[1][0]["severity"], 9), -kv[1][0]["score"], kv[0]))
    return ordered


def item_categories(item: dict) -> List[str]:
    """A rationale item's categories: ``categories`` in new records, else its single ``category``."""
    cats = item.get("categories")
    if cats is not None:
        return [c for c in cats if c]
    return [item["category"]] if item.get("category") else []


def rationale_sentences(record: dict) -> List[dict]:
    """The record's rationale with each sentence once, carrying all its categories.

    Older records repeat a sentence once per category (``category``, a single
    string); newer ones give each sentence once with ``categories``. Both come
    out the same: one item per distinct sentence, in the order of its first
    appearance (best first), with ``categories`` the union in order, the best
    ``category_score`` and the terms of every copy.
    """
    merged: "OrderedDict[str, dict]" = OrderedDict()
    for item in record.get("rationale") or []:
        sentence = item["sentence"]
        cats = item_categories(item)
        if sentence not in merged:
            out = dict(item)
            out["categories"] = list(cats)
            out["terms"] = list(item.get("terms") or [])
            out["category_score"] = float(item.get("category_score") or 0.0)
            out.pop("category", None)
            merged[sentence] = out
            continue
        out = merged[sentence]
        out["categories"] += [c for c in cats if c not in out["categories"]]
        out["terms"] += [t for t in item.get("terms") or [] if t not in out["terms"]]
        out["category_score"] = max(out["category_score"], float(item.get("category_score") or 0.0))
        out["score"] = max(out["score"], item["score"])
        for side in ("context_before", "context_after"):
            if not out.get(side) and item.get(side):
                out[side] = item[side]
    return list(merged.values())


def summary_counts(records: Sequence[dict]) -> dict:
    """Counts for the summary header: by severity, by category, by cluster (largest first)."""
    severity = {s: 0 for s in SEVERITY_RANK}
    category: Dict[str, int] = {}
    clusters: Dict[str, int] = {}
    sizes: Dict[str, int] = {}
    for r in records:
        severity[r["severity"]] = severity.get(r["severity"], 0) + 1
        for c in r["categories"]:
            category[c] = category.get(c, 0) + 1
        key = cluster_key(r)
        clusters[key] = clusters.get(key, 0) + 1
        sizes[key] = int(r.get("cluster_size") or 1)
    ordered_cats = sorted(category.items(), key=lambda kv: (-kv[1], kv[0]))
    ordered_clusters = sorted(((k, n, sizes[k]) for k, n in clusters.items()), key=lambda t: (-t[1], -t[2], t[0]))
    return {"pages": len(records), "severity": severity, "category": ordered_cats, "clusters": ordered_clusters}


def cluster_label(key: str) -> str:
    return "no cluster" if key.startswith("page:") else key


def summary_lines(records: Sequence[dict], width: int = 100, top_clusters: int = 5) -> List[str]:
    """The summary header as text: the count line, then categories and the largest clusters."""
    counts = summary_counts(records)
    lines = [summary_line(records)]
    cats = ", ".join(f"{c} {n}" for c, n in counts["category"]) or "none"
    lines.extend(textwrap.wrap(terminal_safe("categories: " + cats), width, subsequent_indent="  "))
    multi = [(k, n, size) for k, n, size in counts["clusters"] if n > 1 or size > 1]
    if multi:
        shown = ", ".join(f"{k[:9]} {n} flagged/{size}" for k, n, size in multi[:top_clusters])
        more = f", {len(multi) - top_clusters} more" if len(multi) > top_clusters else ""
        lines.extend(textwrap.wrap(terminal_safe(f"clusters of near duplicates: {shown}{more}"), width,
                                   subsequent_indent="  "))
    singles = sum(1 for k, n, size in counts["clusters"] if n == 1 and size == 1)
    if singles:
        lines.append(f"pages without a near duplicate: {singles}")
    return lines


def summary_line(records: Sequence[dict]) -> str:
    sev = {s: sum(1 for r in records if r["severity"] == s) for s in SEVERITY_RANK}
    clusters = len({cluster_key(r) for r in records})
    return (f"{len(records)} flagged pages (high {sev['high']}, medium {sev['medium']}, low {sev['low']}) "
            f"in {clusters} clusters")


# --------------------------------------------------------------------------
# Terminal


def terminal_safe(text: Optional[str], limit: Optional[int] = None) -> str:
    """Text safe to print: control, format (bidi, zero-width) and separator characters replaced."""
    if text is None:
        return ""
    out = []
    for ch in str(text):
        cat = unicodedata.category(ch)
        if ch in "\t\n\r" or cat in ("Zl", "Zp"):
            out.append(" ")
        elif cat in ("Cc", "Cf", "Cs", "Co", "Cn"):
            out.append("\ufffd")
        else:
            out.append(ch)
    s = " ".join("".join(out).split())
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return s


def short_cluster(record: dict) -> str:
    cid = record.get("cluster_id")
    size = int(record.get("cluster_size") or 1)
    return f"{cid[:9] if cid else '-':<9} x{size}"


def render_table(records: Sequence[dict], width: int = 100) -> str:
    """The queue as text: one line per page, then its top rationale sentence."""
    width = max(60, width)
    lines = summary_lines(records, width) + [""]
    head = f"{'SEV':<6} {'SCORE':>5}  {'CLUSTER':<13} {'CATEGORIES':<34} {'SIGNALS':<14} ID"
    lines.append(head[:width])
    for r in records:
        cats = ",".join(r["categories"]) or "-"
        signals = ",".join(r["signals"]) or "-"
        row = (f"{r['severity']:<6} {r['score']:>5.3f}  {short_cluster(r):<13} "
               f"{terminal_safe(cats, 34):<34} {terminal_safe(signals, 14):<14} ")
        lines.append(row + terminal_safe(r["id"], max(8, width - len(row))))
        for item in rationale_sentences(r):
            # Each sentence once, its categories before it (on a line of their own when long).
            tag = terminal_safe(f"[{', '.join(item['categories']) or 'claim'} {item['score']:.2f}]")
            room = width - 11 - len(tag)
            if room < 60:
                lines.append("       " + tag)
                lines.append("       “" + terminal_safe(item["sentence"], width - 9) + "”")
            else:
                lines.append(f"       {tag} “" + terminal_safe(item["sentence"], room) + "”")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# HTML report

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2430}
header{background:#1d2430;color:#fff;padding:16px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c9d1dc}main{padding:12px 28px 40px}
.plots{display:flex;gap:16px;flex-wrap:wrap;padding:12px 28px 0}.plots figure{margin:0;background:#fff;padding:8px;
border-radius:6px;box-shadow:0 1px 2px rgba(0,0,0,.12)}.plots img{max-width:520px;width:100%;height:auto}
.cluster{background:#fff;border-radius:8px;margin:18px 0;box-shadow:0 1px 3px rgba(0,0,0,.14);overflow:hidden}
.cluster>h2{margin:0;padding:10px 16px;font-size:16px;background:#e8ecf2;border-bottom:1px solid #d5dbe4}
.cluster>h2 .size{font-weight:normal;color:#4a5566}
.page{padding:12px 16px;border-top:1px solid #eceff3}.page:first-of-type{border-top:0}
.page h3{margin:0 0 4px;font-size:15px;word-break:break-all}
.meta{margin:2px 0 8px;color:#4a5566;font-size:13px}.sev{display:inline-block;padding:1px 8px;border-radius:10px;
color:#fff;font-weight:600;text-transform:uppercase;font-size:11px}.sev-high{background:#b42318}
.sev-medium{background:#b54708}.sev-low{background:#475467}.chip{display:inline-block;background:#eef2f7;
border:1px solid #d5dbe4;border-radius:10px;padding:0 7px;margin:0 3px 2px 0;font-size:12px}
.chip.signal{background:#fff4e5;border-color:#f5c27a}.url{font-size:13px;word-break:break-all;margin:0 0 6px}
ol.rationale{margin:6px 0 4px;padding-left:22px}ol.rationale li{margin:0 0 10px}
.context{margin:0;color:#556070}mark{background:#ffe066;color:#1d2430;padding:0 2px;border-radius:2px}
.summary{display:flex;gap:16px;flex-wrap:wrap;padding:12px 28px 0}.summary table{background:#fff;border-radius:6px;
box-shadow:0 1px 2px rgba(0,0,0,.12);border-collapse:collapse;font-size:13px}.summary caption{text-align:left;
font-weight:600;padding:4px 0}.summary th,.summary td{padding:3px 10px;text-align:left;border-top:1px solid #eceff3}
.why{margin:2px 0 0;font-size:12px;color:#4a5566}.hash{font:11px ui-monospace,monospace;color:#7a8494;margin:4px 0 0}
"""

# No script, no remote loads: styles inline, images only as data: URIs.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _safe_href(url: Optional[str]) -> Optional[str]:
    """http(s) URLs only: a javascript: or data: URL from a page never becomes a link."""
    if not url:
        return None
    lowered = url.strip().lower()
    return url.strip() if lowered.startswith(("http://", "https://")) else None


def _render_rationale(item: dict) -> str:
    """One merged rationale item (see rationale_sentences): the sentence once, all its categories."""
    before = " ".join(item.get("context_before") or [])
    after = " ".join(item.get("context_after") or [])
    cats = item.get("categories") or []
    terms = ", ".join(item.get("terms") or [])
    return (
        "<li><p class=\"context\">"
        + (f"<span class=\"ctx\">{esc(before)}</span> " if before else "")
        + f"<mark data-categories=\"{esc(' '.join(cats))}\">{esc(item['sentence'])}</mark>"
        + (f" <span class=\"ctx\">{esc(after)}</span>" if after else "")
        + "</p><p class=\"why\">"
        + (f"{esc(', '.join(cats))} {item.get('category_score', 0.0):.2f} · " if cats
           else "claim, no confident category · ")
        + f"claim score {item['score']:.2f}"
        + (f" · terms: {esc(terms)}" if terms else "")
        + "</p></li>"
    )


def _render_page(r: dict) -> str:
    href = _safe_href(r.get("url"))
    if href:
        url = f"<p class=\"url\"><a href=\"{esc(href)}\" rel=\"noopener noreferrer nofollow\">{esc(r['url'])}</a></p>"
    elif r.get("url"):
        url = f"<p class=\"url\">{esc(r['url'])}</p>"
    else:
        url = ""
    cats = "".join(f"<span class=\"chip category\">{esc(c)}</span>" for c in r["categories"]) or "no category"
    signals = "".join(f"<span class=\"chip signal\">{esc(s)}</span>" for s in r["signals"])
    processed = dt.datetime.fromtimestamp(_millis(r.get("processed_at")) / 1000, dt.timezone.utc)
    return (
        f"<article class=\"page\" data-page-id=\"{esc(r['id'])}\" data-severity=\"{esc(r['severity'])}\">"
        f"<h3>{esc(r['id'])}</h3>{url}"
        f"<p class=\"meta\"><span class=\"sev sev-{esc(r['severity'])}\">{esc(r['severity'])}</span> "
        f"score <b>{r['score']:.3f}</b> (threshold {r['threshold']:.3f}) · {cats}"
        + (f" · signals {signals}" if signals else "")
        + f" · model {esc(r['model_version'])}</p>"
        f"<ol class=\"rationale\">{''.join(_render_rationale(i) for i in rationale_sentences(r))}</ol>"
        f"<p class=\"hash\">content sha256 {esc(r['content_sha256'])} · processed "
        f"{processed.strftime('%Y-%m-%d %H:%M:%SZ')}</p></article>"
    )


def _millis(value) -> int:
    # fastavro returns timestamp-millis as an aware datetime; records built in
    # memory carry the int.
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    return int(value or 0)


def _render_plots(plots: Dict[str, bytes]) -> str:
    if not plots:
        return ""
    figures = []
    for name, data in plots.items():
        b64 = base64.b64encode(data).decode("ascii")
        figures.append(f"<figure><img alt=\"{esc(name)}\" src=\"data:image/png;base64,{b64}\">"
                       f"<figcaption>{esc(name)}</figcaption></figure>")
    return "<section class=\"plots\">" + "".join(figures) + "</section>"


def render_html(records: Sequence[dict], plots: Optional[Dict[str, bytes]] = None, title: str = "") -> str:
    """The report page: clusters (most severe first), each with its flagged pages."""
    groups = group_by_cluster(records)
    models = sorted({r["model_version"] for r in records})
    sections = []
    for key, members in groups:
        size = int(members[0].get("cluster_size") or 1)
        label = key if not key.startswith("page:") else "no cluster"
        sections.append(
            f"<section class=\"cluster\" data-cluster-id=\"{esc(key)}\" data-cluster-size=\"{size}\">"
            f"<h2>Cluster {esc(label)} <span class=\"size\">· {size} page{'s' if size != 1 else ''} in the run, "
            f"{len(members)} flagged here</span></h2>"
            + "".join(_render_page(r) for r in members) + "</section>")
    counts = summary_counts(records)
    sev_rows = "".join(f"<tr><th><span class=\"sev sev-{esc(s)}\">{esc(s)}</span></th><td>{n}</td></tr>"
                       for s, n in counts["severity"].items())
    cat_rows = "".join(f"<tr><th>{esc(c)}</th><td>{n}</td></tr>" for c, n in counts["category"]) \
        or "<tr><td>none</td></tr>"
    cl_rows = "".join(
        f"<tr><th>{esc(cluster_label(k)[:16])}</th><td>{n} flagged</td><td>{size} in the run</td></tr>"
        for k, n, size in counts["clusters"] if n > 1 or size > 1)
    singles = sum(1 for _, n, size in counts["clusters"] if n == 1 and size == 1)
    summary = (
        "<section class=\"summary\" id=\"summary\">"
        f"<table class=\"by-severity\"><caption>By severity</caption>{sev_rows}</table>"
        f"<table class=\"by-category\"><caption>By category</caption>{cat_rows}</table>"
        f"<table class=\"by-cluster\"><caption>Clusters</caption>{cl_rows}"
        f"<tr><th>single pages</th><td colspan=\"2\">{singles}</td></tr></table></section>")
    heading = title or "regenwatch review queue"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
        "<meta name=\"referrer\" content=\"no-referrer\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(heading)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(heading)}</h1><p>{esc(summary_line(records))}"
        f" · model {esc(', '.join(models) or '-')}</p></header>"
        + summary + _render_plots(plots or {})
        + "<main>" + ("".join(sections) or "<p>No flagged pages.</p>") + "</main></body></html>\n"
    )


def find_plots(directory: Optional[str]) -> Dict[str, bytes]:
    """PR curve and calibration PNGs in a directory, by file name (missing ones left out)."""
    from regenwatch.training.plots import PLOT_FILES

    found: Dict[str, bytes] = {}
    if not directory:
        return found
    for name in PLOT_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.path.getsize(path) <= MAX_EMBEDDED_PLOT_BYTES:
            with open(path, "rb") as handle:
                data = handle.read()
            if data.startswith(b"\x89PNG\r\n\x1a\n"):
                found[name] = data
    return found


# --------------------------------------------------------------------------
# Deciding


def _show_cluster(members: Sequence[dict], out: TextIO, width: int) -> None:
    lead = members[0]
    size = int(lead.get("cluster_size") or 1)
    print("=" * min(width, 100), file=out)
    print(f"{lead['severity'].upper()}  score {lead['score']:.3f}  {terminal_safe(lead['id'], width - 30)}", file=out)
    if lead.get("url"):
        print(f"  {terminal_safe(lead['url'], width - 2)}", file=out)
    print(f"  categories: {terminal_safe(', '.join(lead['categories'])) or '-'}   "
          f"signals: {terminal_safe(', '.join(lead['signals'])) or '-'}", file=out)
    if size > 1 or len(members) > 1:
        others = ", ".join(terminal_safe(m["id"], 40) for m in members[1:6])
        print(f"  cluster of {size} pages in the run; {len(members)} flagged here"
              + (f" (also: {others}{', …' if len(members) > 6 else ''})" if others else ""), file=out)
    for item in rationale_sentences(lead):
        ctx = " ".join(item.get("context_before") or [])
        print(f"  - [{terminal_safe(', '.join(item['categories'])) or 'claim'} {item['score']:.2f}] "
              f"{terminal_safe(ctx, 160) + ' ' if ctx else ''}>>{terminal_safe(item['sentence'], 300)}<<", file=out)


def _ask_categories(default: Sequence[str], ask: Callable[[str], str], out: TextIO) -> List[str]:
    while True:
        answer = ask(f"categories [{','.join(default) or 'none'}] (enter keeps, '-' for none): ").strip()
        if not answer:
            return list(default)
        if answer == "-":
            return []
        cats = [c.strip() for c in answer.replace(" ", ",").split(",") if c.strip()]
        unknown = [c for c in cats if c not in CATEGORIES]
        if not unknown:
            return cats
        print(f"unknown {', '.join(unknown)}; choose from {', '.join(CATEGORIES)}", file=out)


def decide(records: Sequence[dict], verdicts_path: str, reviewer: str, ask: Callable[[str], str] = input,
           out: TextIO = sys.stdout, width: int = 100) -> dict:
    """Ask for a verdict per cluster and append one verdict per flagged page of it.

    Pages that already have a verdict in the file are skipped, so a review can
    be stopped ('q' or end of input) and resumed; each cluster's verdicts are
    written as soon as they are given.
    """
    from regenwatch.training.feedback import append_verdicts, make_verdict, read_verdicts

    done = set()
    if os.path.exists(verdicts_path):
        done = {(v["id"], v["content_sha256"]) for v in read_verdicts([verdicts_path])}
    pending = [r for r in records if (r["id"], r["content_sha256"]) not in done]
    counts = {"confirm": 0, "reject": 0, "skipped": 0, "already": len(records) - len(pending)}
    groups = group_by_cluster(pending)
    for n, (_, members) in enumerate(groups, 1):
        print(f"\n[{n}/{len(groups)}]", file=out)
        _show_cluster(members, out, width)
        while True:
            try:
                answer = ask("[c]onfirm  [r]eject  [s]kip  [q]uit > ").strip().lower()
            except EOFError:
                answer = "q"
            if answer in ("c", "confirm", "r", "reject", "s", "skip", "q", "quit"):
                break
            print("answer c, r, s or q", file=out)
        if answer.startswith("q"):
            break
        if answer.startswith("s"):
            counts["skipped"] += len(members)
            continue
        verdict = "confirm" if answer.startswith("c") else "reject"
        try:
            cats = _ask_categories(members[0]["categories"], ask, out) if verdict == "confirm" else []
            note = ask("note (optional): ").strip() or None
        except EOFError:
            break
        append_verdicts(verdicts_path, [make_verdict(m, verdict, reviewer, cats, note) for m in members])
        counts[verdict] += len(members)
    return counts


# --------------------------------------------------------------------------
# Command


def build_parser(parser: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog="regenwatch review",
        description="Show a run's flagged pages (terminal or HTML report) and record reviewers' verdicts.")
    parser.add_argument("output_dirs", metavar="OUTPUT_DIR", nargs="+",
                        help="Output directory of a regenwatch run (several: their queues together).")
    parser.add_argument("--sort", choices=SORT_KEYS, default="severity",
                        help="Order of the terminal list (the HTML report groups by cluster).")
    parser.add_argument("--severity", action="append", choices=tuple(SEVERITY_RANK), default=[],
                        help="Only these severities (repeatable).")
    parser.add_argument("--category", action="append", choices=CATEGORIES, default=[],
                        help="Only pages with one of these categories (repeatable).")
    parser.add_argument("--cluster", action="append", default=[], metavar="ID",
                        help="Only these clusters (id or its prefix; repeatable).")
    parser.add_argument("--limit", type=int, default=None, help="Show at most this many pages.")
    parser.add_argument("--html", default=None, metavar="FILE", help="Write the self-contained HTML report here.")
    parser.add_argument("--plots", default=None, metavar="DIR",
                        help="Where pr_curve.png and calibration.png are (default: OUTPUT_DIR).")
    parser.add_argument("--decide", action="store_true",
                        help="Ask for a verdict per cluster and append verdicts to --verdicts.")
    parser.add_argument("--verdicts", default="verdicts.jsonl", help="Verdict file (JSON Lines) for --decide.")
    parser.add_argument("--reviewer", default=os.environ.get("REGENWATCH_REVIEWER") or os.environ.get("USER"),
                        help="Reviewer name recorded with each verdict (default: $REGENWATCH_REVIEWER or $USER).")
    web = parser.add_argument_group("review workspace in the browser (--serve)")
    web.add_argument("--serve", action="store_true",
                     help="Serve the review workspace: queue, page view, verdicts by keyboard, saved as made.")
    web.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1: this machine only).")
    web.add_argument("--port", type=int, default=8765, help="Port (default 8765; 0: any free port).")
    web.add_argument("--db", default=None, metavar="FILE",
                     help="Verdict database (SQLite, WAL), shared by every reviewer "
                          "(default: review.sqlite in the first OUTPUT_DIR).")
    web.add_argument("--pages", action="append", default=[], metavar="GLOB",
                     help="The run's input files (repeatable), to show each page's whole normalized text; "
                          "without them the page view shows each sentence in its context.")
    web.add_argument("--export", default=None, metavar="FILE",
                     help="Write the workspace's current verdicts (confirm/reject; escalated pages are left out) "
                          "as schemas/verdict.avsc records to FILE (.avro or .jsonl), for train --feedback.")
    return parser


def default_db(output_dirs: Sequence[str]) -> str:
    return os.path.join(output_dirs[0], "review.sqlite")


def review_command(args: argparse.Namespace, ask: Callable[[str], str] = input, out: TextIO = sys.stdout) -> int:
    from regenwatch.pipelines.transforms import output_files

    for directory in args.output_dirs:
        if not os.path.isdir(directory) or not any(output_files(directory).values()):
            print(f"regenwatch review: {directory} holds no regenwatch outputs", file=sys.stderr)
            return 2
    db_path = args.db or default_db(args.output_dirs)
    if args.export:
        from regenwatch.web.store import VerdictStore, write_export

        if not os.path.exists(db_path):
            print(f"regenwatch review: no verdict database at {db_path}", file=sys.stderr)
            return 2
        keys = [(r["id"], r["content_sha256"]) for d in args.output_dirs for r in load_queue(d)]
        records, counts = VerdictStore(db_path).export_records(keys)
        write_export(records, args.export)
        print(f"wrote {args.export}: {len(records)} verdicts ({counts['confirm']} confirm, {counts['reject']} reject); "
              f"{counts['escalate']} escalated pages left out", file=out)
        if not args.serve:
            return 0
    if args.serve:
        from regenwatch.web.app import serve

        try:
            return serve(args.output_dirs, db_path, args.host, args.port, args.reviewer, args.pages, out=out)
        except ValueError as exc:
            print(f"regenwatch review: {exc}", file=sys.stderr)
            return 2
    records = [r for d in args.output_dirs for r in load_queue(d)]
    records = sort_queue(filter_queue(records, args.severity, args.category, args.cluster), args.sort)
    if args.limit is not None:
        records = records[: max(0, args.limit)]
    width = shutil.get_terminal_size((100, 24)).columns
    if args.html:
        plots = find_plots(args.plots or args.output_dirs[0])
        with open(args.html, "w", encoding="utf-8") as handle:
            handle.write(render_html(records, plots, title=f"regenwatch review: {', '.join(args.output_dirs)}"))
        print(f"wrote {args.html} ({len(records)} pages, {len(plots)} plots)", file=sys.stderr)
    if args.decide:
        if not args.reviewer:
            print("regenwatch review: --decide needs --reviewer (or $REGENWATCH_REVIEWER)", file=sys.stderr)
            return 2
        counts = decide(records, args.verdicts, args.reviewer, ask=ask, out=out, width=width)
        print(f"verdicts in {args.verdicts}: {counts['confirm']} confirmed, {counts['reject']} rejected, "
              f"{counts['skipped']} skipped, {counts['already']} decided before", file=out)
        return 0
    if not args.html:
        print(render_table(records, width), file=out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return review_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
