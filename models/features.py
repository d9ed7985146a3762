"""Sentence featurization helpers used inside the estimator (training and serving).

Claim detection must learn the *shape* of a claim ("<product> cures
<condition>", "no side effects", "better than <standard care>") rather than
its topic: a regulator's notice about Parkinson's and a clinic's promise to
cure it share every topic word. Masking condition and product names into
placeholder tokens lets the linear model weigh the predicate, and lets a
claim about a condition absent from the sample set score like a known one.
The lexicons below only normalize vocabulary; they decide nothing.
"""
from __future__ import annotations

import re
from functools import lru_cache
from itertools import chain, islice, repeat
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from scipy import sparse
from sklearn.preprocessing import normalize

# Conditions (POLICY.md's list and the serious conditions clinics name most).
_CONDITIONS = r"""
parkinson'?s?|alzheimer'?s?|dementia|multiple\s+sclerosis|\bms\b|\bals\b|amyotrophic\s+lateral\s+sclerosis|
autism|autistic|\basd\b|cerebral\s+palsy|stroke|strokes|copd|emphysema|pulmonary\s+fibrosis|
heart\s+failure|heart\s+disease|cardiomyopathy|diabetes|diabetic|type\s+[12]\s+diabetes|cancer|cancers|tumou?rs?|
leukemia|leukaemia|lymphoma|arthritis|osteoarthritis|rheumatoid|spinal\s+cord\s+injur(?:y|ies)|paralysis|
erectile\s+dysfunction|\bed\b|impotence|long\s+covid|covid(?:-19)?|autoimmune(?:\s+diseases?)?|lupus|crohn'?s?|
colitis|\bibd\b|psoriasis|eczema|atopic\s+dermatitis|neuropathy|macular\s+degeneration|glaucoma|kidney\s+disease|
cirrhosis|liver\s+disease|hepatitis|fibromyalgia|lyme(?:\s+disease)?|muscular\s+dystrophy|
huntington'?s?|epilepsy|infertility|hair\s+loss|alopecia|tendinitis|tendinopathy|degenerative\s+disc(?:\s+disease)?|
asthma|depression|anxiety|ptsd|traumatic\s+brain\s+injur(?:y|ies)|\btbi\b|neurodegenerative\s+diseases?|
chronic\s+pain|joint\s+pain|back\s+pain|knee\s+pain|cartilage\s+damage|wounds?|ulcers?|sepsis|hiv|aids
"""
_PRODUCTS = r"""
exosomes?|extracellular\s+vesicles?|secretome|conditioned\s+media|culture\s+supernatant|
mesenchymal\s+stem\s+cells?|mesenchymal|\bmscs?\b|stem\s+cells?|stem-cell|stammzellen|c[ée]lulas\s+madre|
k[öo]k\s+h[üu]cre(?:ler)?|cellules\s+souches|cellule\s+staminali|c[ée]lulas-tronco|wharton'?s\s+jelly|
umbilical\s+cord(?:\s+blood)?|cord\s+blood|cord\s+tissue|amniotic(?:\s+fluid)?|placental?|\bsvf\b|
stromal\s+vascular\s+fraction|adipose(?:-derived)?|bone\s+marrow(?:\s+aspirate)?|\bbmac\b|
platelet[-\s]rich\s+(?:plasma|fibrin)|\bprp\b|\bprf\b|growth\s+factors?|peptides?|bpc-157|nad\+?|
esosomi|exosomas|exosomen
"""
# One pass, whole words only: anchoring on word boundaries both keeps
# "Canadian" from matching "nad" and lets the regex engine skip most
# positions (a third of the cost of separate unanchored passes).
_ENTITY_RE = re.compile(
    r"\b(?:(?P<product>%s)|(?P<condition>%s))(?!\w)"
    % (_PRODUCTS.replace("\n", ""), _CONDITIONS.replace("\n", "")),
    re.IGNORECASE,
)
_NUMBER_RE = re.compile(r"\b\d+(?:[.,]\d+)?\s*%|\b\d+(?:[.,]\d+)?\b")


