"""The review workspace in a real browser: Debian's chromium driven by selenium through /usr/bin/chromedriver.

Nothing is downloaded: the driver's path is given explicitly, so
selenium-manager is never asked for a driver or a browser.
"""
import json
import os
import shutil
import time
import urllib.request

import pytest

from regenwatch.cli import main as cli_main
from regenwatch.training.feedback import read_verdicts
from tests.review_pages import HOSTILE_ID, TOWNS, template_rows, tiny_training_files
from regenwatch.web.app import display_text
from tests.web.conftest import flagged_record, write_queue

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  "--window-size=1280,900", "--hide-scrollbars"]


@pytest.fixture
def browser(tmp_path):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (Debian packages chromium and chromium-driver; "
                    f".ci/run installs them with apt-get): the review workspace was not checked in a browser")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def keys(driver, text):
    """Type on the keyboard (into whatever has the focus), as a reviewer does."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(text).perform()


def press_and_wait(driver, text, timeout=20):
    """Type keys that navigate, and wait until the next page has loaded.

    A marker set on the current page's window is gone once a new document is
    loaded; errors raised while the browser is between documents are retried.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("window.__regenwatchOldPage = true;")
    keys(driver, text)
    WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script(
            "return window.__regenwatchOldPage === undefined && document.readyState === 'complete'"))


def rows(driver):
    return [tr.get_attribute("data-page-id") for tr in driver.find_elements("css selector", "tr.row")]


def shoot(driver, name, tmp_path, height=None):
    """A screenshot in the test's folder, and in REGENWATCH_SCREENSHOTS when set (the README's pictures)."""
    if height:
        driver.set_window_size(1280, height)
    path = str(tmp_path / name)
    driver.save_screenshot(path)
    target = os.environ.get("REGENWATCH_SCREENSHOTS")
    if target:
        os.makedirs(target, exist_ok=True)
        shutil.copy(path, os.path.join(target, name))
    return path


