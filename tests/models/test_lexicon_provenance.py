"""Every featurization lexicon phrase comes from the policy or a training page.

The lexicons (features.py: entity names, voice cues, claim cues) are part of
the model. A phrase taken from pages the model is measured on (the dev set,
the real held-out split) would tune the model to its test: each phrase must
occur in POLICY.md or in a page or sentence of the training set. The held-out
files are not searched.
"""
from __future__ import annotations

import os
import re

from regenwatch.models import features as F
from regenwatch.training.data_io import DATA_DIR, default_files, read_jsonl

POLICY = os.path.join(os.path.dirname(DATA_DIR), "POLICY.md")


def _training_texts():
    with open(POLICY, encoding="utf-8") as handle:
        yield handle.read()
    for path in default_files():
        assert "heldout" not in path
        for row in read_jsonl(path):
            yield f"{row.get('title') or ''}\n{row.get('text') or ''}"


def _cue_phrases():
    for table in (F._VOICE_CUES, F._CLAIM_CUES):
        for group, text in table:
            for phrase in re.sub(r"\s*\n\s*", "", text).split("|"):
                yield group, " ".join(F.cue_words(phrase))


def test_every_cue_phrase_occurs_in_policy_or_training_pages():
    # Cues are matched on features.cue_words tokens (page_cues): search the same tokens.
    blob = " " + " \n ".join(" ".join(F.cue_words(t)) for t in _training_texts()) + " "
    missing = [(g, p) for g, p in _cue_phrases() if f" {p} " not in blob]
    assert missing == []


def test_every_entity_name_occurs_in_policy_or_training_pages():
    text = "\n".join(t.lower() for t in _training_texts())
    missing = [a for a in F._PRODUCT_ALTS + F._CONDITION_ALTS if not re.search(r"\b(?:%s)(?!\w)" % a, text)]
    assert missing == []


def test_a_phrase_found_only_in_held_out_pages_is_caught():
    """The check can fail: a phrase that only the dev set holds is not in the training text."""
    blob = " " + " \n ".join(" ".join(F.cue_words(t)) for t in _training_texts()) + " "
    assert " zzneverwrittenphrase cures " not in blob
    assert " no side effects " in blob
