"""PR curve and calibration pictures (matplotlib, Agg canvas)."""
import os

import numpy as np
import pytest
from matplotlib.image import imread

from regenwatch.training.plots import CALIBRATION_PNG, PR_CURVE_PNG, write_report_plots


def _image(path):
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def test_write_report_plots_writes_two_pictures_with_content(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    scores = np.clip(0.35 * y + 0.65 * rng.random(200), 0, 1)
    paths = write_report_plots(y, scores, 0.5, str(tmp_path / "plots"))
    assert [os.path.basename(p) for p in paths] == [PR_CURVE_PNG, CALIBRATION_PNG]
    for path in paths:
        img = _image(path)
        assert img.shape[0] >= 400 and img.shape[1] >= 500
        # A drawn chart, not a blank canvas: many distinct colours and dark ink.
        assert len(np.unique(img.reshape(-1, img.shape[-1])[:, :3], axis=0)) > 50
        assert (img[..., :3].mean(axis=-1) < 0.3).mean() > 0.005


def test_pictures_change_with_the_scores(tmp_path):
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    good = write_report_plots(y, [0.1, 0.2, 0.8, 0.9, 0.3, 0.7, 0.2, 0.95], 0.5, str(tmp_path / "good"))
    bad = write_report_plots(y, [0.9, 0.8, 0.2, 0.1, 0.7, 0.3, 0.8, 0.05], 0.5, str(tmp_path / "bad"))
    for a, b in zip(good, bad):
        assert not np.array_equal(_image(a), _image(b))


def test_one_class_still_draws_and_bad_input_is_refused(tmp_path):
    paths = write_report_plots([0, 0, 0], [0.1, 0.2, 0.7], 0.5, str(tmp_path))
    assert all(os.path.getsize(p) > 1000 for p in paths)
    with pytest.raises(ValueError):
        write_report_plots([0, 1], [0.5], 0.5, str(tmp_path))
    with pytest.raises(ValueError):
        write_report_plots([0, 1], [0.5, 1.5], 0.5, str(tmp_path))
    with pytest.raises(ValueError):
        write_report_plots([], [], 0.5, str(tmp_path))
    with pytest.raises(ValueError):
        write_report_plots([0, 2], [0.1, 0.2], 0.5, str(tmp_path))
