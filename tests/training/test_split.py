"""The real held-out split: stratified, deterministic, disjoint, and what the training data excludes."""
import collections
import os

from regenwatch.training.data_io import default_files, heldout_real_files, read_jsonl
from regenwatch.training.split import split_rows, stratum



def _rows(n_per, kinds=("clinic_marketing", "journalism"), langs=("en", "ja")):
    rows = []
    for kind in kinds:
        for lang in langs:
            for label in (0, 1):
                for i in range(n_per):
                    rows.append({"id": f"{kind}-{lang}-{label}-{i}", "kind": kind, "lang": lang, "label": label,
                                 "text": "x"})
    return rows


def test_split_holds_out_a_quarter_of_every_stratum_deterministically():
    rows = _rows(8)
    train, test = split_rows(rows)
    assert len(test) == len(rows) // 4 and len(train) + len(test) == len(rows)
    assert not {r["id"] for r in train} & {r["id"] for r in test}
    per = collections.Counter(stratum(r) for r in test)
    assert set(per.values()) == {2}  # 8 pages per stratum -> 2 held out in each
    # The assignment depends on the pages, not on their order in the file.
    assert {r["id"] for r in split_rows(list(reversed(rows)))[1]} == {r["id"] for r in test}


def test_pages_added_later_never_move_an_earlier_page():
    rows = _rows(8)
    train, test = split_rows(rows)
    previous = {r["id"]: False for r in train}
    previous.update({r["id"]: True for r in test})
    more = rows + [dict(r, id=r["id"] + "-new") for r in _rows(4)]
    train2, test2 = split_rows(more, previous=previous)
    assert {r["id"] for r in test} <= {r["id"] for r in test2}
    assert {r["id"] for r in train} <= {r["id"] for r in train2}
    new_test = [r for r in test2 if r["id"].endswith("-new")]
    assert len(new_test) == len(_rows(4)) // 4


def test_shipped_real_split_is_disjoint_from_training_and_large_enough():
    held = [r for f in heldout_real_files() for r in read_jsonl(f)]
    real_train = [r for f in default_files() if os.sep + "real" + os.sep in f for r in read_jsonl(f)]
    assert held and real_train
    assert not {r["id"] for r in held} & {r["id"] for r in real_train}
    norm = lambda u: u.lower().split("://")[-1].removeprefix("www.").rstrip("/")  # noqa: E731
    assert not {norm(r["source_url"]) for r in held} & {norm(r["source_url"]) for r in real_train}
    share = len(held) / (len(held) + len(real_train))
    assert 0.25 <= share < 0.30
    assert len(held) + len(real_train) >= 1500
    # At least a third of the real pages are not in English.
    langs = [r.get("lang") or "en" for r in held + real_train]
    assert sum(lang != "en" for lang in langs) >= len(langs) / 3


def test_learning_curve_shares_are_nested_and_stratified():
    from regenwatch.training.learning_curve import nested_shares

    labels = [0] * 60 + [1] * 40
    shares = nested_shares(labels, (0.25, 0.5, 1.0), seed=1)
    assert [len(s) for s in shares] == [25, 50, 100]
    assert set(shares[0]) <= set(shares[1]) <= set(shares[2])
    assert sum(labels[i] for i in shares[0]) == 10  # a quarter of each label


def test_cohen_kappa_and_the_shipped_second_annotation():
    from regenwatch.training import agreement as ag

    assert ag.cohen_kappa([(1, 1), (0, 0)] * 5) == 1.0
    assert abs(ag.cohen_kappa([(1, 0), (0, 1)] * 5) - (-1.0)) < 1e-9
    # 80% observed agreement on balanced labels: kappa (0.8 - 0.5) / 0.5.
    assert abs(ag.cohen_kappa([(1, 1)] * 4 + [(0, 0)] * 4 + [(1, 0), (0, 1)]) - 0.6) < 1e-9
    assert ag.main() == 0  # every disagreement of the shipped annotation is adjudicated