def test_queue_filter_open_decide_by_keyboard_reload_export_and_retrain(review_run, serve, browser, tmp_path):
    out, inputs = review_run
    served = serve([out], str(tmp_path / "review.sqlite"), reviewer="alice", pages=[inputs])
    records = served.workspace.records
    d = browser

    # The queue: every flagged page, most severe then highest score first.
    d.get(served.url + "/")
    assert rows(d) == [display_text(r["id"]) for r in records]
    shoot(d, "queue.png", tmp_path, height=900)
    # Filter by keyboard: h = high only; the count shown is the rows shown.
    press_and_wait(d, "h")
    high = [r["id"] for r in records if r["severity"] == "high"]
    assert rows(d) == [display_text(i) for i in high] and "severity=high" in d.current_url
    assert d.find_element("css selector", "#severity-high b").text == str(len(high))
    # And by cluster (a click on the template's chip): its four towns.
    cid = next(r["cluster_id"] for r in records if r["id"] == template_rows()[0]["id"])
    d.get(served.url + "/?status=undecided")
    d.find_element("id", f"cluster-{cid[:12]}").click()
    assert sorted(rows(d)) == sorted(r["id"] for r in template_rows())
    # The template cluster: open it with the keyboard (j selects, Enter opens), and one keystroke
    # rejects its four towns.
    keys(d, "j")
    press_and_wait(d, "\ue007")  # Enter
    assert d.find_element("id", "page").get_attribute("data-page-id") in {r["id"] for r in template_rows()}
    assert len(d.find_elements("css selector", "#cluster li a")) == len(TOWNS) - 1  # the other towns
    shoot(d, "page.png", tmp_path, height=1000)
    press_and_wait(d, "r")
    assert f"rejected {len(TOWNS)} pages" in d.find_element("id", "flashes").text

    # The undecided queue no longer holds them; open its first page by keyboard.
    d.get(served.url + "/?status=undecided")
    undecided = [r for r in records if r["cluster_id"] != cid]
    assert rows(d) == [display_text(r["id"]) for r in undecided]
    keys(d, "j")
    press_and_wait(d, "\ue007")
    first = undecided[0]
    # Shown as the page shows ids (control and bidi characters replaced): which page comes first
    # depends on the shipped model's scores, and it may be the one with a hostile id.
    assert d.find_element("id", "page").get_attribute("data-page-id") == display_text(first["id"])
    marks = [m.text for m in d.find_elements("css selector", "#page-text mark")]
    assert marks and len(marks) == len(set(marks))
    # Confirm with corrected categories and a note, all by keyboard.
    from regenwatch.models.classifier import CATEGORIES

    boxes = {c: d.find_element("id", f"cat-{i + 1}") for i, c in enumerate(CATEGORIES)}
    before = {c for c, b in boxes.items() if b.is_selected()}
    toggled = CATEGORIES[2]
    keys(d, "3")
    keys(d, "n")
    keys(d, "checked twice\ue007")  # Enter leaves the note field
    press_and_wait(d, "c")
    assert "Saved: confirmed" in d.find_element("id", "flashes").text
    expected = sorted(before ^ {toggled}, key=CATEGORIES.index)

    # Reload the page decided: the verdict is kept.
    d.get(f"{served.url}/page/{first['n']}")
    d.refresh()
    status = d.find_element("id", "page-status").text
    assert "confirm" in status and "alice" in status
    d.get(served.url + "/?status=decided")
    assert len(rows(d)) == 1 + len(TOWNS)

    # Export (the page's own link) and the command give the same records.
    export = str(tmp_path / "verdicts.avro")
    assert cli_main(["review", out, "--db", served.store.path, "--export", export]) == 0
    cookie = {c["name"]: c["value"] for c in d.get_cookies()}
    request = urllib.request.Request(served.url + "/export/verdicts.avro",
                                     headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookie.items())})
    downloaded = str(tmp_path / "downloaded.avro")
    with urllib.request.urlopen(request) as resp, open(downloaded, "wb") as handle:
        handle.write(resp.read())
    verdicts = read_verdicts([export])
    assert sorted((v["id"], v["verdict"]) for v in read_verdicts([downloaded])) == \
        sorted((v["id"], v["verdict"]) for v in verdicts)
    by_id = {v["id"]: v for v in verdicts}
    assert by_id[first["id"]]["categories"] == expected and by_id[first["id"]]["note"] == "checked twice"
    assert all(by_id[r["id"]]["verdict"] == "reject" for r in template_rows())

    # Retrain with the export, unchanged: a tiny sample set keeps it quick (the wiring, as in test_feedback).
    tiny, files = tiny_training_files(tmp_path)
    model = str(tmp_path / "model.joblib")
    code = cli_main(["train", "--data", *files, "--feedback", export, "--feedback-pages", inputs,
                     "--folds", "2", "--out", model, "--version", "workspace-test"])
    assert code == 0
    with open(model[: -len(".joblib")] + ".manifest.json", encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert manifest["training_pages"] == len(tiny) + len(verdicts)
    assert any(f.endswith("verdicts.avro") for f in manifest["training_files"])


HOSTILE_TEXT = (
    "Our stem cell shots cure diabetes. <script>document.title='pwned';window.__pwned='script'</script> "
    "See <img src=x onerror=\"window.__pwned='onerror';document.title='pwned'\"> results. "
    "Click <a href=\"javascript:window.__pwned='link'\">here</a> now. "
    "<style>body{display:none!important}*{background:url(http://127.0.0.1:9/beacon)}</style> "
    "<svg onload=\"window.__pwned='svg'\"></svg> <iframe src=\"javascript:parent.__pwned='iframe'\"></iframe> "
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:window.__pwned='meta'\"> "
    "\"><div style=\"position:fixed;inset:0;background:red\" onmouseover=\"window.__pwned='hover'\">x</div> "
    "{{ 7*7 }} {% raw %} It is FDA approved."
)


def test_hostile_page_runs_nothing_in_the_browser(serve, browser, tmp_path):
    hostile_id = HOSTILE_ID + "<svg onload=window.__pwned='id'>"
    sentences = ["Our stem cell shots cure diabetes.", HOSTILE_TEXT[36:140], "It is FDA approved."]
    rationale = [{"sentence": s, "category": "disease_treatment", "categories": ["disease_treatment"], "score": 0.9, "category_score": 0.9,
                  "terms": ["<b onclick=x>"], "context_before": ["<script>window.__pwned='ctx'</script>"],
                  "context_after": []} for s in sentences]
    record = flagged_record(hostile_id, HOSTILE_TEXT, rationale=rationale, url="javascript:window.__pwned='url'",
                            signals=["<img src=x onerror=alert(1)>"])
    run_dir, pages = write_queue(tmp_path / "hostile-run", [record],
                                 pages=[{"id": hostile_id, "content": HOSTILE_TEXT, "content_type": "text/plain"}])
    served = serve([run_dir], str(tmp_path / "review.sqlite"), pages=[pages])
    for with_text in (True, False):
        if not with_text:
            served.close()
            served = serve([run_dir], str(tmp_path / "review.sqlite"))
        d = browser
        for path in ("/", "/page/0"):
            d.get(served.url + path)
            time.sleep(0.3)
            d.find_element("tag name", "body").click()  # hover/click over whatever a page might overlay
            assert d.execute_script("return window.__pwned === undefined")
            assert "pwned" not in d.title
            scripts = [s.get_attribute("src") for s in d.find_elements("tag name", "script")]
            assert scripts == [served.url + "/static/app.js"]
            assert d.find_elements("css selector", "img, iframe, svg, style, meta[http-equiv], object, embed") == []
            assert d.execute_script(
                "return [...document.querySelectorAll('*')].filter(e => [...e.attributes].some("
                "a => a.name.startsWith('on') || /^\\s*javascript:/i.test(a.value))).length") == 0
            assert d.execute_script("return getComputedStyle(document.body).display") != "none"
        text = d.find_element("id", "page-text").text
        assert "<script>document.title='pwned'" in text or "<script>window.__pwned='ctx'</script>" in text
        assert d.find_element("id", "page-url").text == "javascript:window.__pwned='url'"
        assert d.find_element("id", "page").get_attribute("data-page-id") == display_text(hostile_id)
        assert "\u202e" not in d.page_source
    # The policy every answer carries.
    with urllib.request.urlopen(served.url + "/page/0") as resp:
        csp = resp.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
                      "form-action 'self'", "frame-ancestors 'none'"):
        assert directive in csp
    # The browser enforces it: an inline script injected by hand (as a page cannot) is refused.
    d.execute_script("var s=document.createElement('script');s.textContent='window.__inline=1';"
                     "document.body.appendChild(s);")
    assert d.execute_script("return window.__inline === undefined")


