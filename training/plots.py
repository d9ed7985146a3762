"""Pictures of a model's page scores: a precision-recall curve and a calibration plot (PNG).

``write_report_plots(y, scores, threshold, out_dir)`` is what the training and
evaluation reports call; ``regenwatch review --html`` embeds the files when it
finds them in the run's output directory (or ``--plots DIR``).

matplotlib is used through its object-oriented API (``Figure`` with the Agg
canvas): no pyplot global state and no GUI backend, so it is safe in a
headless CI, in threads and in a long-lived process.
"""
from __future__ import annotations

import os
from typing import List, Sequence

import numpy as np

PR_CURVE_PNG = "pr_curve.png"
CALIBRATION_PNG = "calibration.png"
PLOT_FILES = (PR_CURVE_PNG, CALIBRATION_PNG)
CALIBRATION_BINS = 10  # the bins of training.metrics.expected_calibration_error


def _figure(width: float = 6.0, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _check(y, scores, threshold):
    y = np.asarray(y, dtype=int)
    scores = np.asarray(scores, dtype=float)
    if y.ndim != 1 or y.shape != scores.shape:
        raise ValueError(f"y and scores must be 1-D of equal length, got {y.shape} and {scores.shape}")
    if not len(y):
        raise ValueError("no pages to plot")
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError("y must hold 0/1 labels")
    if not np.all(np.isfinite(scores)) or scores.min() < 0 or scores.max() > 1:
        raise ValueError("scores must be probabilities in [0, 1]")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be within [0, 1], got {threshold}")
    return y, scores, float(threshold)


def plot_pr_curve(y, scores, threshold: float, path: str) -> str:
    """Precision against recall over all thresholds, with the operating point marked."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y, scores, threshold = _check(y, scores, threshold)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    if 0 < y.sum() < len(y):
        precision, recall, _ = precision_recall_curve(y, scores)
        ax.step(recall, precision, where="post", color="#1f5fa8", label="model")
        ax.axhline(y.mean(), color="#999999", linestyle=":", label=f"base rate {y.mean():.2f}")
        pred = scores >= threshold
        tp = int((pred & (y == 1)).sum())
        op_p = tp / pred.sum() if pred.sum() else 1.0
        op_r = tp / y.sum()
        ax.plot([op_r], [op_p], "o", color="#c0392b",
                label=f"threshold {threshold:.3f}: P {op_p:.2f} R {op_r:.2f}")
        ax.set_title(f"Precision-recall (AP {average_precision_score(y, scores):.3f}, {len(y)} pages)")
        ax.legend(loc="lower left", fontsize=8)
    else:
        # One class only: there is no curve to draw; say so on the picture.
        ax.text(0.5, 0.5, f"only one class in {len(y)} pages:\nno precision-recall curve",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Precision-recall")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_calibration(y, scores, threshold: float, path: str, bins: int = CALIBRATION_BINS) -> str:
    """Reliability diagram (share of positives per score bin) above a score histogram."""
    from regenwatch.training.metrics import expected_calibration_error

    y, scores, threshold = _check(y, scores, threshold)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(idx, minlength=bins)
    filled = counts > 0
    mean_score = np.bincount(idx, weights=scores, minlength=bins)[filled] / counts[filled]
    frac_pos = np.bincount(idx, weights=y, minlength=bins)[filled] / counts[filled]

    fig = _figure(6.0, 6.0)
    top = fig.add_axes((0.12, 0.38, 0.83, 0.55))
    bottom = fig.add_axes((0.12, 0.08, 0.83, 0.2), sharex=top)
    top.plot([0, 1], [0, 1], linestyle=":", color="#999999", label="perfectly calibrated")
    top.plot(mean_score, frac_pos, "o-", color="#1f5fa8", label="model")
    top.axvline(threshold, color="#c0392b", linestyle="--", linewidth=1, label=f"threshold {threshold:.3f}")
    top.set_ylabel("share of positive pages")
    top.set_ylim(-0.02, 1.02)
    top.set_title(f"Calibration (ECE {expected_calibration_error(y, scores, bins):.3f}, {len(y)} pages)")
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.bar(edges[:-1], counts, width=1.0 / bins, align="edge", color="#8fb3de", edgecolor="#1f5fa8")
    bottom.set_xlabel("page score")
    bottom.set_ylabel("pages")
    bottom.set_xlim(0, 1)
    fig.savefig(path, format="png")
    return path


def write_report_plots(y: Sequence[int], scores: Sequence[float], threshold: float, out_dir: str) -> List[str]:
    """Write pr_curve.png and calibration.png into out_dir; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    return [
        plot_pr_curve(y, scores, threshold, os.path.join(out_dir, PR_CURVE_PNG)),
        plot_calibration(y, scores, threshold, os.path.join(out_dir, CALIBRATION_PNG)),
    ]
