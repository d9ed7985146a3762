"""``regenwatch review DIR... --serve``: the review workspace in the browser (Flask 3 + waitress).

* ``/``: the queue, flagged pages sorted by severity then score, filtered by
  severity, category, cluster and status (undecided, escalated, decided),
  each filter with its count;
* ``/page/<n>``: one page: title, URL (as text, never a link), score,
  severity, categories, obfuscation signals, the rationale (each sentence
  once, with all its categories) highlighted in the page's normalized text,
  the other pages of its cluster and the verdict history;
* ``POST /page/<n>/verdict``: confirm (with corrected categories), reject or
  escalate, with an optional note, for every page of the cluster; stored in
  SQLite before the answer (``store.py``), then on to the next undecided page;
* ``/export/verdicts.avro`` and ``.jsonl``: the current verdicts as
  ``schemas/verdict.avsc`` records, for ``regenwatch train --feedback``.

Page text is hostile. Jinja2 autoescaping renders every string from a page as
text; the only script is the app's own static ``app.js`` (keyboard), and the
Content-Security-Policy forbids any other script, inline handler, remote
resource, form target or framing. State-changing requests are POSTs that
carry the session's CSRF token. Only the run directories given are read,
once, at start; no URL names a file (pages are numbered), so no request can
reach another file.
"""
from __future__ import annotations

import datetime as dt
import hmac
import io
import os
import secrets
from typing import Dict, List, Optional, Sequence, Tuple

from flask import Flask, abort, flash, redirect, render_template, request, send_file, session, url_for

from regenwatch.models.classifier import CATEGORIES
from regenwatch.review import (
    SEVERITY_RANK,
    cluster_key,
    cluster_label,
    load_queue,
    rationale_sentences,
    sort_queue,
    summary_counts,
)
from regenwatch.web.store import ACTIONS, VerdictStore, export_bytes

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
STATUSES = ("all", "undecided", "escalated", "decided")
# The page text shown whole up to this size; a longer page shows its start
# and the passages around the highlighted sentences.
MAX_TEXT_CHARS = 200_000

PageKey = Tuple[str, str]


# Characters that change how the text around them is shown without being
# seen: bidi overrides and isolates (a right-to-left override makes
# "evil.exe" read "exe.live"), marks, and C0/C1 controls other than
# whitespace. Every string a template prints is passed through
# display_text (Jinja's finalize), so they show as U+FFFD instead.
_INVISIBLE = {c: "\ufffd" for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0),
                                      0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


def display_text(value):
    """What a template shows for a value: strings with bidi and control characters made visible."""
    return value.translate(_INVISIBLE) if isinstance(value, str) else value


class Workspace:
    """The flagged pages of the run directories, in queue order, with their texts when given."""

    def __init__(self, run_dirs: Sequence[str], page_patterns: Sequence[str] = ()):
        from regenwatch.pipelines.transforms import output_files

        self.run_dirs = [os.path.abspath(d) for d in run_dirs]
        by_key: Dict[PageKey, dict] = {}
        for directory in self.run_dirs:
            if not os.path.isdir(directory) or not output_files(directory)["flagged"]:
                raise ValueError(f"{directory} holds no regenwatch flagged outputs")
            for r in load_queue(directory):
                r["run"] = os.path.basename(directory.rstrip(os.sep)) or directory
                key = (r["id"], r["content_sha256"])
                # The same page flagged by two runs is one page to review: the latest record.
                if key not in by_key or _millis(r.get("processed_at")) >= _millis(by_key[key].get("processed_at")):
                    by_key[key] = r
        self.records: List[dict] = sort_queue(by_key.values(), "severity")
        for n, r in enumerate(self.records):
            r["n"] = n
            r["merged"] = rationale_sentences(r)
        self.clusters: Dict[str, List[int]] = {}
        for r in self.records:
            self.clusters.setdefault(cluster_key(r), []).append(r["n"])
        self.texts: Dict[PageKey, dict] = {}
        if page_patterns:
            self._load_texts(page_patterns)

    def _load_texts(self, patterns: Sequence[str]) -> None:
        """Normalized text (and the HTML title) of each flagged page, from the run's input files."""
        from regenwatch.models.text import PageError, normalize_page
        from regenwatch.training.sampling import find_pages

        found = find_pages(list(patterns), {(r["id"], r["content_sha256"]) for r in self.records})
        for key, page in found.items():
            try:
                text = normalize_page(page.content, page.content_type).text
            except PageError:
                continue
            # The HTML <title>, else the text's first line (a page has no title field of its own).
            first = text.strip().split("\n", 1)[0].strip()
            if len(first) > 100:
                first = first[:100].rsplit(" ", 1)[0] + " …"
            self.texts[key] = {"text": text, "title": _html_title(page.content, page.content_type) or first or None}

    def key(self, r: dict) -> PageKey:
        return (r["id"], r["content_sha256"])

    def cluster_of(self, r: dict) -> List[dict]:
        return [self.records[i] for i in self.clusters[cluster_key(r)]]


