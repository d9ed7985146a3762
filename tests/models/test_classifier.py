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


# --------------------------------------------------------------------------
# The n-gram featurization (features.py) against scikit-learn's vectorizers


_TEXTS = [
    "Our exosome IV cures Alzheimer's and diabetes — 98% of patients improve.",
    "Das Stammzellen-Zentrum  bietet\tTherapien an. Kök hücre tedavisi!",
    "a b ab abc I O no side effects, no risk: it's “natural” regeneration",
    "Stem cells stem cells STEM CELLS regenerate cartilage.",
    "The FDA warns: no exosome product is approved to treat Alzheimer's.",
    "",
]


def test_analyzers_match_sklearn():
    from collections import Counter

    from sklearn.feature_extraction.text import CountVectorizer

    from regenwatch.models.features import char_wb_ngrams, word_ngrams

    word = CountVectorizer(ngram_range=(1, 2), token_pattern=r"(?u)\b\w[\w'’-]*\b").build_analyzer()
    char = CountVectorizer(analyzer="char_wb", ngram_range=(3, 5)).build_analyzer()
    for text in _TEXTS:
        assert Counter(word_ngrams(text)) == Counter(word(text))
        assert Counter(char_wb_ngrams(text)) == Counter(char(text))


@pytest.mark.parametrize("kind", ["word", "char_wb"])
def test_ngram_tfidf_matches_tfidf_vectorizer(kind):
    from sklearn.feature_extraction.text import TfidfVectorizer

    from regenwatch.models.features import NgramTfidf, TermIndex

    docs = [t for t in _TEXTS if t] * 2 + ["cures cures cures regenerate", "no side effects at all"]
    settings = dict(ngram_range=(1, 2), token_pattern=r"(?u)\b\w[\w'’-]*\b") if kind == "word" else \
        dict(ngram_range=(3, 5))
    ref = TfidfVectorizer(analyzer=kind, min_df=2, max_df=0.9, sublinear_tf=True, **settings)
    expected = ref.fit_transform(docs).toarray()
    index = TermIndex()
    counts = index.word_counts(docs) if kind == "word" else index.char_counts(docs)
    vec, keep = NgramTfidf.fit_counts(kind, counts, index.names(), 2, 0.9, None)
    assert list(vec.get_feature_names_out()) == list(ref.get_feature_names_out())
    np.testing.assert_allclose(vec.from_counts(counts, keep).toarray(), expected, atol=1e-12)
    np.testing.assert_allclose(vec.transform(docs).toarray(), expected, atol=1e-12)
    # max_features keeps the most frequent terms.
    small, keep = NgramTfidf.fit_counts(kind, counts, index.names(), 2, 0.9, 5)
    assert len(small.vocabulary_) == 5 and len(keep) == 5


def test_training_features_equal_serving_features(sample):
    """Pages featurized from the fit's shared analysis score as they do when served from text."""
    from regenwatch.models.classifier import _Analysis

    pages, sentences = sample
    model = _fit(pages, sentences)
    normalized = [normalize_page(p["text"]) for p in pages[:25]]
    analysis = _Analysis(normalized, [], model.mask_entities, model.sentence_char_ngrams, model.context_char_ngrams)
    keep = {}
    for name, vec, names in (("sw", model.parts_["vec"].word_, analysis.word_names),
                             ("sc", model.parts_["vec"].char_, analysis.char_names),
                             ("pw", model.parts_["ctx_vec"].word_, analysis.word_names),
                             ("pc", model.parts_["ctx_vec"].char_, analysis.char_names)):
        position = {str(t): i for i, t in enumerate(names)}
        keep[name] = np.array([position.get(t, -1) for t in vec.get_feature_names_out()])
    # Terms of the model absent from these pages: an empty column appended to the counts.
    for name, attr in (("sw", "sentence_words"), ("sc", "sentence_chars"), ("pw", "page_words"),
                       ("pc", "page_chars")):
        counts = getattr(analysis, attr)
        setattr(analysis, attr, __import__("scipy").sparse.hstack(
            [counts, np.zeros((counts.shape[0], 1))], format="csr"))
        keep[name] = np.where(keep[name] < 0, counts.shape[1], keep[name])
    from_analysis, probs_a, offsets_a = model._analyzed_page_features(model.parts_, keep, analysis, normalized,
                                                                      range(len(normalized)))
    from_text, _, probs_t, offsets_t = model._page_features(model.parts_, normalized)
    np.testing.assert_allclose(from_analysis, from_text, atol=1e-9)
    # The sentence scores the rationale model is trained on are the ones it is served.
    assert list(offsets_a) == list(offsets_t)
    np.testing.assert_allclose(probs_a, probs_t, atol=1e-9)


