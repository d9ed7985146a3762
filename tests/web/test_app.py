"""The workspace app through Flask's test client: views, verdicts, CSRF, CSP, hosts, export, the command."""
import io
import re

import pytest
from selectolax.lexbor import LexborHTMLParser

from regenwatch.review import build_parser, load_queue, review_command
from regenwatch.training.feedback import read_verdicts
from regenwatch.web.app import CSP, Workspace, create_app, display_text, highlight_segments
from regenwatch.web.store import VerdictStore
from tests.review_pages import HOSTILE_ID, template_rows


@pytest.fixture
def client_for(tmp_path):
    def make(run_dirs, pages=(), reviewer="alice"):
        workspace = Workspace(run_dirs, pages)
        store = VerdictStore(str(tmp_path / "review.sqlite"))
        app = create_app(workspace, store, reviewer)
        return app.test_client(), workspace, store
    return make


def _csrf(client, path="/"):
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _template_n(workspace):
    ids = {r["id"] for r in template_rows()}
    return next(r["n"] for r in workspace.records if r["id"] in ids)


def test_queue_lists_pages_by_severity_then_score_with_filter_counts(review_run, client_for):
    out, inputs = review_run
    client, workspace, _ = client_for([out], [inputs])
    resp = client.get("/")
    assert resp.status_code == 200 and resp.headers["Content-Security-Policy"] == CSP
    tree = LexborHTMLParser(resp.get_data(as_text=True))
    ids = [tr.attributes["data-page-id"] for tr in tree.css("tr.row")]
    assert ids == [display_text(r["id"]) for r in workspace.records]
    ranks = [({"high": 0, "medium": 1, "low": 2}[r["severity"]], -r["score"]) for r in workspace.records]
    assert ranks == sorted(ranks)
    high = sum(1 for r in workspace.records if r["severity"] == "high")
    assert tree.css_first("#severity-high b").text() == str(high)
    filtered = LexborHTMLParser(client.get("/?severity=high&status=undecided").get_data(as_text=True))
    assert len(filtered.css("tr.row")) == high


def test_cluster_verdict_applies_to_every_page_and_needs_the_csrf_token(review_run, client_for):
    out, inputs = review_run
    client, workspace, store = client_for([out], [inputs])
    n = _template_n(workspace)
    assert client.post(f"/page/{n}/verdict", data={"action": "reject"}).status_code == 400
    assert client.post(f"/page/{n}/verdict", data={"action": "reject", "csrf": "forged"}).status_code == 400
    assert store.count() == 0
    token = _csrf(client, f"/page/{n}")
    resp = client.post(f"/page/{n}/verdict", data={"action": "reject", "csrf": token, "note": "one template"})
    assert resp.status_code == 303
    current = store.current()
    template_ids = {r["id"] for r in template_rows()}
    assert sorted(k[0] for k in current) == sorted(template_ids)
    assert {v["note"] for v in current.values()} == {"one template"}
    assert len({v["cluster_id"] for v in current.values()}) == 1
    # On to the next undecided page, outside the cluster.
    nxt = int(resp.headers["Location"].split("/page/")[1].split("?")[0])
    assert workspace.records[nxt]["id"] not in template_ids


def test_stale_view_overrides_with_a_warning_and_keeps_history(review_run, client_for):
    out, inputs = review_run
    client, workspace, store = client_for([out], [inputs])
    n = next(r["n"] for r in workspace.records if r["id"] == "stem-cell-cures")
    token = _csrf(client, f"/page/{n}")
    page_html = client.get(f"/page/{n}").get_data(as_text=True)
    seen = re.search(r'name="seen" value="(\d+)"', page_html).group(1)
    store.record([workspace.records[n]], "reject", "bob")  # another reviewer, meanwhile
    resp = client.post(f"/page/{n}/verdict", data={"action": "confirm", "csrf": token, "seen": seen,
                                                  "categories": ["disease_treatment", "safety_assurance"]},
                       follow_redirects=True)
    assert "replaced bob" in resp.get_data(as_text=True)
    key = (workspace.records[n]["id"], workspace.records[n]["content_sha256"])
    assert [h["verdict"] for h in store.history(key)] == ["confirm", "reject"]
    assert store.current()[key]["categories"] == ["disease_treatment", "safety_assurance"]