def _alternatives(pattern: str) -> List[str]:
    """The top-level alternatives of a regex (``a|b(?:c|d)|e`` -> a, b(?:c|d), e)."""
    out, cur, depth, i = [], [], 0, 0
    in_class = False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            cur.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            out.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _by_first_letter(alternatives: Sequence[str]) -> str:
    """The same alternation, grouped under each alternative's first letter.

    Python's regex engine tries an alternation's branches one by one at every
    word start; branches that open with a literal letter are skipped at the
    cost of one comparison, so ~20 letter groups instead of ~120 words make
    the scan several times faster. Within a letter the original order is
    kept, so the same branch wins (leftmost-first), and the same text is
    matched.
    """
    groups: Dict[str, List[str]] = {}
    for alt in alternatives:
        body = alt[2:] if alt.startswith("\\b") else alt  # the whole pattern starts with \b
        if not ("a" <= body[0] <= "z") or body[1:2] in ("", "?", "*", "+", "{"):
            raise ValueError(f"alternative {alt!r} does not start with a plain lower-case letter")
        groups.setdefault(body[0], []).append(body[1:])
    return "|".join(f"{c}(?:{'|'.join(rests)})" for c, rests in groups.items())


# For text already lower-cased (what the vectorizer sees): case-sensitive,
# grouped by first letter (see _by_first_letter); which kind of entity matched
# is then told by the products pattern alone, as products come first in
# _ENTITY_RE.
_PRODUCT_ALTS = _alternatives(_PRODUCTS.replace("\n", ""))
_CONDITION_ALTS = _alternatives(_CONDITIONS.replace("\n", ""))
_ENTITY_RE_LOWER = re.compile(r"\b(?:%s)(?!\w)" % _by_first_letter(_PRODUCT_ALTS + _CONDITION_ALTS))
_PRODUCT_RE_LOWER = re.compile("|".join(_PRODUCT_ALTS))


def _entity_token_lower(m: "re.Match[str]") -> str:
    return " zzproduct " if _PRODUCT_RE_LOWER.fullmatch(m.group(0)) else " zzcondition "


def _entity_token(m: "re.Match[str]") -> str:
    return " zzproduct " if m.group("product") else " zzcondition "


def _number_token(m: "re.Match[str]") -> str:
    return " zzpercent " if "%" in m.group(0) else " zznumber "


def mask_entities(sentence: str) -> str:
    """Replace condition names, product names and numbers by placeholder words."""
    return _NUMBER_RE.sub(_number_token, _ENTITY_RE.sub(_entity_token, sentence))


def _mask_lower(sentence: str) -> str:
    """mask_entities of the lower-cased sentence (what the vectorizer sees), faster."""
    return _NUMBER_RE.sub(_number_token, _ENTITY_RE_LOWER.sub(_entity_token_lower, sentence.lower()))


def _length_token(sentence: str) -> str:
    n = len(sentence.split())
    if n <= 1:
        return "zzlen1"
    if n <= 3:
        return "zzlen3"
    if n <= 7:
        return "zzlen7"
    return "zzlenlong"


# A question ("can stem cells help my MS?") asks rather than claims; the
# tokenizer drops the "?", so it is kept as a token.
_QUESTION = " zzquestion"


def sentence_documents(sentences: Sequence[str], mask: bool = True) -> List[str]:
    """What the sentence vectorizer sees.

    The sentence with entities masked, plus a length token (and a question
    token for questions): headings such as
    "Exosomes vs. PRP" share the product words of real claims, and the length
    token lets the model learn that a claim needs a predicate instead of a
    hand-written word-count rule.
    """
    if mask:
        # Lower-cased: the vectorizer lower-cases anyway (see _mask_lower).
        return [f"{_mask_lower(s)} {_length_token(s)}{_QUESTION if s.rstrip().endswith('?') else ''}"
                for s in sentences]
    return [f"{s} {_length_token(s)}{_QUESTION if s.rstrip().endswith('?') else ''}" for s in sentences]