def test_pickle_ignores_featurization_cache(sample):
    """Scoring fills a per-word cache; the artifact bytes must not depend on it."""
    import pickle

    pages, sentences = sample
    model = _fit(pages, sentences)
    before = pickle.dumps(model)
    model.predict_proba([p["text"] for p in pages[:10]])
    assert pickle.dumps(model) == before


def test_rationale_names_every_confident_category_so_severity_follows_the_page():
    """A disease claim ranked below the top sentences still makes the page high (POLICY.md severity)."""
    from scipy import sparse

    model = ClaimModel(max_rationale=2)
    model.parts_ = {"sentence_models": [0.5] * (1 + len(CATEGORIES))}  # constant models: no terms to show
    k = {c: i + 1 for i, c in enumerate(CATEGORIES)}
    P = np.zeros((5, 1 + len(CATEGORIES)))
    P[0, [0, k["safety_assurance"]]] = [0.97, 0.9]
    P[1, [0, k["efficacy_proof"]]] = [0.95, 0.8]
    P[2, [0, k["efficacy_proof"]]] = [0.93, 0.9]   # a second proof sentence: not added, proof is named
    P[3, [0, k["disease_treatment"]]] = [0.80, 0.7]  # fourth by claim score: outside the top 2
    P[4, [0, k["age_reversal"]]] = [0.30, 0.9]     # not a claim: never named
    page = normalize_page("S0 one. S1 two. S2 three. S3 four. S4 five.")
    assert len(page.sentences) == 5
    items = model._rationale(page, (sparse.csr_matrix((5, 1)), 0), P, flagged=True)
    assert [i.sentence for i in items] == [page.sentences[0], page.sentences[1], page.sentences[3]]
    cats = {i.category for i in items}
    assert cats == {"safety_assurance", "efficacy_proof", "disease_treatment"}
    assert severity_for(cats) == "high"
    assert items[0].score >= items[1].score  # the top sentences stay first, best first


def test_a_shared_analysis_gives_the_same_model(sample):
    """Cross-validation analyzes the sample set once and fits folds on subsets of it."""
    from regenwatch.models.classifier import _Analysis

    pages, sentences = sample
    normalized = [normalize_page(p["text"]) for p in pages]
    texts = [s for page, p in zip(normalized, pages)
             for s, _ in label_sentences(page, p["label"], p.get("evidence"))] + [s for s, _ in sentences]
    model = ClaimModel(n_inner_folds=2)
    shared = _Analysis.for_model(model, normalized, texts)
    idx = np.arange(0, len(pages), 2)

    def fit(analysis):
        return ClaimModel(n_inner_folds=2).fit(
            [normalized[i] for i in idx], [pages[i]["label"] for i in idx],
            evidence=[pages[i].get("evidence") for i in idx], kinds=[pages[i].get("kind") for i in idx],
            extra_sentences=sentences, analysis=analysis)

    held_out = [normalized[i] for i in range(1, len(pages), 2)]
    plain = np.array([s.score for s in fit(None).score_pages(held_out)])
    via_shared = np.array([s.score for s in fit(shared.subset(idx)).score_pages(held_out)])
    # Equal up to float summation order in the n-gram counts.
    np.testing.assert_allclose(via_shared, plain, atol=1e-9)
    # An analysis of other pages, or made with other settings, is refused.
    with pytest.raises(ValueError, match="other settings, pages or sentences"):
        fit(shared)
    with pytest.raises(ValueError, match="other settings, pages or sentences"):
        fit(_Analysis(normalized, texts, False, True, True).subset(idx))


