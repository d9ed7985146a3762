"""Page cues (models/features.py ``page_cues``): who is speaking and which policy phrases a page uses."""
import numpy as np
import pytest

from regenwatch.models.classifier import CATEGORIES, ClaimModel
from regenwatch.models.features import (
    CLAIM_CUE_NAMES,
    PAGE_CUE_NAMES,
    VOICE_CUE_NAMES,
    claim_cues,
    page_cue_matrix,
    page_cues,
    voice_cues,
)
from regenwatch.models.text import normalize_page
from regenwatch.training.renderings import cyrillic, html_wrap, zero_width

CLINIC = ("Welcome to our clinic. Our team offers exosome therapy for knee pain. "
          "Book your free consultation today, or contact us on WhatsApp for prices and packages.")
REGULATOR = ("The FDA warns consumers that no exosome product is approved. Unapproved products may cause "
             "adverse events; report them to MedWatch. The agency issued a warning letter for violations.")
RESEARCH = ("Abstract. Methods: 40 participants were randomized to MSC or placebo in a phase II trial; "
            "in vivo data in mice were consistent (Smith et al., doi 10.1000/x). We found p < 0.05.")
REPORT = ("The clinic's director said the cells repair cartilage, according to a video the reporter watched. "
          "Critics told the paper the claims are unproven, and experts warn of risks.")


def cue(text, name):
    return voice_cues(text)[VOICE_CUE_NAMES.index(name)]


@pytest.mark.parametrize("text, strongest", [
    (CLINIC, "offer"), (REGULATOR, "regulator"), (RESEARCH, "research"), (REPORT, "report")])
def test_each_voice_carries_its_own_cue_most(text, strongest):
    values = dict(zip(VOICE_CUE_NAMES, voice_cues(text)))
    others = [v for k, v in values.items() if k not in (strongest, "we", "you", "hedge")]
    assert values[strongest] > 0
    assert values[strongest] > max(others), values


def test_cues_are_rates_not_counts():
    """A page said twice is the same voice: cues do not grow with length."""
    np.testing.assert_allclose(voice_cues(CLINIC), voice_cues(CLINIC + " " + CLINIC), rtol=0.02)
    # ... and a sentence of the offer among many neutral ones weighs less than a page of offers.
    filler = " ".join(["The knee is a hinge joint between the femur and the tibia."] * 20)
    assert cue(filler + " Book your consultation.", "offer") < cue(CLINIC, "offer")


def test_phrases_match_whole_consecutive_words_any_case():
    assert cue("CONTACT US today.", "offer") > 0
    assert cue("Please contact the office; us too.", "offer") == 0  # "contact ... us" is not "contact us"
    assert cue("Mayfair clinic.", "hedge") == 0  # "may" inside a word is no hedge
    assert cue("Results may vary.", "hedge") > 0
    assert cue("Vereinbaren Sie jetzt einen Termin.", "offer") > 0  # German offer
    assert voice_cues("").tolist() == [0.0] * len(VOICE_CUE_NAMES)


def test_cues_survive_obfuscation_and_html_after_normalization():
    """Cues are computed on the normalized text, so look-alikes, zero-width marks and page chrome change nothing."""
    plain = normalize_page(CLINIC + " " + REPORT).text
    assert voice_cues(plain).min() >= 0 and cue(plain, "offer") > 0
    for render in (cyrillic, zero_width, html_wrap):
        for seed in range(3):
            rendered = normalize_page(render(CLINIC + " " + REPORT, seed=seed)).text
            np.testing.assert_allclose(voice_cues(rendered), voice_cues(plain), atol=1e-12)


def claim(text, name):
    return claim_cues(text)[CLAIM_CUE_NAMES.index(name)]


@pytest.mark.parametrize("sentence, category", [
    ("Our exosome drip cures long COVID.", "disease_treatment"),
    ("There are no side effects and no risk of rejection.", "safety_assurance"),
    ("The protocol is clinically proven, with a 94% success rate.", "efficacy_proof"),
    ("Our lab is FDA registered, so the cells are legal.", "regulatory_misrepresentation"),
    ("PRP lets you avoid knee replacement, and it works better than surgery.", "superiority"),
    ("Our NAD+ drip will turn back the clock on your cells.", "age_reversal"),
    ("See our before and after gallery: my son walked again.", "testimonial_as_evidence"),
])
def test_claim_cues_name_the_policy_category(sentence, category):
    values = claim_cues(sentence)
    assert values[CLAIM_CUE_NAMES.index(category)] > 0
    assert values.argmax() == CLAIM_CUE_NAMES.index(category) or values.max() == claim(sentence, category)


def test_claim_cues_count_so_one_claim_weighs_the_same_on_a_long_page():
    """A hedge-filled page does not dilute its one claim (POLICY.md: one claim flags the page)."""
    filler = " ".join(["Results vary and evidence is early; ask your doctor about the options."] * 30)
    one = "This exosome serum has no side effects."
    assert claim(filler + " " + one, "safety_assurance") == claim(one, "safety_assurance") > 0
    assert claim(filler, "safety_assurance") == 0


def test_cue_matrix_rows_are_pages_voice_then_claim():
    m = page_cue_matrix([CLINIC, REGULATOR, RESEARCH])
    assert m.shape == (3, len(PAGE_CUE_NAMES)) == (3, len(VOICE_CUE_NAMES) + len(CLAIM_CUE_NAMES))
    np.testing.assert_array_equal(m[1], page_cues(REGULATOR))
    np.testing.assert_array_equal(m[1], np.concatenate([voice_cues(REGULATOR), claim_cues(REGULATOR)]))


def test_page_model_sees_cues_only_when_enabled():
    assert ClaimModel()._n_page_features() == 8 + len(CATEGORIES) + len(PAGE_CUE_NAMES)
    assert ClaimModel(page_cues=False)._n_page_features() == 8 + len(CATEGORIES)


def test_a_model_without_cues_still_fits_and_scores():
    """The ablation the README's figures compare against stays a working configuration."""
    from regenwatch.training.data_io import load_sample_set

    s = load_sample_set()
    pages, sentences = s.pages[::6], s.sentences[::6]
    model = ClaimModel(n_inner_folds=2, page_cues=False).fit(
        [p["text"] for p in pages], [p["label"] for p in pages],
        evidence=[p.get("evidence") for p in pages], kinds=[p.get("kind") for p in pages],
        extra_sentences=sentences)
    assert model.page_model_.coef_.shape[1] == 8 + len(CATEGORIES)
    assert 0.0 <= model.predict_proba([CLINIC])[0, 1] <= 1.0


def test_unspaced_scripts_become_character_bigrams():
    from regenwatch.models.features import tokens_of, word_ngrams

    assert tokens_of("幹細胞治療") == ["幹細", "細胞", "胞治", "治療"]
    # Latin words, Hangul words and digits stay whole; a mixed token is cut at the script change.
    assert tokens_of("prp療法で 줄기세포 치료 2024年") == ["prp", "療法", "法で", "줄기세포", "치료", "2024", "年"]
    assert tokens_of("stem cells cure ms") == ["stem", "cells", "cure", "ms"]
    assert "細胞 胞治" in word_ngrams("幹細胞治療")
    # Thai, written without spaces, too.
    assert tokens_of("สเต็มเซลล์")[:2] == ["สเ", "เต"]