# --------------------------------------------------------------------------
# N-gram analysis and TF-IDF
#
# What sklearn's TfidfVectorizer(analyzer="word", ngram_range=(1, 2)) and
# TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)) compute, reorganized
# for speed (they were most of the training time and half of the serving
# time):
#
# * analysis is separated from fitting: ``fit`` of the model analyzes each
#   distinct sentence and page once into term-id count rows, and every inner
#   fold only selects rows, prunes its vocabulary (min_df, max_df,
#   max_features on its own training rows) and refits idf and the models; no
#   fold sees another fold's labels or document frequencies;
# * character n-grams inside word boundaries depend only on the word, so they
#   are computed once per distinct word (a memo) instead of once per
#   occurrence: a page costs one lookup per word instead of ~10 slices and
#   dictionary lookups per character.

_TOKEN_RE = re.compile(r"(?u)\b\w[\w'’-]*\b")
CHAR_NGRAM_RANGE = (3, 5)

# Scripts written without spaces between words: Han (Chinese, Japanese
# kanji), kana, Thai, Lao, Khmer, Myanmar. \w matches their letters, so a
# whole clause would be one "word" that never repeats; such runs are cut into
# overlapping character bigrams instead (as Lucene's CJK bigram filter does),
# which makes "治療" (treatment), "幹細" + "細胞" (stem cell) or "効果" units
# the word n-grams can count. Hangul is left alone: Korean separates words
# with spaces. Measured against dictionary tokenizers in docs/MODEL.md.
_UNSPACED = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff"
             "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f")
_UNSPACED_RE = re.compile(f"[{_UNSPACED}]")
_UNSPACED_RUN_RE = re.compile(f"[{_UNSPACED}]+|[^{_UNSPACED}]+")
TOKENIZER_VERSION = "word+unspaced-bigrams-1"


def _split_unspaced(token: str) -> List[str]:
    """A token holding unspaced-script letters, as character bigrams of those runs (other runs kept whole)."""
    out: List[str] = []
    for run in _UNSPACED_RUN_RE.findall(token):
        if _UNSPACED_RE.match(run):
            out.extend([run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)])
        else:
            out.append(run)
    return out


def _bigram_unspaced(tokens: List[str], doc: str) -> List[str]:
    """The tokens of doc with every token holding unspaced-script letters cut as _split_unspaced cuts it."""
    if not _UNSPACED_RE.search(doc):
        return tokens
    out: List[str] = []
    for t in tokens:
        if _UNSPACED_RE.search(t):
            out.extend(_split_unspaced(t))
        else:
            out.append(t)
    return out


def tokens_of(doc: str) -> List[str]:
    """The word tokens of a lower-cased document (see _UNSPACED for scripts without spaces)."""
    return _bigram_unspaced(_TOKEN_RE.findall(doc), doc)


def word_ngrams(doc: str) -> List[str]:
    """Lower-cased word unigrams and bigrams (sklearn's "word" analyzer, ngram_range=(1, 2))."""
    tokens = tokens_of(doc.lower())
    return tokens + list(map(" ".join, zip(tokens, tokens[1:])))


@lru_cache(maxsize=1 << 16)
def word_char_ngrams(word: str) -> Tuple[str, ...]:
    """Character 3-5 grams of one lower-cased word padded with spaces (sklearn's "char_wb")."""
    w = " " + word + " "
    w_len = len(w)
    grams = []
    lo, hi = CHAR_NGRAM_RANGE
    for n in range(lo, hi + 1):
        offset = 0
        grams.append(w[offset:offset + n])
        while offset + n < w_len:
            offset += 1
            grams.append(w[offset:offset + n])
        if offset == 0:  # a word shorter than n counts once, as sklearn does
            break
    return tuple(grams)


def char_wb_ngrams(doc: str) -> List[str]:
    """Character 3-5 grams inside word boundaries of a lower-cased document."""
    return [g for w in doc.lower().split() for g in word_char_ngrams(w)]