def _millis(value) -> int:
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    return int(value or 0)


def _html_title(content: str, content_type: Optional[str]) -> Optional[str]:
    from regenwatch.models.text import looks_like_html

    is_html = "html" in content_type.lower() if content_type else looks_like_html(content)
    if not is_html:
        return None
    from selectolax.lexbor import LexborHTMLParser

    node = LexborHTMLParser(content[:200_000]).css_first("title")
    title = " ".join(node.text().split()) if node is not None else ""
    return title[:300] or None


def highlight_segments(text: str, items: Sequence[dict]) -> Tuple[List[dict], List[int]]:
    """The text cut into plain and highlighted segments: each rationale sentence's first occurrence.

    Returns the segments ({"text", "item"} with item the rationale index or
    None) and the indexes of sentences not found in the text.
    """
    spans, missing = [], []
    for i, item in enumerate(items):
        start = text.find(item["sentence"])
        if start < 0:
            missing.append(i)
        else:
            spans.append((start, start + len(item["sentence"]), i))
    spans.sort()
    segments, pos = [], 0
    for start, end, i in spans:
        if start < pos:  # overlaps a sentence already highlighted
            missing.append(i)
            continue
        if start > pos:
            segments.append({"text": text[pos:start], "item": None})
        segments.append({"text": text[start:end], "item": i})
        pos = end
    if pos < len(text):
        segments.append({"text": text[pos:], "item": None})
    return segments, sorted(missing)


def _clip_segments(segments: List[dict], limit: int = MAX_TEXT_CHARS, keep: int = 600) -> List[dict]:
    """A very long text: plain segments shortened around the highlights (the highlights kept whole)."""
    if sum(len(s["text"]) for s in segments) <= limit:
        return segments
    out = []
    for n, seg in enumerate(segments):
        t = seg["text"]
        if seg["item"] is None and len(t) > 2 * keep:
            head = t[:keep] if n > 0 else ""
            tail = t[-keep:] if n < len(segments) - 1 else ""
            t = f"{head} […] {tail}"
        out.append({"text": t, "item": seg["item"]})
    return out


# --------------------------------------------------------------------------
# Filters


class Filters:
    def __init__(self, args):
        self.severity = [s for s in args.getlist("severity") if s in SEVERITY_RANK]
        self.category = [c for c in args.getlist("category") if c in CATEGORIES]
        self.cluster = (args.get("cluster") or "").strip()[:100]
        status = args.get("status") or "all"
        self.status = status if status in STATUSES else "all"

    def params(self, **change) -> dict:
        p = {"severity": self.severity, "category": self.category, "cluster": self.cluster or None,
             "status": self.status if self.status != "all" else None}
        p.update(change)
        return {k: v for k, v in p.items() if v}

    def toggle(self, dim: str, value: str) -> dict:
        current = list(getattr(self, dim))
        current = [v for v in current if v != value] if value in current else current + [value]
        return self.params(**{dim: current})

    def match(self, r: dict, state: Optional[dict], skip: str = "") -> bool:
        if skip != "severity" and self.severity and r["severity"] not in self.severity:
            return False
        if skip != "category" and self.category and not set(self.category) & set(r["categories"]):
            return False
        if skip != "cluster" and self.cluster and not cluster_key(r).startswith(self.cluster):
            return False
        if skip != "status" and self.status != "all" and status_of(state) != self.status:
            return False
        return True


def status_of(state: Optional[dict]) -> str:
    if state is None:
        return "undecided"
    return "escalated" if state["verdict"] == "escalate" else "decided"


# --------------------------------------------------------------------------
# The app