def test_a_reviewer_decides_fifty_pages_with_the_keyboard_alone(serve, browser, tmp_path, capsys):
    n = 50
    records = [flagged_record(f"page-{i:02d}", f"Clinic {i} says stem cells cure arthritis in {i} days. Call now.",
                              score=round(0.99 - i * 0.005, 3), severity="high" if i % 3 else "medium")
               for i in range(n)]
    run_dir, _ = write_queue(tmp_path / "fifty", records)
    served = serve([run_dir], str(tmp_path / "review.sqlite"), reviewer="dana")
    d = browser
    d.get(served.url + "/")
    assert len(rows(d)) == n
    start = time.monotonic()
    press_and_wait(d, "\ue007")  # Enter opens the first page of the queue
    for i in range(n):
        key = "crre"[i % 4]
        if i % 10 == 0:
            keys(d, "2")  # correct the categories now and then
        press_and_wait(d, key)
    elapsed = time.monotonic() - start
    assert "No undecided page left" in d.find_element("id", "flashes").text
    current = served.store.current()
    assert len(current) == n
    counts = {v: sum(1 for x in current.values() if x["verdict"] == v) for v in ("confirm", "reject", "escalate")}
    assert counts == {"confirm": 13, "reject": 25, "escalate": 12}
    assert all(x["reviewer"] == "dana" for x in current.values())
    with capsys.disabled():
        print(f"\n50 pages decided with the keyboard alone in {elapsed:.1f} s "
              f"({elapsed / n * 1000:.0f} ms per verdict, page load included)")