class TermIndex:
    """Term -> id for one fit: counts of all documents share one id space."""

    def __init__(self):
        self.ids: Dict[str, int] = {}
        self._word_memo: Dict[str, np.ndarray] = {}

    def names(self) -> np.ndarray:
        return np.asarray(list(self.ids), dtype=object)

    def _intern(self, terms: Iterable[str]) -> List[int]:
        ids = self.ids
        return [ids.setdefault(t, len(ids)) for t in terms]

    def word_counts(self, docs: Sequence[str]) -> sparse.csr_matrix:
        return self._counts([np.asarray(self._intern(word_ngrams(d)), dtype=np.int64) for d in docs])

    def char_counts(self, docs: Sequence[str]) -> sparse.csr_matrix:
        intern = self._intern
        return char_counts_by_word(
            docs, lambda words: _memoized(self._word_memo, words,
                                          lambda w: np.asarray(intern(word_char_ngrams(w)), dtype=np.int64)),
            None)

    def _counts(self, rows: List[np.ndarray]) -> sparse.csr_matrix:
        # The number of columns is fixed later (the index grows while other
        # documents are analyzed): see ``widen``.
        return _rows_to_csr(rows, None)


def _rows_to_csr(rows: List[np.ndarray], n_cols: Optional[int], sum_duplicates: bool = True) -> sparse.csr_matrix:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    indices = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    width = n_cols if n_cols is not None else (int(indices.max()) + 1 if len(indices) else 0)
    m = sparse.csr_matrix((np.ones(len(indices), dtype=np.float64), indices, indptr),
                          shape=(len(rows), width))
    if sum_duplicates:
        m.sum_duplicates()
    return m


def char_counts_by_word(docs: Sequence[str], words_ids, n_cols: Optional[int]) -> sparse.csr_matrix:
    """Character n-gram counts as (document x word counts) @ (word x n-gram counts).

    char_wb n-grams never cross a word, so a document's counts are the sum of
    its words' counts; the product sums them in compiled code, with one
    dictionary lookup per word occurrence and the n-grams of each distinct
    word (words_ids(words): per word, its term ids repeated as often as they
    occur).
    """
    # Built with C-level loops (map, dict.fromkeys): a page has ~500 words.
    split = [d.lower().split() for d in docs]
    flat = list(chain.from_iterable(split))
    local = dict.fromkeys(flat)
    for i, w in enumerate(local):
        local[w] = i
    cols = np.fromiter(map(local.__getitem__, flat), dtype=np.int64, count=len(flat))
    indptr = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(ws) for ws in split], out=indptr[1:])
    words = sparse.csr_matrix((np.ones(len(cols)), cols, indptr), shape=(len(docs), len(local)))
    grams = _rows_to_csr(words_ids(list(local)), n_cols, sum_duplicates=False)
    if n_cols is None:
        n_cols = grams.shape[1]
    out = words @ grams
    return sparse.csr_matrix((out.data, out.indices, out.indptr), shape=(len(docs), n_cols))


def _memoized(memo: Dict[str, np.ndarray], words: List[str], compute) -> List[np.ndarray]:
    """memo[w] for each word, computing (and keeping) the missing ones."""
    out = list(map(memo.get, words))
    for i, ids in enumerate(out):
        if ids is None:
            out[i] = memo[words[i]] = compute(words[i])
    return out


