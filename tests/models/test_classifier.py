"""ClaimModel: scikit-learn contract, determinism, rationale, severity (small real fits)."""
import numpy as np
import pytest
from sklearn.base import clone

from regenwatch.models.classifier import CATEGORIES, ClaimModel, label_sentences, severity_for
from regenwatch.models.features import mask_entities, sentence_documents
from regenwatch.models.text import normalize_page
from regenwatch.training.data_io import load_sample_set


@pytest.fixture(scope="module")
def sample():
    s = load_sample_set()
    return s.pages[::3], s.sentences[::3]


def _fit(pages, sentences, **params):
    return ClaimModel(n_inner_folds=2, **params).fit(
        [p["text"] for p in pages], [p["label"] for p in pages],
        evidence=[p.get("evidence") for p in pages], kinds=[p.get("kind") for p in pages],
        extra_sentences=sentences)


def test_estimator_contract():
    model = ClaimModel(sentence_C=2.0, random_state=3)
    assert model.get_params()["sentence_C"] == 2.0
    clone(model)  # __init__ stores parameters only
    assert not hasattr(model, "parts_")


def test_fit_returns_self_and_is_deterministic(sample):
    pages, sentences = sample
    a = _fit(pages, sentences)
    b = _fit(pages, sentences)
    assert isinstance(a, ClaimModel)
    texts = [p["text"] for p in pages[:20]]
    np.testing.assert_array_equal(a.predict_proba(texts), b.predict_proba(texts))


def test_rationale_quotes_page_sentences_and_categories(sample):
    pages, sentences = sample
    model = _fit(pages, sentences, threshold=0.5)
    text = ("Welcome to our clinic. Our stem cell therapy cures Parkinson's disease and reverses MS. "
            "There are absolutely no side effects and no risk of rejection. Book your consultation today.")
    page = normalize_page(text)
    [score] = model.score_pages([page])
    assert score.rationale, "a claim page has rationale sentences"
    assert score.rationale[0].score >= score.rationale[-1].score
    for item in score.rationale:
        assert item.sentence in page.sentences
        assert item.category is None or item.category in CATEGORIES
    assert "disease_treatment" in score.categories
    assert score.rationale[0].terms


def test_claim_outscores_regulator_warning(sample):
    pages, sentences = sample
    model = _fit(pages, sentences)
    claim = "Our exosome IV cures Alzheimer's and diabetes. It is completely safe with no side effects. Book now."
    warning = ("The FDA warns consumers: no exosome product is approved to treat Alzheimer's or diabetes. "
               "Clinics that claim otherwise may put patients at risk. Report adverse events to MedWatch.")
    p = model.predict_proba([claim, warning])[:, 1]
    assert p[0] > p[1]


def test_label_sentences_matches_evidence_across_renderings():
    page = normalize_page("Intro line here.\nOur cells cure MS in weeks.\nCall us.")
    rows = label_sentences(page, 1, [{"sentence": "Our cells cure MS in weeks.", "category": "disease_treatment"}])
    assert rows == [("Intro line here.", []), ("Our cells cure MS in weeks.", ["disease_treatment"]), ("Call us.", [])]
    # A flagged page without evidence gives no sentence rows (its negatives are unknown).
    assert label_sentences(page, 1, []) == []


def test_severity_policy():
    assert severity_for(["superiority", "disease_treatment"]) == "high"
    assert severity_for(["regulatory_misrepresentation"]) == "high"
    assert severity_for(["age_reversal"]) == "medium"
    assert severity_for([]) == "low"


def test_entity_masking_is_whole_word():
    masked = mask_entities("Canadian patients: PRP cured 90% of knee osteoarthritis")
    assert "Canadian" in masked and "zzproduct" in masked and "zzpercent" in masked and "zzcondition" in masked
    assert sentence_documents(["Exosomes"])[0].endswith("zzlen1")
