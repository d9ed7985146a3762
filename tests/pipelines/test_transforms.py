"""ModeratePages fed with beam.Create, checked with assert_that (small real model)."""
import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from regenwatch.pipelines.pages import Page
from regenwatch.pipelines.transforms import ModeratePages

CLAIM = ("Our stem cell therapy cures Parkinson's disease and Alzheimer's with no side effects. "
         "It is completely safe and FDA approved. Clinically proven to reverse MS. "
         "Better than surgery: avoid knee replacement.")
CLEAN = ("The FDA warns consumers that no exosome products are approved. "
         "Ask your doctor about approved treatments; early studies are small and results vary.")


def test_moderate_pages_every_page_decided_or_dead_lettered(small_model_uri):
    pages = [
        Page(id="claim", content=CLAIM, content_type="text/plain"),
        Page(id="clean", content=CLEAN, content_type="text/plain"),
        Page(id="empty-html", content="<script>x()</script>", content_type="text/html"),
    ]
    with TestPipeline() as p:
        out = p | beam.Create(pages) | ModeratePages(model_uri=small_model_uri, threshold=0.5)
        assert_that(out.decisions | "DecidedIds" >> beam.Map(lambda d: d["id"]),
                    equal_to(["claim", "clean"]), label="decided")
        assert_that(out.flagged | "FlaggedIds" >> beam.Map(lambda d: d["id"]),
                    equal_to(["claim"]), label="flagged")
        assert_that(out.dead_letters | "DeadIds" >> beam.Map(lambda d: (d["id"], d["stage"])),
                    equal_to([("empty-html", "normalize")]), label="dead")

        def check_flagged(records):
            [rec] = records
            assert rec["severity"] == "high"
            assert rec["rationale"], "a flagged page carries its rationale"
            for item in rec["rationale"]:
                assert item["sentence"] in CLAIM
            assert rec["model_version"] == "test-small"
            assert len(rec["content_sha256"]) == 64

        assert_that(out.flagged, check_flagged, label="flagged-record")