def word_counts_batch(docs: Sequence[str], get, n_cols: int) -> sparse.csr_matrix:
    """Word 1-2 gram counts of documents over a fixed vocabulary (get: term -> column or -1).

    The same terms as word_ngrams, looked up for the whole batch in compiled
    loops (map over one flat token list) rather than per document.
    """
    tokens = [tokens_of(d.lower()) for d in docs]
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    flat = list(chain.from_iterable(tokens))
    n = len(flat)
    doc_of = np.repeat(np.arange(len(docs)), lengths)
    uni = np.fromiter(map(get, flat, repeat(-1)), dtype=np.int64, count=n)
    bi = np.fromiter(map(get, map(" ".join, zip(flat, islice(flat, 1, None))), repeat(-1)),
                     dtype=np.int64, count=max(n - 1, 0))
    bi_doc = doc_of[:-1] if n else doc_of
    # A bigram of the flat list that spans two documents is no bigram.
    bi_ok = (bi >= 0) & (bi_doc == doc_of[1:]) if n else bi >= 0
    uni_ok = uni >= 0
    rows = np.concatenate([doc_of[uni_ok], bi_doc[bi_ok]])
    cols = np.concatenate([uni[uni_ok], bi[bi_ok]])
    # (data, (row, col)) sums repeated terms.
    return sparse.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(docs), n_cols))


def widen(m: sparse.csr_matrix, n_cols: int) -> sparse.csr_matrix:
    """The same counts with n_cols columns (ids interned after m was built are absent from it)."""
    return sparse.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], n_cols))


def tfidf_from_counts(counts: sparse.csr_matrix, idf: np.ndarray) -> sparse.csr_matrix:
    """Sublinear tf (1 + log tf) times idf, rows L2-normalized (TfidfVectorizer's defaults here)."""
    X = counts.astype(np.float64, copy=True)
    X.data = (1.0 + np.log(X.data)) * idf[X.indices]
    return normalize(X, norm="l2", copy=False)


class NgramTfidf:
    """A fitted n-gram TF-IDF: vocabulary and idf; ``transform`` analyzes documents.

    kind "word": word 1-2 grams; kind "char_wb": character 3-5 grams inside
    word boundaries. Column order is the sorted vocabulary, as sklearn's.
    """

    def __init__(self, kind: str, vocabulary: Dict[str, int], idf: np.ndarray):
        self.kind = kind
        self.vocabulary_ = vocabulary
        self.idf_ = idf

    @classmethod
    def fit_counts(cls, kind: str, counts: sparse.csr_matrix, names: np.ndarray, min_df: int, max_df: float,
                   max_features: Optional[int]) -> Tuple["NgramTfidf", np.ndarray]:
        """Fit on count rows over a TermIndex; returns the featurizer and the kept term ids (column order).

        Pruning as TfidfVectorizer: document frequency within [min_df,
        max_df * n_docs], then the max_features most frequent terms.
        """
        n_docs = counts.shape[0]
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        mask = (df >= min_df) & (df <= max_df * n_docs)
        if max_features is not None and mask.sum() > max_features:
            tfs = np.asarray(counts.sum(axis=0)).ravel()
            candidates = np.flatnonzero(mask)
            # Ties broken by term, so the vocabulary does not depend on the
            # order in which terms were first seen.
            order = np.lexsort((names[candidates], -tfs[candidates]))[:max_features]
            mask = np.zeros_like(mask)
            mask[candidates[order]] = True
        keep = np.flatnonzero(mask)
        if not len(keep):
            raise ValueError("After pruning, no terms remain. Try a lower min_df or a higher max_df.")
        keep = keep[np.argsort(names[keep], kind="stable")]
        idf = np.log((1.0 + n_docs) / (1.0 + df[keep])) + 1.0
        vocabulary = {str(names[k]): j for j, k in enumerate(keep)}
        return cls(kind, vocabulary, idf), keep

    def from_counts(self, counts: sparse.csr_matrix, keep: np.ndarray) -> sparse.csr_matrix:
        """TF-IDF rows from TermIndex counts (keep: the term ids ``fit_counts`` returned)."""
        return tfidf_from_counts(counts[:, keep], self.idf_)

    def counts(self, docs: Sequence[str]) -> sparse.csr_matrix:
        if self.kind == "char_wb":
            return char_counts_by_word(docs, self._words_ids, len(self.idf_))
        return word_counts_batch(docs, self.vocabulary_.get, len(self.idf_))

    def _words_ids(self, words: List[str]) -> List[np.ndarray]:
        memo = self.__dict__.setdefault("_memo", {})
        if len(memo) >= _MEMO_MAX_WORDS:
            memo.clear()
        get = self.vocabulary_.get
        return _memoized(memo, words, lambda w: np.asarray([j for j in map(get, word_char_ngrams(w))
                                                            if j is not None], dtype=np.int64))

    def transform(self, docs: Sequence[str]) -> sparse.csr_matrix:
        return tfidf_from_counts(self.counts(docs), self.idf_)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = np.empty(len(self.vocabulary_), dtype=object)
        for term, j in self.vocabulary_.items():
            names[j] = term
        return names

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_memo", None)  # a cache: rebuilt on use, and the artifact stays deterministic
        return state


