"""regenwatch review: terminal queue, HTML report (checked in headless Chromium), --decide."""
import io
import os
import shutil
import struct
import subprocess

import pytest
from selectolax.lexbor import LexborHTMLParser

from regenwatch.pipelines.moderate import run
from regenwatch.review import (
    build_parser,
    decide,
    filter_queue,
    load_queue,
    rationale_sentences,
    render_html,
    render_table,
    review_command,
    sort_queue,
    terminal_safe,
)
from regenwatch.training.feedback import read_verdicts
from regenwatch.training.plots import write_report_plots
from tests.review_pages import HOSTILE, HOSTILE_ID, TOWNS, template_rows, unrelated_rows, write_jsonl

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def queue_run(tmp_path_factory, small_model_uri):
    """A run whose queue holds a 4-town template cluster, unrelated pages and a hostile page."""
    tmp = tmp_path_factory.mktemp("review-run")
    path = write_jsonl(tmp / "in.jsonl", template_rows() + unrelated_rows() + [HOSTILE])
    out = str(tmp / "out")
    # Threshold 0: every decided page is in the queue, whatever the small model thinks of it.
    run(["--input", path, "--output", out, "--model", small_model_uri, "--threshold", "0"])
    return out, path


def _review(argv):
    out = io.StringIO()
    code = review_command(build_parser().parse_args(argv), out=out)
    return code, out.getvalue()


def _template_cluster(records):
    ids = {r["id"] for r in template_rows()}
    [cid] = {r["cluster_id"] for r in records if r["id"] in ids}
    return cid


# --------------------------------------------------------------------------
# Terminal


def test_terminal_safe_removes_escapes_and_bidi_controls():
    assert terminal_safe("a\x1b[2Jb\u202ec\u200bd\ne") == "a\ufffd[2Jb\ufffdc\ufffdd e"
    assert terminal_safe("x" * 50, 10) == "x" * 9 + "…"
    assert terminal_safe(None) == ""


def test_terminal_view_lists_every_flagged_page_with_its_top_sentence(queue_run):
    out_dir, _ = queue_run
    records = load_queue(out_dir)
    code, text = _review([out_dir])
    assert code == 0
    assert "\x1b" not in text and "\u202e" not in text
    assert f"{len(records)} flagged pages" in text
    for r in records:
        assert terminal_safe(r["id"])[:20] in text
        if r["rationale"]:
            assert terminal_safe(r["rationale"][0]["sentence"])[:40] in text
    assert f"x{len(TOWNS)}" in text  # the template cluster's size


def test_terminal_view_filters_and_sorts(queue_run):
    out_dir, _ = queue_run
    records = load_queue(out_dir)
    cid = _template_cluster(records)
    code, text = _review([out_dir, "--cluster", cid[:6], "--sort", "score"])
    assert code == 0
    shown = [r["id"] for r in records if r["id"].split("-")[0] == "tmpl"]
    assert all(i in text for i in shown) and "fda-warning" not in text and "knee-clinic" not in text

    by_sev = sort_queue(records, "severity")
    ranks = [{"high": 0, "medium": 1, "low": 2}[r["severity"]] for r in by_sev]
    assert ranks == sorted(ranks)
    by_cluster = sort_queue(records, "cluster")
    assert {r["cluster_id"] for r in by_cluster[:len(TOWNS)]} == {cid}
    high = filter_queue(records, severities=["high"])
    assert high and all(r["severity"] == "high" for r in high)
    cats = filter_queue(records, categories=["disease_treatment"])
    assert cats and all("disease_treatment" in r["categories"] for r in cats)
    assert filter_queue(records, clusters=["no-such-cluster"]) == []


def test_review_of_a_directory_without_outputs_fails_clearly(tmp_path):
    code, _ = _review([str(tmp_path)])
    assert code == 2


# --------------------------------------------------------------------------
# HTML


def test_html_escapes_everything_that_comes_from_a_page(queue_run):
    records = load_queue(queue_run[0])
    page = render_html(records)
    assert "<script" not in page.lower()
    assert 'href="javascript' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page