def create_app(workspace: Workspace, store: VerdictStore, reviewer: Optional[str] = None,
               port: Optional[int] = None, hosts: Optional[Sequence[str]] = ("127.0.0.1", "localhost")) -> Flask:
    """The app. ``hosts``: the names a request's Host may carry (None: any, for a server bound to all addresses)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=store.session_secret(),
        # Several workspaces on one machine differ by port only, and cookies do not: one name per port.
        SESSION_COOKIE_NAME=f"regenwatch_review_{port or 'app'}",
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True,
        # Host header check (DNS rebinding): only the names this server was started for.
        TRUSTED_HOSTS=list(hosts) if hosts else None,
        MAX_CONTENT_LENGTH=64 * 1024,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.jinja_env.autoescape = True  # every template, whatever its name
    app.jinja_env.finalize = display_text  # then escaped: bidi and control characters shown, never obeyed
    app.jinja_env.filters["datetime"] = lambda ms: dt.datetime.fromtimestamp(
        int(ms) / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    app.extensions["regenwatch"] = {"workspace": workspace, "store": store}
    default_reviewer = (reviewer or "").strip() or None

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return session["csrf"]

    def current_reviewer() -> Optional[str]:
        return session.get("reviewer") or default_reviewer

    @app.context_processor
    def _globals():
        return {"csrf_token": csrf_token, "reviewer": current_reviewer(), "categories": CATEGORIES,
                "cluster_label": cluster_label, "run_dirs": workspace.run_dirs}

    @app.before_request
    def _check_csrf():
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            sent = request.form.get("csrf", "")
            expected = session.get("csrf", "")
            if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
                abort(400, "missing or wrong CSRF token: reload the page")

    @app.after_request
    def _headers(response):
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def filtered(filters: Filters, states) -> List[dict]:
        return [r for r in workspace.records if filters.match(r, states.get(workspace.key(r)))]

    @app.get("/")
    def queue():
        filters = Filters(request.args)
        states = store.current()
        rows = filtered(filters, states)
        facets = {
            "severity": [(s, sum(1 for r in workspace.records if r["severity"] == s
                                 and filters.match(r, states.get(workspace.key(r)), "severity")))
                         for s in SEVERITY_RANK],
            "category": [(c, sum(1 for r in workspace.records if c in r["categories"]
                                 and filters.match(r, states.get(workspace.key(r)), "category")))
                         for c in CATEGORIES],
            "status": [(s, sum(1 for r in workspace.records if (s == "all" or status_of(states.get(workspace.key(r))) == s)
                               and filters.match(r, states.get(workspace.key(r)), "status")))
                       for s in STATUSES],
        }
        clusters = [(k, n, size) for k, n, size in summary_counts(workspace.records)["clusters"] if n > 1 or size > 1]
        return render_template("queue.html", rows=rows, states=states, filters=filters, facets=facets,
                               clusters=clusters, total=len(workspace.records), key=workspace.key,
                               summary=summary_counts(rows), status_of=status_of)

    def page_or_404(n: int) -> dict:
        if not 0 <= n < len(workspace.records):
            abort(404)
        return workspace.records[n]

    @app.get("/page/<int:n>")
    def page(n: int):
        r = page_or_404(n)
        filters = Filters(request.args)
        states = store.current()
        members = workspace.cluster_of(r)
        seen = max([states[workspace.key(m)]["seq"] for m in members if workspace.key(m) in states] or [0])
        text = workspace.texts.get(workspace.key(r))
        segments, missing = (highlight_segments(text["text"], r["merged"]) if text else (None, []))
        rows = filtered(filters, states)
        ns = [x["n"] for x in rows]
        pos = ns.index(n) if n in ns else None
        prev_n = ns[pos - 1] if pos is not None and pos > 0 else None
        next_n = ns[pos + 1] if pos is not None and pos + 1 < len(ns) else None
        return render_template(
            "page.html", r=r, filters=filters, state=states.get(workspace.key(r)), states=states,
            members=members, seen=seen, title=(text or {}).get("title"),
            segments=_clip_segments(segments) if segments else None, missing=missing,
            history=store.history(workspace.key(r)), prev_n=prev_n, next_n=next_n, position=pos,
            filtered_count=len(ns), key=workspace.key, status_of=status_of)

    @app.post("/page/<int:n>/verdict")
    def verdict(n: int):
        r = page_or_404(n)
        filters = Filters(request.args)
        action = request.form.get("action", "")
        if action not in ACTIONS:
            abort(400, f"action must be one of {', '.join(ACTIONS)}")
        name = current_reviewer()
        if not name:
            flash("Set your reviewer name first (top right), then decide again.", "error")
            return redirect(url_for("page", n=n, **filters.params()), 303)
        cats = [c for c in request.form.getlist("categories") if c in CATEGORIES]
        try:
            seen = int(request.form.get("seen", "0") or 0)
        except ValueError:
            seen = 0
        members = workspace.cluster_of(r)
        result = store.record(members, action, name, cats if action != "reject" else [],
                              note=request.form.get("note", "")[:2000], seen=seen)
        what = {"confirm": "confirmed", "reject": "rejected", "escalate": "escalated"}[action]
        flash(f"Saved: {what} {len(members)} page{'s' if len(members) != 1 else ''}"
              + (" (the whole cluster)" if len(members) > 1 else "") + f" as {name}.", "ok")
        for old in result["overridden"][:3]:
            flash(f"This replaced {old['reviewer']}'s {old['verdict']} on {old['page_id']}, given after you opened "
                  f"the page (last verdict wins; both are in the history).", "warn")
        states = store.current()
        view = [x for x in workspace.records if filters.match(x, None, "status")]
        nxt = _next_undecided(workspace, view, states, r)
        if nxt is None:
            flash("No undecided page left in this view.", "ok")
            return redirect(url_for("queue", **filters.params()), 303)
        return redirect(url_for("page", n=nxt["n"], **filters.params()), 303)

    @app.post("/reviewer")
    def set_reviewer():
        name = " ".join((request.form.get("reviewer") or "").split())[:80]
        if name:
            session["reviewer"] = name
            flash(f"Reviewing as {name}.", "ok")
        target = request.form.get("back", "")
        # Only a path of this app (no scheme, no host) is followed back.
        if not target.startswith("/") or target.startswith("//") or "\\" in target:
            target = url_for("queue")
        return redirect(target, 303)

    @app.get("/export/verdicts.<fmt>")
    def export(fmt: str):
        if fmt not in ("avro", "jsonl"):
            abort(404)
        records, _ = store.export_records([workspace.key(r) for r in workspace.records])
        return send_file(io.BytesIO(export_bytes(records, fmt)), as_attachment=True, download_name=f"verdicts.{fmt}",
                         mimetype="application/avro" if fmt == "avro" else "application/x-ndjson")

    @app.errorhandler(400)
    @app.errorhandler(404)
    def _error(exc):
        if request.url_rule is None and exc.code == 400:
            # Refused before routing (an untrusted Host header): no URL can be built; plain text.
            return f"{exc.code} {exc.name}: {exc.description}", exc.code, {"Content-Type": "text/plain; charset=utf-8"}
        return render_template("error.html", error=exc), exc.code

    return app


def _next_undecided(workspace: Workspace, rows: List[dict], states, current: dict) -> Optional[dict]:
    """The next page after ``current`` in the view with no verdict, outside its cluster (wrapping round)."""
    later = [x for x in rows if x["n"] > current["n"]] + [x for x in rows if x["n"] < current["n"]]
    cluster = cluster_key(current)
    for x in later:
        if cluster_key(x) != cluster and workspace.key(x) not in states:
            return x
    return None


# --------------------------------------------------------------------------
# Serving


def make_server(app: Flask, host: str = "127.0.0.1", port: int = 8765, threads: int = 8):
    """A waitress server for the app (port 0: any free port; ``server.effective_port`` tells which)."""
    from waitress import create_server

    return create_server(app, host=host, port=port, threads=threads, ident="regenwatch")


def serve(run_dirs: Sequence[str], db_path: str, host: str = "127.0.0.1", port: int = 8765,
          reviewer: Optional[str] = None, page_patterns: Sequence[str] = (), out=None) -> int:
    import sys

    out = out or sys.stderr
    workspace = Workspace(run_dirs, page_patterns)
    store = VerdictStore(db_path)
    everywhere = host in ("0.0.0.0", "::", "")
    hosts = None if everywhere else ["127.0.0.1", "localhost", "::1", host]
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"regenwatch review: WARNING: bound to {host}: anyone who can reach this address can read the "
              f"queue and give verdicts (the workspace has no login); prefer 127.0.0.1 and an SSH tunnel",
              file=out, flush=True)
    server = make_server(create_app(workspace, store, reviewer, port, hosts=hosts), host, port)
    decided = sum(1 for r in workspace.records if workspace.key(r) in store.current())
    print(f"regenwatch review: {len(workspace.records)} flagged pages from {len(workspace.run_dirs)} run(s), "
          f"{decided} with a verdict in {store.path}; texts for {len(workspace.texts)}\n"
          f"serving on http://{host}:{server.effective_port}/ (Ctrl-C to stop; verdicts are saved as they are made)",
          file=out, flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
