"""The verdict store: WAL, append-only history, last writer wins, concurrent reviewers, export."""
import multiprocessing
import sqlite3
import threading

import pytest

from regenwatch.training.feedback import read_verdicts
from regenwatch.web.store import VerdictStore, write_export
from tests.web.conftest import flagged_record


def _pages(n, prefix="p"):
    return [flagged_record(f"{prefix}{i}", f"Page {prefix}{i} cures arthritis. More text.") for i in range(n)]


def test_wal_mode_history_kept_and_last_writer_wins(tmp_path):
    db = str(tmp_path / "review.sqlite")
    store = VerdictStore(db)
    [page] = _pages(1)
    key = (page["id"], page["content_sha256"])
    store.record([page], "confirm", "alice", ["disease_treatment"], decided_at=1000)
    result = store.record([page], "reject", "bob", note="a regulator's page", decided_at=2000, seen=0)
    # bob had not seen alice's verdict: his still wins, and he is told whose he replaced.
    assert [o["reviewer"] for o in result["overridden"]] == ["alice"]
    assert store.current()[key]["verdict"] == "reject"
    assert [(h["verdict"], h["reviewer"]) for h in store.history(key)] == [("reject", "bob"), ("confirm", "alice")]
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # Reopened (a restarted server): everything is still there.
    assert VerdictStore(db).history(key)[0]["note"] == "a regulator's page"


def test_rejects_bad_verdicts(tmp_path):
    store = VerdictStore(str(tmp_path / "r.sqlite"))
    [page] = _pages(1)
    with pytest.raises(ValueError):
        store.record([page], "maybe", "alice")
    with pytest.raises(ValueError):
        store.record([page], "confirm", " ")
    with pytest.raises(ValueError):
        store.record([page], "confirm", "alice", ["not_a_category"])
    assert store.count() == 0


def test_export_is_verdict_avsc_without_escalations(tmp_path):
    store = VerdictStore(str(tmp_path / "r.sqlite"))
    pages = _pages(3)
    store.record(pages[:1], "confirm", "alice", ["efficacy_proof", "disease_treatment"])
    store.record(pages[1:2], "reject", "alice", ["efficacy_proof"])  # categories dropped on reject
    store.record(pages[2:], "escalate", "alice", note="ask legal")
    records, counts = store.export_records()
    assert counts == {"confirm": 1, "reject": 1, "escalate": 1}
    for ext in ("avro", "jsonl"):
        path = str(tmp_path / f"verdicts.{ext}")
        write_export(records, path)
        back = {v["id"]: v for v in read_verdicts([path])}
        assert sorted(back) == ["p0", "p1"]
        assert back["p0"]["categories"] == ["disease_treatment", "efficacy_proof"]  # policy order
        assert back["p1"]["verdict"] == "reject" and back["p1"]["categories"] == []
    # Only the pages asked for.
    assert [r["id"] for r in store.export_records([(pages[0]["id"], pages[0]["content_sha256"])])[0]] == ["p0"]


def test_two_reviewers_in_threads_lose_nothing(tmp_path):
    db = str(tmp_path / "r.sqlite")
    store = VerdictStore(db)
    pages = _pages(40)
    errors = []

    def work(name):
        try:
            for p in pages:
                store.record([p], "confirm" if name == "alice" else "reject", name,
                             ["disease_treatment"] if name == "alice" else [])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 80  # every verdict of both is in the history
    current = store.current()
    assert len(current) == 40
    for p in pages:  # and each page's current verdict is its latest row
        history = store.history((p["id"], p["content_sha256"]))
        assert current[(p["id"], p["content_sha256"])]["seq"] == history[0]["seq"]


def _process_reviewer(db, name, n):
    store = VerdictStore(db)
    for p in _pages(n, prefix=name):
        store.record([p], "reject", name)
    for p in _pages(n, prefix="shared"):
        store.record([p], "confirm", name, ["safety_assurance"])


def test_two_servers_sharing_the_database_lose_nothing(tmp_path):
    """Two processes (two `review --serve` on one --db) writing at once."""
    db = str(tmp_path / "r.sqlite")
    VerdictStore(db)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_reviewer, args=(db, name, 30)) for name in ("alice", "bob")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = VerdictStore(db)
    assert store.count() == 2 * 30 + 2 * 30
    current = store.current()
    assert len(current) == 30 + 30 + 30
    assert {v["reviewer"] for k, v in current.items() if k[0].startswith("shared")} <= {"alice", "bob"}
