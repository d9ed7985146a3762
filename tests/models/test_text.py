import pytest

from regenwatch.models.text import (
    BinaryContent,
    ContentTooLarge,
    EmptyContent,
    fold_text,
    html_to_text,
    looks_like_html,
    normalize_page,
    sentence_key,
    split_sentences,
)


def test_html_to_text_drops_chrome_and_keeps_blocks():
    html = """<html><head><title>T</title><style>p{}</style></head><body>
    <header>Logo Home About</header><nav><a>Book now</a></nav>
    <h1>Exosome therapy</h1><p>Our <b>exo</b>somes are <i>safe</i>.</p>
    <script>var seo = "cures cancer";</script>
    <ul><li>First item</li><li>Second item</li></ul>
    <footer>Copyright clinic</footer></body></html>"""
    text = html_to_text(html)
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    assert lines == ["Exosome therapy", "Our exosomes are safe.", "First item", "Second item"]


def test_html_to_text_deep_nesting_is_not_recursive():
    html = "<div>" * 10000 + "deep text" + "</div>" * 10000
    assert "deep text" in html_to_text(html)


def test_sniffing():
    assert looks_like_html("<!DOCTYPE html><p>x</p>")
    assert looks_like_html("  <div class='a'>x</div>")
    assert not looks_like_html("Stem cells < 5 years old are used; 3 > 2.")


def test_fold_cyrillic_lookalikes_inside_latin_words():
    text, signals = fold_text("Exоsоmе thеrаpy сurеs Pаrkinsоn's disease.")
    assert text == "Exosome therapy cures Parkinson's disease."
    assert signals == ["homoglyphs"]


def test_real_cyrillic_text_is_left_alone():
    text, signals = fold_text("Стволовые клетки применяются в медицине.")
    assert text == "Стволовые клетки применяются в медицине."
    assert signals == []


def test_greek_lookalikes_folded():
    text, signals = fold_text("Stem cεlls hεal knees")
    assert text == "Stem cells heal knees"
    assert "homoglyphs" in signals


def test_greek_symbols_of_science_are_not_obfuscation():
    """TGF-β, IL-1β, TNFα, β細胞: symbols, not disguised letters (no fold, no signal)."""
    for text in ("Exosomes carry TGF-β and IL-1β, lower TNFα and HIF1α in vitro.",
                 "幹細胞はβ細胞に分化します。", "Levels of IFNγ fell by 20%."):
        assert fold_text(text) == (text, [])
    # Disguised lower-case words still fold, even with a single Greek letter.
    assert fold_text("Stem cεlls hεal knees") == ("Stem cells heal knees", ["homoglyphs"])
    assert fold_text("Our therapy curεs arthritis")[0] == "Our therapy cures arthritis"


def test_zero_width_and_control_characters_removed():
    text, signals = fold_text("cu\u200bres Park\u200dinson\u00ad's\x07 today")
    assert text == "cures Parkinson's today"
    assert signals == ["zero_width", "control_chars"]


def test_spaced_letters_joined():
    text, signals = fold_text("This therapy c u r e s arthritis and r-e-v-e-r-s-e-s aging")
    assert text == "This therapy cures arthritis and reverses aging"
    assert signals == ["spaced_letters"]


def test_initialisms_survive():
    text, signals = fold_text("Made in the U.S.A. by a U.K. lab")
    assert text == "Made in the U.S.A. by a U.K. lab"
    assert signals == []


def test_nfkc_and_whitespace():
    text, _ = fold_text("Ｓｔｅｍ\u00a0cells   work\n\n\n\nNext  line ")
    assert text == "Stem cells work\n\nNext line"


@pytest.mark.parametrize("raw", [
    "Exоsоmе thеrаpy сurеs", "c u r e s\u200b x", "<p>a</p>", "Ｓｔｅｍ", "a\r\nb\x00c",
])
def test_fold_is_idempotent(raw):
    once, _ = fold_text(raw)
    assert fold_text(once)[0] == once


def test_split_sentences():
    text = "Dr. Smith treats knees. It works in 2.5 weeks! Really?\nHeading line\n• Bullet point\nGlued.Sentence here"
    assert split_sentences(text) == [
        "Dr. Smith treats knees.", "It works in 2.5 weeks!", "Really?", "Heading line", "Bullet point",
        "Glued.", "Sentence here",
    ]


def test_split_caps_long_runs_and_count():
    sents = split_sentences("word " * 5000)
    assert all(len(s) <= 600 for s in sents)
    assert len(split_sentences("A b.\n" * 5000, max_sentences=100)) == 100


def test_normalize_page_records_signals_and_sentences():
    page = normalize_page("<p>Our ехоsоmеs heal\u200b knees.</p><p>Book today.</p>", "text/html")
    assert page.sentences == ("Our exosomes heal knees.", "Book today.")
    assert page.signals == ("zero_width", "homoglyphs")


def test_normalize_page_errors():
    with pytest.raises(EmptyContent):
        normalize_page("<script>only code</script>", "text/html")
    with pytest.raises(EmptyContent):
        normalize_page("  \n\t ")
    with pytest.raises(BinaryContent):
        normalize_page("\x00\x01\x02binary" * 10)
    with pytest.raises(ContentTooLarge):
        normalize_page("x" * 101, max_chars=100)


def test_sentence_key_matches_renderings():
    assert sentence_key("Exоsоmеs cure\u200b MS.") == sentence_key("exosomes cure MS")


def test_sentence_key_drops_a_leading_list_marker_as_the_splitter_does():
    page = normalize_page("Benefits:\n\n• Don't cause tumors\n- No rejection\n\nCall us.")
    keys = {sentence_key(s) for s in page.sentences}
    assert sentence_key("• Don't cause tumors") in keys
    assert sentence_key("– No rejection.") in keys
    # Inner dashes are words, not markers.
    assert sentence_key("Anti-aging - for real") == "anti-aging - for real"


def test_split_sentences_in_cjk_text_whose_full_width_marks_nfkc_made_ascii():
    # "！" and "？" become "!" and "?" under NFKC, and CJK text never puts a space after them.
    page = normalize_page("膝蓋疼痛有解了！您關心的效果？是的。幹細胞で治ります!次の文です")
    assert page.sentences == ("膝蓋疼痛有解了!", "您關心的效果?", "是的。", "幹細胞で治ります!", "次の文です")
    # Latin text is cut as before: decimals, abbreviations and lower-case continuations stay whole.
    assert normalize_page("Dr. Smith said 3.5 ml is fine. It works!ok").sentences == (
        "Dr. Smith said 3.5 ml is fine.", "It works!ok")
