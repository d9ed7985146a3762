"""Fixtures of the review workspace tests: a real run's queue, synthetic queues, a served app."""
from __future__ import annotations

import threading

import pytest

from regenwatch.training.feedback import content_sha256
from tests.review_pages import HOSTILE, template_rows, unrelated_rows, write_avro, write_jsonl


@pytest.fixture(scope="session")
def review_run(tmp_path_factory, small_model_uri):
    """A real run: a 4-town template cluster, unrelated pages and a hostile page, all flagged (threshold 0)."""
    from regenwatch.pipelines.moderate import run

    tmp = tmp_path_factory.mktemp("workspace-run")
    inputs = write_jsonl(tmp / "in.jsonl", template_rows() + unrelated_rows() + [HOSTILE])
    out = str(tmp / "out")
    run(["--input", inputs, "--output", out, "--model", small_model_uri, "--threshold", "0"])
    return out, inputs


def flagged_record(page_id: str, text: str, score: float = 0.9, severity: str = "high",
                   categories=("disease_treatment",), rationale=None, url=None, cluster_id=None, cluster_size=1,
                   signals=()):
    """A flagged.avsc record for synthetic queues."""
    if rationale is None:
        # Both rationale shapes (``category``, and ``categories`` of the newer schema): the Avro
        # writer keeps the fields its schema has, so these records fit either schema.
        rationale = [{"sentence": text.split(". ")[0].rstrip(".") + ".", "category": categories[0] if categories else None,
                      "categories": list(categories[:1]),
                      "score": score, "category_score": score, "terms": [], "context_before": [],
                      "context_after": []}]
    return {"id": page_id, "url": url, "fetched_at": None, "score": score, "threshold": 0.5, "severity": severity,
            "categories": list(categories), "rationale": rationale, "signals": list(signals),
            "model_version": "synthetic-1", "content_sha256": content_sha256(text), "processed_at": 1_700_000_000_000,
            "cluster_id": cluster_id, "cluster_size": cluster_size}


def write_queue(directory, records, pages=None):
    """A run directory holding only a flagged file (and the pages' input file when given)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_avro(str(directory / "flagged-00000-of-00001.avro"), "flagged", records)
    if pages is not None:
        write_jsonl(directory.parent / f"{directory.name}-input.jsonl", pages)
        return str(directory), str(directory.parent / f"{directory.name}-input.jsonl")
    return str(directory), None


class Served:
    """The workspace served by waitress on a free 127.0.0.1 port, in a thread."""

    def __init__(self, run_dirs, db, reviewer="alice", pages=()):
        from regenwatch.web.app import Workspace, create_app, make_server
        from regenwatch.web.store import VerdictStore

        self.workspace = Workspace(run_dirs, pages)
        self.store = VerdictStore(db)
        self.app = create_app(self.workspace, self.store, reviewer, port=None)
        self.server = make_server(self.app, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def close(self):
        self.server.close()
        self.thread.join(timeout=10)


@pytest.fixture
def serve():
    started = []

    def start(*args, **kwargs):
        s = Served(*args, **kwargs)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


__all__ = ["flagged_record", "write_queue", "HOSTILE", "template_rows", "unrelated_rows"]
