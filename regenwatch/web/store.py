"""The review workspace's verdicts: SQLite in WAL mode, append-only.

Every verdict a reviewer gives is one row, inserted in its own transaction
and committed before the browser is answered (``synchronous=FULL``: on disk
when the reviewer sees "saved"). Rows are never updated or deleted, so the
table is the full history. A page's current verdict is its latest row
(``decided_at``, then row id): **last writer wins, history kept**.

Several reviewers at once, in one server or in several servers sharing the
database file: SQLite serializes the writers (a writer waits up to
``BUSY_TIMEOUT_MS`` for another's transaction), so no verdict is ever lost
or half-written. When a reviewer decides a page whose current verdict
changed after their view was loaded (``seen`` row id), the new verdict still
wins, and the answer names the verdict it overrode, which stays in the
history shown on the page.

``escalate`` is a workspace state, not a training label: it is kept here and
shown in the queue, and left out of the export (``schemas/verdict.avsc``
knows ``confirm`` and ``reject``), which ``regenwatch train --feedback``
reads unchanged.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from regenwatch.models.classifier import CATEGORIES

ACTIONS = ("confirm", "reject", "escalate")
BUSY_TIMEOUT_MS = 30_000
PageKey = Tuple[str, str]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    page_id TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('confirm', 'reject', 'escalate')),
    categories TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    note TEXT,
    decided_at INTEGER NOT NULL,
    model_version TEXT,
    cluster_id TEXT,
    overrides INTEGER
);
CREATE INDEX IF NOT EXISTS verdicts_page ON verdicts (page_id, content_sha256, decided_at, seq);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class VerdictStore:
    """Append-only verdict history in one SQLite file; safe across threads and processes."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: SQLite refused WAL mode ({mode})")
            db.execute("PRAGMA synchronous = FULL")
            self._local.db = db
        return _Tx(db)

    # ------------------------------------------------------------------
    # Writing

    def record(self, pages: Sequence[dict], verdict: str, reviewer: str, categories: Sequence[str] = (),
               note: Optional[str] = None, decided_at: Optional[int] = None,
               seen: Optional[int] = None) -> dict:
        """Store one verdict for every page given (a cluster's pages), in one transaction.

        ``pages`` are flagged records (id, content_sha256, model_version,
        cluster_id, cluster_size). ``seen`` is the newest row id among these
        pages' verdicts when the reviewer's view was loaded (0: none); a
        current verdict newer than that was given meanwhile by someone else:
        it is overridden (it stays in the history) and returned.
        Returns {"seqs": [...], "overridden": [rows]}.
        """
        from regenwatch.training.feedback import now_millis

        if verdict not in ACTIONS:
            raise ValueError(f"verdict must be one of {ACTIONS}, got {verdict!r}")
        if not reviewer or not reviewer.strip():
            raise ValueError("a verdict needs a reviewer name")
        cats = [] if verdict == "reject" else [c for c in CATEGORIES if c in set(categories)]
        unknown = sorted(set(categories) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown categories {unknown}")
        when = now_millis() if decided_at is None else int(decided_at)
        note = (note or "").strip() or None
        seqs: List[int] = []
        overridden: List[dict] = []
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # take the write lock before reading what we override
            for page in pages:
                key = (page["id"], page["content_sha256"])
                current = self._current(db, key)
                if current is not None and seen is not None and current["seq"] > seen:
                    overridden.append(current)
                cid = page.get("cluster_id") if int(page.get("cluster_size") or 1) > 1 else None
                cur = db.execute(
                    "INSERT INTO verdicts (page_id, content_sha256, verdict, categories, reviewer, note, decided_at,"
                    " model_version, cluster_id, overrides) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (key[0], key[1], verdict, json.dumps(cats), reviewer.strip(), note, when,
                     page.get("model_version"), cid, current["seq"] if current else None))
                seqs.append(int(cur.lastrowid))
        return {"seqs": seqs, "overridden": overridden}

    def session_secret(self) -> str:
        """The key that signs the workspace's session cookies, kept with the verdicts.

        A restarted server keeps its reviewers' sessions (name, CSRF token),
        so a review resumes where it stopped, even in a tab left open.
        """
        import secrets

        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('session_secret', ?)",
                       (secrets.token_hex(32),))
            return db.execute("SELECT value FROM meta WHERE name = 'session_secret'").fetchone()[0]

    # ------------------------------------------------------------------
    # Reading

    @staticmethod
    def _row(row: sqlite3.Row) -> dict:
        out = dict(row)
        out["categories"] = json.loads(out["categories"])
        return out

    def _current(self, db, key: PageKey) -> Optional[dict]:
        row = db.execute(
            "SELECT * FROM verdicts WHERE page_id = ? AND content_sha256 = ? ORDER BY decided_at DESC, seq DESC "
            "LIMIT 1", key).fetchone()
        return self._row(row) if row else None

    def current(self) -> Dict[PageKey, dict]:
        """Every page's current verdict: its latest row (last writer wins)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT v.* FROM verdicts v WHERE v.seq = (SELECT w.seq FROM verdicts w WHERE w.page_id = v.page_id"
                " AND w.content_sha256 = v.content_sha256 ORDER BY w.decided_at DESC, w.seq DESC LIMIT 1)").fetchall()
        return {(r["page_id"], r["content_sha256"]): self._row(r) for r in rows}

    def history(self, key: PageKey) -> List[dict]:
        """All verdicts on one page, newest first."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM verdicts WHERE page_id = ? AND content_sha256 = ? "
                              "ORDER BY decided_at DESC, seq DESC", key).fetchall()
        return [self._row(r) for r in rows]

    def count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])

    # ------------------------------------------------------------------
    # Export

    def export_records(self, keys: Optional[Iterable[PageKey]] = None) -> Tuple[List[dict], dict]:
        """schemas/verdict.avsc records: each page's current verdict when it is confirm or reject.

        A page whose latest verdict is ``escalate`` is left out (waiting for
        someone else), as is any page outside ``keys`` when given. Returns
        the records (validated) and counts.
        """
        from regenwatch.training.feedback import validate_verdict

        wanted = set(keys) if keys is not None else None
        records, counts = [], {"confirm": 0, "reject": 0, "escalate": 0}
        for key, row in sorted(self.current().items()):
            if wanted is not None and key not in wanted:
                continue
            counts[row["verdict"]] += 1
            if row["verdict"] == "escalate":
                continue
            records.append(validate_verdict({
                "id": row["page_id"], "content_sha256": row["content_sha256"], "verdict": row["verdict"],
                "categories": row["categories"], "reviewer": row["reviewer"], "note": row["note"],
                "decided_at": row["decided_at"], "model_version": row["model_version"],
                "cluster_id": row["cluster_id"]}))
        return records, counts

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


class _Tx:
    """``with`` block over a connection in autocommit mode: COMMIT on success, ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def export_bytes(records: Sequence[dict], fmt: str) -> bytes:
    """Verdict records as an Avro container (schemas/verdict.avsc) or JSON Lines."""
    import io

    import fastavro

    from regenwatch.schemas import load_schema

    if fmt == "avro":
        buf = io.BytesIO()
        fastavro.writer(buf, load_schema("verdict"), list(records))
        return buf.getvalue()
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in records).encode("utf-8")
    raise ValueError(f"export format is avro or jsonl, not {fmt!r}")


def write_export(records: Sequence[dict], path: str) -> None:
    """Write verdict records to .avro or .jsonl (by extension), atomically."""
    data = export_bytes(records, "avro" if path.lower().endswith(".avro") else "jsonl")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