def _chromium():
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        pytest.skip("chromium is not installed (Debian package 'chromium'; .ci/run installs it with apt-get): "
                    "the HTML report was not checked in a browser")
    return binary


def _chromium_run(binary, profile, *args):
    os.makedirs(profile, exist_ok=True)
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, timeout=180, check=False)


def test_html_report_in_headless_chromium(queue_run, tmp_path, capsys):
    binary = _chromium()
    out_dir, _ = queue_run
    records = load_queue(out_dir)
    plots_dir = tmp_path / "plots"
    write_report_plots([0, 1, 1, 0, 1], [0.1, 0.8, 0.6, 0.4, 0.9], 0.5, str(plots_dir))
    report = tmp_path / "report.html"
    code, _ = _review([out_dir, "--html", str(report), "--plots", str(plots_dir)])
    assert code == 0
    url = report.as_uri()

    dom = _chromium_run(binary, str(tmp_path / "profile-dom"), "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    tree = LexborHTMLParser(dom.stdout.decode("utf-8"))

    # Every flagged page is listed once, with its rationale sentences highlighted in order.
    articles = {a.attributes["data-page-id"]: a for a in tree.css("article.page")}
    assert sorted(articles) == sorted(r["id"] for r in records)
    assert HOSTILE_ID in articles
    for r in records:
        marks = [m.text() for m in articles[r["id"]].css("mark")]
        assert marks == [item["sentence"] for item in rationale_sentences(r)], r["id"]
        assert len(marks) == len(set(marks)), r["id"]  # each sentence once
        assert r["model_version"] in articles[r["id"]].text()
    assert sum(len(r["rationale"]) for r in records) > 0

    # Grouped by cluster: the template's towns are one section.
    cid = _template_cluster(records)
    [section] = [s for s in tree.css("section.cluster") if s.attributes["data-cluster-id"] == cid]
    assert sorted(a.attributes["data-page-id"] for a in section.css("article.page")) == \
        sorted(r["id"] for r in template_rows())
    assert section.attributes["data-cluster-size"] == str(len(TOWNS))

    # The hostile page injected nothing: no script element, no image but the embedded plots, no link to it.
    assert tree.css("script") == []
    assert [i.attributes["src"][:22] for i in tree.css("img")] == ["data:image/png;base64,"] * 2
    assert all(a.attributes["href"].startswith("https://") for a in tree.css("a"))

    shot = tmp_path / "review-report.png"
    result = _chromium_run(binary, str(tmp_path / "profile-shot"), f"--screenshot={shot}",
                           "--window-size=1280,2400", "--hide-scrollbars", url)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 2400)
    with capsys.disabled():  # the artifact's path shows in the test log, pass or fail
        print(f"\nHTML report screenshot: {shot}")


# --------------------------------------------------------------------------
# Deciding


def test_decide_writes_one_verdict_per_page_of_a_cluster_and_resumes(queue_run, tmp_path):
    records = load_queue(queue_run[0])
    cid = _template_cluster(records)
    template = [r for r in records if r["cluster_id"] == cid]
    verdicts = str(tmp_path / "verdicts.jsonl")
    # The template cluster only: reject it once for its four towns.
    answers = iter(["x", "r", "same template, reviewed once"])
    counts = decide(template, verdicts, "alice", ask=lambda _: next(answers), out=io.StringIO())
    assert counts["reject"] == len(TOWNS)
    written = read_verdicts([verdicts])
    assert sorted(v["id"] for v in written) == sorted(r["id"] for r in template)
    assert all(v["verdict"] == "reject" and v["categories"] == [] and v["cluster_id"] == cid
               and v["reviewer"] == "alice" and v["note"] == "same template, reviewed once" for v in written)

    # The rest: confirm the first cluster with corrected categories, then quit.
    rest = [r for r in records if r["cluster_id"] != cid]
    answers = iter(["c", "efficacy_proof, nonsense", "efficacy_proof", "", "q"])
    out = io.StringIO()
    counts = decide(records, verdicts, "alice", ask=lambda _: next(answers), out=out)
    assert counts["already"] == len(TOWNS) and counts["confirm"] == 1
    assert "unknown nonsense" in out.getvalue()
    confirmed = [v for v in read_verdicts([verdicts]) if v["verdict"] == "confirm"]
    assert len(confirmed) == 1 and confirmed[0]["categories"] == ["efficacy_proof"]
    assert confirmed[0]["id"] in {r["id"] for r in rest}

    # End of input stops cleanly and keeps what was decided.
    def eof(_):
        raise EOFError

    counts = decide(records, verdicts, "alice", ask=eof, out=io.StringIO())
    assert counts["already"] == len(TOWNS) + 1 and counts["confirm"] == counts["reject"] == 0


