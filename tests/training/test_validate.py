"""The labeled-data checks: each kind of mistake is caught, and the shipped set has none."""
import glob
import json
import os

from regenwatch.training.data_io import DATA_DIR, default_files, heldout_real_files
from regenwatch.training.validate import file_problems, main, page_problems

TEXT = ("Our clinic offers umbilical cord stem cell infusions. "
        "Stem cells reverse type 2 diabetes in eight weeks. "
        "Book a consultation today.")
CLAIM = "Stem cells reverse type 2 diabetes in eight weeks."


def _page(**kw):
    row = {"id": "x1", "kind": "clinic_marketing", "text": TEXT, "label": 1, "severity": "high",
           "categories": ["disease_treatment"], "evidence": [{"sentence": CLAIM, "category": "disease_treatment"}]}
    row.update(kw)
    return row


def test_a_consistent_page_passes_strictly():
    assert page_problems(_page(), strict=True) == []


def test_each_mistake_is_named():
    cases = {
        "not in the text": _page(evidence=[{"sentence": "Stem cells cure diabetes.", "category": "disease_treatment"}]),
        "does not keep this evidence whole": _page(evidence=[{"sentence": "reverse type 2 diabetes",
                                                             "category": "disease_treatment"}]),
        "unknown category": _page(evidence=[{"sentence": CLAIM, "category": "cures"}]),
        "the policy says 'medium'": _page(evidence=[{"sentence": CLAIM, "category": "efficacy_proof"}],
                                         categories=["efficacy_proof"]),
        "are not the evidence's": _page(categories=["disease_treatment", "superiority"]),
        "lists no evidence": _page(evidence=[], categories=[]),
        "unflagged page lists evidence": _page(label=0, severity=None),
        "unflagged page has a severity": _page(label=0, evidence=[], categories=[]),
    }
    for expected, row in cases.items():
        problems = page_problems(row, strict=True)
        assert any(expected in p for p in problems), (expected, problems)


def test_seed_pages_need_no_evidence():
    assert not any("no evidence" in p for p in page_problems(_page(kind="seed", evidence=[])))


def test_containment_matches_only_when_not_strict():
    # Collected pages' annotators sometimes quoted a sentence without its lead-in.
    text = "Advantages: compared with cell therapies, exosome therapy is safer and works better. Call us."
    row = _page(text=text, severity="medium", categories=["superiority"],
                evidence=[{"sentence": "compared with cell therapies, exosome therapy is safer and works better.",
                           "category": "superiority"}])
    assert page_problems(row) == []
    assert any("whole" in p for p in page_problems(row, strict=True))


def test_bulleted_evidence_matches_the_split_sentence():
    text = "Why our cells:\n\n• Don't cause tumors\n• Shipped frozen\n\nOrder now."
    row = _page(text=text, severity="medium", categories=["safety_assurance"],
                evidence=[{"sentence": "• Don't cause tumors", "category": "safety_assurance"}])
    assert page_problems(row, strict=True) == []


def test_duplicate_ids_across_files(tmp_path):
    for name in ("a_pages.jsonl", "b_pages.jsonl"):
        (tmp_path / name).write_text(json.dumps(_page()) + "\n", encoding="utf-8")
    problems = file_problems(sorted(str(p) for p in tmp_path.iterdir()))
    assert len(problems) == 1 and "id already used" in problems[0]


def test_shipped_sample_set_has_no_problems(capsys):
    assert main([]) == 0, capsys.readouterr().out
    # Files written for the set are held to the strict rule.
    authored = sorted(glob.glob(os.path.join(DATA_DIR, "authored", "*pages*.jsonl")))
    assert authored and set(authored) <= set(default_files())
    assert file_problems(authored, strict=True) == []
    # The held-out pages are checked the same way and are never training data.
    heldout = sorted(glob.glob(os.path.join(os.path.dirname(DATA_DIR), "heldout", "*.jsonl")))
    assert len(heldout) == 3 and not set(heldout) & set(default_files())
    assert file_problems(heldout, strict=True) == []
    # The real held-out split and the dev set: checked, never training data, ids unique with it all.
    real = heldout_real_files()
    dev = sorted(glob.glob(os.path.join(os.path.dirname(DATA_DIR), "heldout", "dev", "*.jsonl")))
    assert len(real) == 5 and len(dev) == 1 and not set(real + dev) & set(default_files())
    # The fifth batch was written for the set: strict, in both parts.
    assert file_problems([p for p in real + default_files() if p.endswith("collected_pages_5.jsonl")],
                         strict=True) == []
    assert file_problems(default_files() + heldout + real + dev) == []  # ids unique across all