def test_hostile_page_is_escaped_and_its_url_is_no_link(review_run, client_for):
    out, inputs = review_run
    client, workspace, _ = client_for([out], [inputs])
    n = next(r["n"] for r in workspace.records if r["id"] == HOSTILE_ID)
    html = client.get(f"/page/{n}").get_data(as_text=True)
    tree = LexborHTMLParser(html)
    assert [s.attributes.get("src") for s in tree.css("script")] == ["/static/app.js"]
    assert tree.css("img") == [] and tree.css("iframe") == [] and tree.css("style") == []
    assert not any(a.attributes.get("href", "").lower().startswith("javascript") for a in tree.css("a"))
    assert not any(k.startswith("on") for node in tree.css("*") for k in node.attributes)
    assert tree.css_first("#page-url").text() == "javascript:alert(document.cookie)"
    assert "<script>alert('x')</script>" in tree.css_first("#page-text").text()
    # The id's terminal escape and right-to-left override are shown, not obeyed.
    shown = tree.css_first("#page").attributes["data-page-id"]
    assert shown == HOSTILE_ID.replace("\x1b", "\ufffd").replace("\u202e", "\ufffd")
    assert "\u202e" not in html and "\x1b" not in html


def test_untrusted_host_and_unknown_page_are_refused(review_run, client_for):
    client, workspace, _ = client_for([review_run[0]])
    assert client.get("/", headers={"Host": "rebound.example"}).status_code == 400
    assert client.get(f"/page/{len(workspace.records)}").status_code == 404
    assert client.get("/static/../store.py").status_code == 404
    assert client.get("/export/verdicts.py").status_code == 404
    token = _csrf(client)
    resp = client.post("/reviewer", data={"csrf": token, "reviewer": "carol", "back": "//evil.example/"})
    assert resp.headers["Location"] == "/"


def test_without_input_files_each_sentence_is_shown_in_its_context(review_run, client_for):
    client, workspace, _ = client_for([review_run[0]])
    r = workspace.records[0]
    tree = LexborHTMLParser(client.get("/page/0").get_data(as_text=True))
    assert [m.text() for m in tree.css("#page-text mark")] == [i["sentence"] for i in r["merged"]]


def test_highlight_segments_marks_each_sentence_once():
    text = "A. Cures all. B. Cures all. C."
    segments, missing = highlight_segments(text, [{"sentence": "Cures all."}, {"sentence": "Not there."}])
    assert "".join(s["text"] for s in segments) == text
    assert [s["text"] for s in segments if s["item"] is not None] == ["Cures all."]
    assert missing == [1]


def test_review_command_exports_for_train_feedback(review_run, tmp_path):
    out, _ = review_run
    db = str(tmp_path / "r.sqlite")
    records = load_queue(out)
    VerdictStore(db).record(records[:2], "confirm", "alice", ["disease_treatment"])
    VerdictStore(db).record(records[2:3], "escalate", "alice")
    target = str(tmp_path / "verdicts.avro")
    text = io.StringIO()
    assert review_command(build_parser().parse_args([out, "--db", db, "--export", target]), out=text) == 0
    assert "1 escalated pages left out" in text.getvalue()
    assert sorted(v["id"] for v in read_verdicts([target])) == sorted(r["id"] for r in records[:2])


def test_serve_binds_127_0_0_1_by_default():
    args = build_parser().parse_args(["out/", "--serve"])
    assert args.serve and args.host == "127.0.0.1" and args.port == 8765


def test_a_restarted_server_resumes_the_review_and_the_session(review_run, tmp_path):
    out, inputs = review_run
    db = str(tmp_path / "resume.sqlite")
    first = create_app(Workspace([out]), VerdictStore(db), "alice").test_client()
    token = _csrf(first, "/page/0")
    assert first.post("/page/0/verdict", data={"action": "escalate", "csrf": token}).status_code == 303
    # The server stops; a new one on the same database, the reviewer's open tab posts again.
    second_app = create_app(Workspace([out]), VerdictStore(db), "alice")
    second = second_app.test_client()
    cookie = first.get_cookie(second_app.config["SESSION_COOKIE_NAME"])
    second.set_cookie(cookie.key, cookie.value)
    html = second.get("/?status=escalated").get_data(as_text=True)
    assert len(LexborHTMLParser(html).css("tr.row")) >= 1
    assert second.post("/page/0/verdict", data={"action": "reject", "csrf": token}).status_code == 303
    store = VerdictStore(db)
    r = Workspace([out]).records[0]
    assert [h["verdict"] for h in store.history((r["id"], r["content_sha256"]))] == ["reject", "escalate"]
