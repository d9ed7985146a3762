"""Page voice cues (models/features.py ``voice_cues``): who is speaking, as numbers the page model weighs."""
import numpy as np
import pytest

from regenwatch.models.classifier import CATEGORIES, ClaimModel
from regenwatch.models.features import VOICE_CUE_NAMES, page_cue_matrix, voice_cues
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


def test_cue_matrix_rows_are_pages():
    m = page_cue_matrix([CLINIC, REGULATOR, RESEARCH])
    assert m.shape == (3, len(VOICE_CUE_NAMES))
    np.testing.assert_array_equal(m[1], voice_cues(REGULATOR))


def test_page_model_sees_cues_only_when_enabled():
    assert ClaimModel()._n_page_features() == 8 + len(CATEGORIES) + len(VOICE_CUE_NAMES)
    assert ClaimModel(voice_cues=False)._n_page_features() == 8 + len(CATEGORIES)
