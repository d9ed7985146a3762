"""The regenwatch classifier: sentence-level claim detection, page-level decision.

One estimator object holds the whole path from page text to decision
(normalization, sentence featurization, per-category claim models, page
context model, the stacked page model), so training and serving run the same
code. It follows scikit-learn's estimator contract: ``__init__`` only stores
hyper-parameters, ``fit`` returns ``self``, randomness comes from
``random_state``.

How a page is decided:

1. ``normalize_page`` folds the text and splits it into sentences.
2. Each sentence gets a claim probability and one probability per policy
   category (linear models over word 1-2 gram TF-IDF of the folded,
   lower-cased sentence).
3. Page features: the strongest claim sentences (max, top-3 mean, how many
   and what share are over 0.5), the strongest sentence per category, and a
   page-context probability from a model of the whole page's wording (who is
   speaking: a clinic selling, a regulator warning, a reporter, a researcher).
4. A logistic regression over those features, trained on out-of-fold
   sentence and context scores (stacking), gives a calibrated page score.

The rationale of a page is its top claim sentences, each with its category,
its score and the terms that weighed most for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion

from .features import sentence_documents
from .text import NormalizedPage, normalize_page, sentence_key

CATEGORIES: Tuple[str, ...] = (
    "disease_treatment",
    "safety_assurance",
    "efficacy_proof",
    "regulatory_misrepresentation",
    "superiority",
    "age_reversal",
    "testimonial_as_evidence",
)
HIGH_SEVERITY = frozenset({"disease_treatment", "regulatory_misrepresentation"})
# Page kinds (the sample set's ``kind`` field) in which the page speaks for
# whoever sells the product. The voice model learns to tell these from
# regulators, reporters, researchers and patients' forums, which quote the
# same claims without making them.
PROMOTER_KINDS = frozenset({"clinic_marketing", "vendor", "advertorial", "faq", "seed"})


def severity_for(categories: Iterable[str]) -> str:
    """Severity of a flagged page per POLICY.md."""
    cats = set(categories)
    if cats & HIGH_SEVERITY:
        return "high"
    if cats:
        return "medium"
    return "low"


@dataclass
class RationaleItem:
    sentence: str
    category: Optional[str]
    score: float
    category_score: float
    terms: List[str]


@dataclass
class PageScore:
    score: float
    categories: List[str]
    rationale: List[RationaleItem]


# --------------------------------------------------------------------------
# Building sentence-level training rows from labeled pages


def _evidence_index(evidence: Sequence[dict]) -> Dict[str, set]:
    index: Dict[str, set] = {}
    for item in evidence or ():
        key = sentence_key(item["sentence"])
        if key:
            index.setdefault(key, set()).add(item["category"])
    return index


def label_sentences(
    page: NormalizedPage, label: int, evidence: Optional[Sequence[dict]]
) -> List[Tuple[str, List[str]]]:
    """(sentence, categories) rows for one labeled page.

    Every claim sentence of a flagged page is listed in its evidence (the
    labeling policy), so a sentence of a labeled page that matches no
    evidence is a non-claim. Evidence that our splitter cut differently is
    matched by containment; evidence matching nothing is kept as its own row.
    A flagged page without evidence contributes no sentence rows.
    """
    if label and not evidence:
        return []
    index = _evidence_index(evidence or ())
    rows: List[Tuple[str, List[str]]] = []
    used = set()
    for sent in page.sentences:
        key = sentence_key(sent)
        cats = set()
        if key in index:
            cats |= index[key]
            used.add(key)
        elif len(key) >= 25:
            for ev_key, ev_cats in index.items():
                if len(ev_key) >= 25 and (ev_key in key or key in ev_key):
                    cats |= ev_cats
                    used.add(ev_key)
        rows.append((sent, sorted(cats)))
    for item in evidence or ():
        key = sentence_key(item["sentence"])
        if key and key not in used:
            used.add(key)
            rows.append((item["sentence"], sorted(index[key])))
    return rows


def _char_vectorizer(max_features: int) -> TfidfVectorizer:
    # Character 3-5 grams inside word boundaries: they carry cognates across
    # the sample set's languages ("exosom", "cellul", "stamm") and
    # morphology ("regenerat-"); out of fold they raised page PR-AUC from
    # 0.84 to 0.87, at the price of most of the featurization time.
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3, max_df=0.9,
                           sublinear_tf=True, max_features=max_features, dtype=np.float32)


class SentenceFeaturizer(TransformerMixin, BaseEstimator):
    """Raw sentences -> [masked word n-grams + length token | optional char n-grams]."""

    def __init__(self, max_features: int = 60000, mask: bool = True, char_ngrams: bool = False):
        self.max_features = max_features
        self.mask = mask
        self.char_ngrams = char_ngrams

    def fit(self, sentences, y=None):
        self.fit_transform(sentences)
        return self

    def fit_transform(self, sentences, y=None):
        self.word_ = _word_vectorizer(self.max_features)
        parts = [self.word_.fit_transform(sentence_documents(sentences, self.mask))]
        if self.char_ngrams:
            self.char_ = _char_vectorizer(self.max_features)
            parts.append(self.char_.fit_transform(sentences))
        return sparse.hstack(parts, format="csr") if len(parts) > 1 else parts[0]

    def transform(self, sentences):
        parts = [self.word_.transform(sentence_documents(sentences, self.mask))]
        if self.char_ngrams:
            parts.append(self.char_.transform(sentences))
        return sparse.hstack(parts, format="csr") if len(parts) > 1 else parts[0]

    def get_feature_names_out(self, input_features=None):
        names = list(self.word_.get_feature_names_out())
        if self.char_ngrams:
            names += [f"“{n.strip()}”" for n in self.char_.get_feature_names_out()]
        return np.asarray(names, dtype=object)


# --------------------------------------------------------------------------
# The estimator


def _word_vectorizer(max_features: int) -> TfidfVectorizer:
    # Word uni/bigrams over folded, lower-cased text (look-alike letters are
    # folded before featurization, so obfuscation does not need char n-grams).
    return TfidfVectorizer(
        lowercase=True,
        ngram_range=(1, 2),
        min_df=2,
        max_df=0.9,
        sublinear_tf=True,
        max_features=max_features,
        token_pattern=r"(?u)\b\w[\w'’-]*\b",
        dtype=np.float32,
    )


class ClaimModel(BaseEstimator, ClassifierMixin):
    """Page classifier stacked on sentence-level claim detection.

    Parameters
    ----------
    sentence_C, context_C, page_C:
        Inverse regularization of the sentence, page-context and stacked page
        logistic regressions.
    n_inner_folds:
        Folds used to produce out-of-fold sentence/context scores on which the
        page model is trained.
    max_features:
        Vocabulary cap of each TF-IDF vectorizer.
    rationale_threshold:
        Sentence claim probability from which a sentence enters the rationale.
    category_threshold:
        Category probability from which a category is assigned to a sentence.
    max_rationale:
        Most rationale sentences kept per page.
    sentence_class_weight:
        ``class_weight`` of the sentence models. "balanced" weighs the rare
        claim sentences up, which gave better rationale sentences on held-out
        pages than the natural class share.
    flagged_negative_weight:
        Weight of the non-evidence sentences of flagged pages as negatives
        (evidence lists may miss a claim sentence, so these negatives are
        noisier than those of unflagged pages).
    mask_entities:
        Replace condition/product names and numbers by placeholder tokens
        before sentence featurization (see features.py).
    context_char_ngrams:
        Add character 3-5 grams to the page context and voice models.
    sentence_char_ngrams:
        Add character 3-5 grams of the (unmasked) sentence to the sentence models.
    threshold:
        Page decision threshold (the training command replaces it with the
        cross-validated choice).
    random_state:
        Seed for fold assignment.
    """

    def __init__(
        self,
        sentence_C: float = 4.0,
        context_C: float = 4.0,
        page_C: float = 1.0,
        n_inner_folds: int = 4,
        max_features: int = 60000,
        rationale_threshold: float = 0.5,
        category_threshold: float = 0.4,
        max_rationale: int = 5,
        threshold: float = 0.5,
        sentence_class_weight: Optional[str] = "balanced",
        flagged_negative_weight: float = 1.0,
        mask_entities: bool = True,
        context_char_ngrams: bool = True,
        sentence_char_ngrams: bool = True,
        random_state: int = 0,
    ):
        self.sentence_C = sentence_C
        self.context_C = context_C
        self.page_C = page_C
        self.n_inner_folds = n_inner_folds
        self.max_features = max_features
        self.rationale_threshold = rationale_threshold
        self.category_threshold = category_threshold
        self.max_rationale = max_rationale
        self.threshold = threshold
        self.sentence_class_weight = sentence_class_weight
        self.flagged_negative_weight = flagged_negative_weight
        self.mask_entities = mask_entities
        self.context_char_ngrams = context_char_ngrams
        self.sentence_char_ngrams = sentence_char_ngrams
        self.random_state = random_state

    # -- fitting -----------------------------------------------------------

    def fit(self, X, y, evidence=None, kinds=None, extra_sentences=None):
        """Fit on pages.

        X: page contents (HTML or text) or NormalizedPage objects.
        y: page labels (1 = flag).
        evidence: per page, a list of {"sentence", "category"} claim sentences.
        kinds: per page, the sample set's ``kind`` (clinic_marketing,
            journalism, warning_letter, ...); trains the voice model. Pages
            with kind None do not train it.
        extra_sentences: standalone labeled sentences, (text, [categories]).
        """
        pages = [self._as_page(x) for x in X]
        y = np.asarray(y, dtype=int)
        if evidence is None:
            evidence = [None] * len(pages)
        if kinds is None:
            kinds = [None] * len(pages)
        extra = list(extra_sentences or ())
        self.classes_ = np.array([0, 1])

        # Out-of-fold page features for the stacked page model.
        n_folds = max(2, min(self.n_inner_folds, int(np.bincount(y, minlength=2).min())))
        folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=self.random_state)
        oof = np.zeros((len(pages), self._n_page_features()), dtype=np.float64)
        for train_idx, test_idx in folds.split(np.zeros(len(y)), y):
            parts = self._fit_parts([pages[i] for i in train_idx], y[train_idx],
                                    [evidence[i] for i in train_idx], [kinds[i] for i in train_idx], extra)
            oof[test_idx] = self._page_features(parts, [pages[i] for i in test_idx])[0]

        self.parts_ = self._fit_parts(pages, y, evidence, kinds, extra)
        self.page_model_ = LogisticRegression(C=self.page_C, class_weight="balanced", max_iter=2000)
        self.page_model_.fit(oof, y)
        return self

    def _fit_parts(self, pages, y, evidence, kinds, extra):
        """Sentence models and the page-context model on a set of pages.

        liblinear's dual solver: with more TF-IDF features than sentences it
        converged 3-5x faster than the primal one on the sample set, for the
        same L2-regularized model.
        """
        texts: List[str] = []
        cats: List[List[str]] = []
        weights: List[float] = []
        for page, label, ev in zip(pages, y, evidence):
            for sent, c in label_sentences(page, int(label), ev):
                texts.append(sent)
                cats.append(c)
                weights.append(self.flagged_negative_weight if (label and not c) else 1.0)
        for sent, c in extra:
            texts.append(sent)
            cats.append(list(c))
            weights.append(1.0)
        sample_weight = np.asarray(weights)
        vec = SentenceFeaturizer(self.max_features, self.mask_entities, self.sentence_char_ngrams)
        Xs = vec.fit_transform(texts)
        targets = [np.array([1 if c else 0 for c in cats])]
        targets += [np.array([1 if name in c else 0 for c in cats]) for name in CATEGORIES]
        sentence_models = []
        for t in targets:
            if t.min() == t.max():
                # A category absent from this fold: a constant model.
                sentence_models.append(float(t.max()))
                continue
            m = LogisticRegression(C=self.sentence_C, class_weight=self.sentence_class_weight, max_iter=2000,
                                   solver="liblinear", dual=True,
                                   random_state=self.random_state)
            m.fit(Xs, t, sample_weight=sample_weight)
            sentence_models.append(m)

        ctx_vec = self._context_vectorizer()
        Xp = ctx_vec.fit_transform([p.text for p in pages])
        ctx = LogisticRegression(C=self.context_C, class_weight="balanced", max_iter=2000,
                                 solver="liblinear", dual=True,
                                   random_state=self.random_state)
        ctx.fit(Xp, y)
        known = [i for i, k in enumerate(kinds) if k is not None]
        voice_y = np.array([1 if kinds[i] in PROMOTER_KINDS else 0 for i in known])
        voice = None
        if len(known) and voice_y.min() != voice_y.max():
            voice = LogisticRegression(C=self.context_C, class_weight="balanced", max_iter=2000,
                                       solver="liblinear", dual=True,
                                   random_state=self.random_state)
            voice.fit(Xp[known], voice_y)
        return {"vec": vec, "sentence_models": sentence_models, "ctx_vec": ctx_vec, "ctx": ctx, "voice": voice}

    def _context_vectorizer(self):
        """Page-level features: word n-grams, plus character n-grams when enabled.

        Character n-grams inside word boundaries carry cognates across
        languages ("exosom", "cellul", "stamm", "terap") into the page context
        and voice models, which see each page once, so their cost is paid per
        page rather than per sentence.
        """
        word = _word_vectorizer(self.max_features)
        if not self.context_char_ngrams:
            return word
        return FeatureUnion([("word", word), ("char", _char_vectorizer(self.max_features))])

    # -- scoring -----------------------------------------------------------

    @staticmethod
    def _n_page_features() -> int:
        return 7 + len(CATEGORIES) + 1

    @staticmethod
    def _predict_column(model, X) -> np.ndarray:
        if isinstance(model, float):
            return np.full(X.shape[0], model)
        return model.predict_proba(X)[:, 1]

    def _sentence_probs(self, parts, sentences: List[str]):
        X = parts["vec"].transform(sentences)
        probs = np.column_stack([self._predict_column(m, X) for m in parts["sentence_models"]])
        return X, probs

    def _page_features(self, parts, pages: Sequence[NormalizedPage]):
        """Page feature matrix plus the per-page sentence matrices (one batched call)."""
        all_sents: List[str] = []
        offsets = [0]
        for p in pages:
            all_sents.extend(p.sentences)
            offsets.append(len(all_sents))
        Xs, probs = self._sentence_probs(parts, all_sents)
        Xp = parts["ctx_vec"].transform([p.text for p in pages])
        ctx = parts["ctx"].predict_proba(Xp)[:, 1]
        voice = parts["voice"].predict_proba(Xp)[:, 1] if parts["voice"] is not None else np.full(len(pages), 0.5)
        feats = np.zeros((len(pages), self._n_page_features()))
        for i in range(len(pages)):
            P = probs[offsets[i]:offsets[i + 1]]
            claim = np.sort(P[:, 0])[::-1]
            feats[i, 0] = claim[0]
            feats[i, 1] = claim[:3].mean()
            feats[i, 2] = np.log1p((claim >= 0.5).sum())
            feats[i, 3] = (claim >= 0.5).mean()
            feats[i, 4] = ctx[i]
            feats[i, 5] = voice[i]
            # A claim counts most when the page speaks for a seller.
            feats[i, 6] = claim[0] * voice[i]
            # Category evidence only counts where the sentence is a claim.
            feats[i, 7:7 + len(CATEGORIES)] = (P[:, 1:] * P[:, :1]).max(axis=0)
            feats[i, -1] = np.log1p(len(P))
        return feats, Xs, probs, offsets

    def score_pages(self, pages: Sequence[NormalizedPage], threshold: Optional[float] = None) -> List[PageScore]:
        """Score normalized pages in one batch: page score, categories, rationale."""
        if not pages:
            return []
        feats, Xs, probs, offsets = self._page_features(self.parts_, pages)
        scores = self.page_model_.predict_proba(feats)[:, 1]
        threshold = self.threshold if threshold is None else threshold
        out = []
        for i, page in enumerate(pages):
            lo, hi = offsets[i], offsets[i + 1]
            rationale = self._rationale(page, Xs[lo:hi], probs[lo:hi], flagged=scores[i] >= threshold)
            categories = sorted({r.category for r in rationale if r.category},
                                key=CATEGORIES.index)
            out.append(PageScore(score=float(scores[i]), categories=categories, rationale=rationale))
        return out

    def _rationale(self, page: NormalizedPage, Xs, P, flagged: bool) -> List[RationaleItem]:
        """Top claim sentences, best first; one item per (sentence, confident category).

        A sentence may carry two categories (as evidence does), so it may
        appear twice. A category is named only for a sentence that is itself a
        claim and whose category probability is confident; a flagged page
        with no such sentence still shows the sentences that weighed most,
        with no category (severity "low").
        """
        order = np.argsort(-P[:, 0], kind="stable")
        picked = [j for j in order if P[j, 0] >= self.rationale_threshold][: self.max_rationale]
        if flagged and not picked:
            picked = list(order[: min(3, len(order))])
        items = []
        seen = set()
        for j in picked:
            sent = page.sentences[j]
            if sent in seen:
                continue
            seen.add(sent)
            cat_order = np.argsort(-P[j, 1:], kind="stable")
            confident = [int(k) for k in cat_order[:2]
                         if P[j, 0] >= self.rationale_threshold and P[j, k + 1] >= self.category_threshold]
            for k in confident or [None]:
                model = self.parts_["sentence_models"][0 if k is None else k + 1]
                items.append(RationaleItem(
                    sentence=sent,
                    category=None if k is None else CATEGORIES[k],
                    score=float(P[j, 0]),
                    category_score=float(P[j, int(cat_order[0]) + 1] if k is None else P[j, k + 1]),
                    terms=self._top_terms(model, Xs[j]),
                ))
        return items

    # Placeholder tokens of features.py, shown to reviewers in words.
    _TERM_NAMES = {"zzproduct": "<product>", "zzcondition": "<condition>", "zznumber": "<number>",
                   "zzpercent": "<percent>"}

    def _top_terms(self, model, x_row, n: int = 3) -> List[str]:
        """The n features of the sentence that pushed this model's score up most."""
        if isinstance(model, float):
            return []
        row = x_row.tocsr() if sparse.issparse(x_row) else sparse.csr_matrix(x_row)
        if row.nnz == 0:
            return []
        contrib = row.data * model.coef_[0][row.indices]
        names = self._feature_names()
        terms = []
        for t in np.argsort(-contrib):
            if contrib[t] <= 0 or len(terms) == n:
                break
            name = str(names[row.indices[t]])
            if name.startswith("zzlen"):
                continue
            terms.append(" ".join(self._TERM_NAMES.get(w, w) for w in name.split()))
        return terms

    def _feature_names(self):
        names = getattr(self, "_names_cache", None)
        if names is None:
            names = self.parts_["vec"].get_feature_names_out()
            self._names_cache = names
        return names

    # -- scikit-learn API --------------------------------------------------

    @staticmethod
    def _as_page(x) -> NormalizedPage:
        return x if isinstance(x, NormalizedPage) else normalize_page(x)

    def predict_proba(self, X) -> np.ndarray:
        scores = np.array([s.score for s in self.score_pages([self._as_page(x) for x in X])])
        return np.column_stack([1 - scores, scores])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= self.threshold).astype(int)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_names_cache", None)
        return state