# Distinct words memoized per character featurizer (a serving process sees an
# open-ended vocabulary; ~100 bytes per word plus its ids).
_MEMO_MAX_WORDS = 200_000


# --------------------------------------------------------------------------
# Who is speaking: page-level voice cues
#
# POLICY.md flags a page that *promotes, sells or recommends* a product and
# makes a claim; the same claim quoted by a regulator, a reporter or a
# researcher is not flagged. The voice and context models learn this from
# the pages' whole vocabulary, which on a few hundred pages is thin evidence.
# These cue groups name the few devices that carry the voice in any page
# (an offer to the reader, the first person of a provider, a reporting or
# research frame, a regulator's wording, a hedge), so the page model can
# weigh them directly. Each is a rate per 100 words, capped, so a long page
# and a short page are on one scale. Major European languages the sample set
# holds are covered for the offer and first-person groups.
_VOICE_CUES: Tuple[Tuple[str, str], ...] = (
    ("offer", """contact us|call us|call now|call today|book a|book an|book your|book now|book online|
        schedule a|schedule an|schedule your|consultation|consultations|free consultation|appointment|appointments|
        enquire|request a|request an|request your|sign up|
        buy now|add to cart|shop now|pricing|price|prices|package|packages|treatment plan|
        treatment plans|our clinic|our center|our team|our doctor|our doctors|our physician|
        our physicians|our specialists|our patients|our protocol|our program|
        our product|our treatment|our treatments|our therapy|our therapies|whatsapp|
        kontakt|termin|beratung|jetzt|contáctenos|contáctanos|cita|consulta|reserva|rendez vous|
        prenota|appuntamento|agende|iletişim|randevu|επικοινωνία|επικοινωνήστε|ραντεβού|
        予約|お問い合わせ|無料カウンセリング|カウンセリング|料金|税込|预约|預約|咨询|諮詢|價格|价格|예약|상담|문의|agendar|consulte|valores|agenda|precio|
        precios|solicita|tarif|tarifs|preise|vereinbaren|prezzo|prezzi|afspraak|umów|cena|cennik|fiyat|
        fiyatları|записаться|запись|цены|стоимость|đặt lịch|tư vấn|liên hệ|hubungi|konsultasi|harga|احجز|
        اتصل|سعر|استشارة|จอง|ปรึกษา|ราคา"""),
    ("we", """we|our|ours|us|wir|unser|unsere|unserer|unseren|unseres|nosotros|nuestro|nuestra|nuestros|
        nuestras|nous|notre|nos|noi|nostro|nostri|nostre|nosso|nossa|biz|μας"""),
    ("you", """you|your|yours|ihr|ihre|sie|su|vous|votre|voi|você|seu|sua|σας"""),
    ("report", """said|says|told|according to|reported|reporter|journalist|interview|interviewed|critics|
        experts say|experts warn|investigation|spokesman|spokesperson|
        según|dijo|afirmó|informó|segundo|disse|afirmou|selon|laut|berichtet|ha detto|ha spiegato|によると|報道|
        记者|記者|报道|報導|기자|밝혔다|따르면|وقال|وأوضح|menurut|cho biết"""),
    ("research", """doi|et al|abstract|methods|participants|randomized|randomised|placebo|cohort|phase i|phase ii|
        phase 1|phase 2|phase 3|meta analysis|systematic review|in vitro|in vivo|mice|
        we found|we examined|p 0"""),
    ("regulator", """fda|ema|mhra|tga|warning letter|warn|warns|consumer|consumers|violation|violations|violate|
        unapproved|not approved|adverse event|adverse events|medwatch|agency|
        enforcement|public health|recall"""),
    ("hedge", """may|might|could|possibly|experimental|investigational|not proven|limited evidence|
        more research|early stage|early studies|early research|results vary|ask your doctor|consult your|
        consult a|
        möglicherweise|könnte|könnten|nicht belegt|experimentell|pourrait|peut être|expérimental|podría|
        podrían|posiblemente|más estudios|poderia|poderiam|potrebbe|sperimentale|mogelijk|misschien|
        experimenteel|niet bewezen|eksperymentalny|olabilir|deneysel|可能性|かもしれ|個人差|尚未|个体差异|研究阶段|mungkin|อาจ"""),
)
VOICE_CUE_NAMES: Tuple[str, ...] = tuple(name for name, _ in _VOICE_CUES)


