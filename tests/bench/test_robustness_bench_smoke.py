"""The robustness benchmarks run end to end on tiny sizes: every figure present, no timing assertions."""
from __future__ import annotations


def test_page_cost_smoke(small_model_uri):
    from bench.page_cost import main

    lines = []
    summary = main(["--max-mib", "0.1", "--min-kib", "20", "--shapes", "deep_div,giant_word,select_options",
                    "--model", small_model_uri], log=lines.append)
    assert summary["pages"] == 6 and summary["slowest_page_s"] >= 0
    assert any("decided" in line for line in lines)


def test_fuzz_campaign_smoke(small_model_uri, tmp_path):
    from bench.fuzz_campaign import main

    report = main(["--examples", "30", "--round-examples", "3", "--model", small_model_uri, "--seed", "1",
                   "--json", str(tmp_path / "r.json")], log=lambda *a: None)
    assert report["examples"] >= 30 and report["failures"] == 0
    assert set(report["examples_by_property"]) >= {"json_line", "good_page", "cut_gzip"}


def test_hostile_mix_smoke(small_model_uri, tmp_path):
    from bench.hostile_mix import main

    report = main(["--small", "--workdir", str(tmp_path), "--model", small_model_uri], log=lambda *a: None)
    assert report["exit_code"] == 0 and report["balanced"]
    assert report["good_pages_decided"] == report["good_pages"] and report["peak_rss_mib"] > 0