# --------------------------------------------------------------------------
# Each sentence once, under a summary header


def _item(sentence, score, **kw):
    return {"sentence": sentence, "score": score, "category_score": 0.0, "terms": [], "context_before": [],
            "context_after": [], **kw}


OLD_STYLE = [  # flagged.avsc before the change: one item per (sentence, category)
    _item("Cures arthritis with no side effects.", 0.9, category="disease_treatment", category_score=0.8,
          terms=["cures"]),
    _item("Cures arthritis with no side effects.", 0.9, category="safety_claim", category_score=0.85,
          terms=["side effects"]),
    _item("Book today.", 0.4, category=None),
]
NEW_STYLE = [  # after: one item per sentence with all its categories
    _item("Cures arthritis with no side effects.", 0.9, categories=["disease_treatment", "safety_claim"],
          category_score=0.85, terms=["cures", "side effects"]),
    _item("Book today.", 0.4, categories=[]),
]


@pytest.mark.parametrize("items", [OLD_STYLE, NEW_STYLE], ids=["category", "categories"])
def test_rationale_sentences_lists_each_sentence_once_with_all_its_categories(items):
    merged = rationale_sentences({"rationale": items})
    assert [m["sentence"] for m in merged] == ["Cures arthritis with no side effects.", "Book today."]
    assert merged[0]["categories"] == ["disease_treatment", "safety_claim"]
    assert merged[0]["category_score"] == 0.85 and merged[0]["terms"] == ["cures", "side effects"]
    assert merged[1]["categories"] == []


def _record(rid, items, severity="high", cluster=None, size=1):
    return {"id": rid, "url": None, "score": 0.9, "threshold": 0.5, "severity": severity,
            "categories": ["disease_treatment", "safety_claim"], "rationale": items, "signals": [],
            "model_version": "t", "content_sha256": "0" * 64, "processed_at": 0, "cluster_id": cluster,
            "cluster_size": size}


def test_terminal_and_html_show_a_summary_header_and_each_sentence_once():
    records = [_record("a", OLD_STYLE, cluster="c" * 16, size=2), _record("b", NEW_STYLE, cluster="c" * 16, size=2),
               _record("z", NEW_STYLE, severity="medium")]
    text = render_table(records, 120)
    head = text.splitlines()[:4]
    assert head[0] == "3 flagged pages (high 2, medium 1, low 0) in 2 clusters"
    assert head[1] == "categories: disease_treatment 3, safety_claim 3"
    assert head[2].startswith("clusters of near duplicates: ccccccccc 2 flagged/2")
    assert head[3] == "pages without a near duplicate: 1"
    assert text.count("Cures arthritis with no side effects.") == 3  # once per page, not once per category
    assert text.count("[disease_treatment, safety_claim 0.90]") == 3

    page = LexborHTMLParser(render_html(records))
    summary = page.css_first("section.summary")
    assert [t.css_first("caption").text() for t in summary.css("table")] == ["By severity", "By category", "Clusters"]
    for article in page.css("article.page"):
        marks = article.css("mark")
        assert [m.text() for m in marks] == ["Cures arthritis with no side effects.", "Book today."]
        assert marks[0].attributes["data-categories"] == "disease_treatment safety_claim"