# Claim phrases: POLICY.md's "what it looks like" column as word sequences, per
# category. The sentence models weigh the same words, but as one n-gram among
# thousands in a sentence's vector; counted on the page they tell the page
# model plainly that a categorical phrase is there ("no side effects",
# "clinically proven", "FDA registered", "better than surgery"). Counts, not
# rates: one claim is enough to flag a page, however long (POLICY.md).
_CLAIM_CUES: Tuple[Tuple[str, str], ...] = (
    ("disease_treatment", """cures|cure|cured|curing|heals|heal|healed|reverses|reversed|reverse the|treats|treat|
        treated|treatment for|repairs|repair|regenerates|regenerate|
        regrow|regrows|restores|restore|restored|halt|halts|eliminates|free of|
        no longer need|helps with|help with"""),
    ("safety_assurance", """no side effects|without side effects|no risk|no risks|risk free|completely safe|totally safe|
        100 safe|perfectly safe|very safe|safe and effective|safe and natural|no rejection|
        never rejected|no complications|minimal risk|zero risk|is safe|
        are safe|safe procedure|immune privileged|sin efectos secundarios|ohne nebenwirkungen|
        senza effetti collaterali|sem efeitos colaterais|yan etkisi yok"""),
    ("efficacy_proof", """clinically proven|proven|proven to|scientifically proven|studies prove|studies show|
        studies have shown|research shows|shown to|guaranteed|guarantee|guaranteed results|success rate|
        effective rate|of patients|demonstrated|
        klinisch bewiesen|cliniquement prouvé"""),
    ("regulatory_misrepresentation", """fda approved|fda approval|fda registered|fda compliant|fda cleared|
        approved by the fda|registered with the fda|not regulated|exempt from|361 hct p|
        government approved|licensed by|certified by"""),
    ("superiority", """better than|superior to|more effective than|instead of surgery|avoid surgery|
        avoid knee replacement|alternative to surgery|without surgery|
        than surgery|than drugs|outperforms|unlike surgery|unlike drugs|rivals|
        overwhelmingly"""),
    ("age_reversal", """reverse aging|reverse ageing|reverses aging|turn back the clock|
        turns back the clock|anti aging|biological age|cellular rejuvenation|rejuvenates|
        rejuvenate|fountain of youth|age reversal|reversing aging"""),
    ("testimonial_as_evidence", """before and after|testimonial|testimonials|patient story|patient stories|
        success story|success stories|walked again|walk again|after treatment|after the treatment|
        my son|my daughter|my husband|my wife"""),
)
CLAIM_CUE_NAMES: Tuple[str, ...] = tuple(name for name, _ in _CLAIM_CUES)
PAGE_CUE_NAMES: Tuple[str, ...] = tuple("voice:" + n for n in VOICE_CUE_NAMES) + tuple(
    "claim:" + n for n in CLAIM_CUE_NAMES)