def test_rationale_lists_each_sentence_once_with_all_its_categories():
    """Flagged schema v2: one item per sentence; a sentence with two confident categories carries both."""
    from scipy import sparse

    model = ClaimModel(max_rationale=5, rationale_threshold=0.5)
    model.parts_ = {"sentence_models": [0.5] * (1 + len(CATEGORIES))}
    k = {c: i + 1 for i, c in enumerate(CATEGORIES)}
    P = np.zeros((4, 1 + len(CATEGORIES)))
    P[0, [0, k["disease_treatment"], k["safety_assurance"]]] = [0.95, 0.9, 0.8]  # two categories
    P[1, [0, k["efficacy_proof"]]] = [0.90, 0.7]
    P[2, 0] = 0.45  # below the rationale threshold: not a claim, not shown
    P[3, [0, k["superiority"]]] = [0.6, 0.2]  # a claim whose category is not confident
    page = normalize_page("S0 one. S1 two. S2 three. S3 four.")
    items = model._rationale(page, (sparse.csr_matrix((4, 1)), 0), P, flagged=True)
    assert [i.sentence for i in items] == [page.sentences[0], page.sentences[1], page.sentences[3]]
    assert len({i.sentence for i in items}) == len(items)
    assert items[0].categories == ["disease_treatment", "safety_assurance"]
    assert items[0].category == "disease_treatment" and items[0].category_scores == [0.9, 0.8]
    assert items[2].categories == [] and items[2].category is None
    # A rationale strength (the rationale model's) replaces the claim score for choosing and ordering.
    strength = np.array([0.2, 0.9, 0.1, 0.7])
    items = model._rationale(page, (sparse.csr_matrix((4, 1)), 0), P, flagged=True, strength=strength)
    # S0 is weak for the rationale model but a claim for the claim model (0.95): its two categories are
    # the page's, so it is added after the strongest, carrying them (severity follows every claim).
    assert [i.sentence for i in items] == [page.sentences[1], page.sentences[3], page.sentences[0]]
    assert items[2].categories == ["disease_treatment", "safety_assurance"]
    # A flagged page none of whose sentences reaches the threshold still shows its strongest one.
    weak = P.copy()
    weak[:, 0] = 0.3
    items = model._rationale(page, (sparse.csr_matrix((4, 1)), 0), weak, flagged=True, strength=np.full(4, 0.1))
    assert len(items) == 1
    assert model._rationale(page, (sparse.csr_matrix((4, 1)), 0), weak, flagged=False,
                            strength=np.full(4, 0.1)) == []


def test_rationale_model_is_fitted_and_ranks_claims_of_flagged_pages(sample):
    pages, sentences = sample
    model = _fit(pages, sentences)
    assert model.rationale_model_ is not None
    flagged = [p for p in pages if p["label"] == 1 and p.get("evidence")][:20]
    scores = model.score_pages([normalize_page(p["text"]) for p in flagged])
    for p, s in zip(flagged, scores):
        assert len({i.sentence for i in s.rationale}) == len(s.rationale)
        assert all(i.score >= model.rationale_threshold for i in s.rationale[:1]) or len(s.rationale) <= 1
        # Terms are shown to reviewers: placeholders in words, never an internal token.
        assert not any("zz" in t for i in s.rationale for t in i.terms)
    without = _fit(pages, sentences, rationale_model=False)
    assert without.rationale_model_ is None
