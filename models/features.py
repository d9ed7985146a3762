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
from typing import List, Sequence

# Conditions (POLICY.md's list and the serious conditions clinics name most).
_CONDITIONS = r"""
parkinson'?s?|alzheimer'?s?|dementia|multiple\s+sclerosis|\bms\b|\bals\b|amyotrophic\s+lateral\s+sclerosis|
lou\s+gehrig'?s?|autism|autistic|\basd\b|cerebral\s+palsy|stroke|strokes|copd|emphysema|pulmonary\s+fibrosis|
heart\s+failure|heart\s+disease|cardiomyopathy|diabetes|diabetic|type\s+[12]\s+diabetes|cancer|cancers|tumou?rs?|
leukemia|leukaemia|lymphoma|arthritis|osteoarthritis|rheumatoid|spinal\s+cord\s+injur(?:y|ies)|paralysis|
erectile\s+dysfunction|\bed\b|impotence|long\s+covid|covid(?:-19)?|autoimmune(?:\s+diseases?)?|lupus|crohn'?s?|
colitis|\bibd\b|psoriasis|eczema|atopic\s+dermatitis|neuropathy|macular\s+degeneration|glaucoma|kidney\s+disease|
renal\s+failure|cirrhosis|liver\s+disease|hepatitis|fibromyalgia|lyme(?:\s+disease)?|muscular\s+dystrophy|
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


def _entity_token(m: "re.Match[str]") -> str:
    return " zzproduct " if m.group("product") else " zzcondition "


def mask_entities(sentence: str) -> str:
    """Replace condition names, product names and numbers by placeholder words."""
    out = _ENTITY_RE.sub(_entity_token, sentence)
    return _NUMBER_RE.sub(lambda m: " zzpercent " if "%" in m.group(0) else " zznumber ", out)


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
        return [f"{mask_entities(s)} {_length_token(s)}{_QUESTION if s.rstrip().endswith('?') else ''}"
                for s in sentences]
    return [f"{s} {_length_token(s)}{_QUESTION if s.rstrip().endswith('?') else ''}" for s in sentences]