def _phrase_index() -> Dict[str, List[Tuple[Tuple[str, ...], int]]]:
    """First word -> [(phrase words, column in PAGE_CUE_NAMES)], longest phrases first."""
    index: Dict[str, List[Tuple[Tuple[str, ...], int]]] = {}
    seen: Dict[Tuple[str, ...], int] = {}
    tables = [(0, _VOICE_CUES), (len(VOICE_CUE_NAMES), _CLAIM_CUES)]
    for base, table in tables:
        for group, (_, text) in enumerate(table):
            for phrase in re.sub(r"\s*\n\s*", "", text).split("|"):
                words = tuple(cue_words(phrase))
                if not words:
                    continue
                if words in seen:
                    raise ValueError(f"cue phrase {phrase!r} is listed twice")
                seen[words] = base + group
                index.setdefault(words[0], []).append((words, base + group))
    for entries in index.values():
        entries.sort(key=lambda e: -len(e[0]))
    return index


# Cues are matched on word tokens (one findall, then a dict look-up per word
# and a comparison per phrase that starts with it) rather than with a big
# case-insensitive regex: the regex cost as much per page as scoring it.
# Every phrase that starts at a word counts (overlaps do: "our clinic" is an
# offer and "our" a first person).
_CUE_WORD_RE = re.compile(r"\w+")


def cue_words(text: str) -> List[str]:
    """The words cues are matched on: \\w+ runs of the lower-cased text, unspaced scripts as character bigrams.

    So a Japanese or Chinese cue ("予約", booking; "個人差", results vary by
    person) is a short sequence of bigrams found inside a clause, as a
    phrase of words is found in a sentence.
    """
    return _bigram_unspaced(_CUE_WORD_RE.findall(text.lower()), text)


_PHRASES_BY_FIRST_WORD = _phrase_index()


def page_cues(text: str) -> np.ndarray:
    """[voice cues | claim cues] of a page's normalized text (PAGE_CUE_NAMES order).

    Voice cues: log(1 + occurrences per 100 words), capped at 20 per 100, so a
    long and a short page are on one scale. Claim cues: log(1 + occurrences).
    """
    words = cue_words(text)
    counts = np.zeros(len(PAGE_CUE_NAMES))
    get = _PHRASES_BY_FIRST_WORD.get
    for i, word in enumerate(words):
        entries = get(word)
        if entries is None:
            continue
        for phrase, column in entries:
            if len(phrase) == 1 or tuple(words[i:i + len(phrase)]) == phrase:
                counts[column] += 1
    nv = len(VOICE_CUE_NAMES)
    counts[:nv] = np.minimum(counts[:nv] * 100.0 / max(1, len(words)), 20.0)
    return np.log1p(counts)


def voice_cues(text: str) -> np.ndarray:
    """The voice part of page_cues."""
    return page_cues(text)[:len(VOICE_CUE_NAMES)]


def claim_cues(text: str) -> np.ndarray:
    """The claim part of page_cues."""
    return page_cues(text)[len(VOICE_CUE_NAMES):]


def page_cue_matrix(texts: Sequence[str]) -> np.ndarray:
    """page_cues of every text, one row per text."""
    out = np.zeros((len(texts), len(PAGE_CUE_NAMES)))
    for i, text in enumerate(texts):
        out[i] = page_cues(text)
    return out


def lexicon_fingerprint() -> str:
    """SHA-256 of every lexicon the featurization reads (entities, voice and claim cues).

    The lexicons are code, not part of the pickled model: a model fitted with
    one version of them and served with another would score different
    features than it was trained on, silently. The estimator records this at
    fit time and load_model refuses a mismatch.
    """
    import hashlib

    # The tokenizer's version too: a model fitted on other tokens would be
    # served features it never saw.
    parts = [_CONDITIONS, _PRODUCTS, repr(_VOICE_CUES), repr(_CLAIM_CUES), TOKENIZER_VERSION]
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()
