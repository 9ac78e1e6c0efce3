"""The course's recurring plots, each labelled with units. Taught in lessons 00, 01 and 03.

Every function draws on ``ax`` (a new figure when ``ax`` is None), returns the Axes and never calls
``plt.show()``: in Jupyter the figure is shown when the cell ends.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullLocator
from sklearn.metrics import confusion_matrix

from labkit.data import DOMAINS, LABELS


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _need_columns(df: pd.DataFrame, columns: Sequence[str], who: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{who}: the table has no column(s) {missing}; its columns are {list(df.columns)}")


def cross_domain_heatmap(matrix: pd.DataFrame, title: str, ax: Axes | None = None,
                         vmin: float = 0.0, vmax: float = 1.0, cmap: str = "viridis",
                         majority: pd.DataFrame | None = None) -> Axes:
    """Heatmap of a cross-domain F1 matrix: rows "trained on", columns "tested on", cells annotated.

    ``majority`` (a matrix of the same domains, e.g. ``protocol.cross_domain_f1`` of
    ``baselines.majority_class``) adds each cell's majority-class F1 in brackets under its value, and
    frames in red every cell that does not beat it. Taught in lesson 01 (and reused in lessons 03 and 06).
    """
    if matrix.empty:
        raise ValueError("cross_domain_heatmap got an empty matrix; build one with protocol.cross_domain_f1")
    values = matrix.to_numpy(dtype=float)
    floor = None
    if majority is not None:
        floor = majority.reindex(index=matrix.index, columns=matrix.columns).to_numpy(dtype=float)
        if np.isnan(floor).any():
            raise ValueError("majority must cover every cell of the matrix (the same domains as rows and columns)")
    ax = _axes(ax, (4.6, 3.8))
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(values.shape[1]), [str(c) for c in matrix.columns])
    ax.set_yticks(range(values.shape[0]), [str(r) for r in matrix.index])
    mid = (vmin + vmax) / 2
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isfinite(values[i, j]):
                continue
            text = f"{values[i, j]:.2f}" if floor is None else f"{values[i, j]:.2f}\n({floor[i, j]:.2f})"
            ax.text(j, i, text, ha="center", va="center", color="black" if values[i, j] > mid else "white",
                    fontsize=9 if floor is None else 8)
            if floor is not None and values[i, j] <= floor[i, j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xlabel("tested on (domain)")
    ax.set_ylabel("trained on (domain)")
    ax.set_title(title if floor is None else f"{title}\n(majority class in brackets)", fontsize=10)
    ax.figure.colorbar(image, ax=ax, label="weighted F1 (0–1)")
    return ax


def _long_table(results: pd.DataFrame | Mapping, x: str, y: str, hue: str) -> pd.DataFrame:
    """``{method: {x_value: score or [scores]}}`` or a long table -> columns ``x, y, hue``."""
    if isinstance(results, pd.DataFrame):
        _need_columns(results, [x, y, hue], "learning_curves")
        return results[[x, y, hue]]
    rows = []
    for method, curve in results.items():
        if isinstance(curve, pd.DataFrame):
            _need_columns(curve, [x, y], "learning_curves")
            rows += [(xv, yv, method) for xv, yv in zip(curve[x], curve[y])]
            continue
        for xv, scores in dict(curve).items():
            rows += [(xv, float(s), method) for s in np.atleast_1d(scores)]
    if not rows:
        raise ValueError("learning_curves got no results; pass {method: {n_labels: [scores]}}")
    return pd.DataFrame(rows, columns=[x, y, hue])


def learning_curves(results: pd.DataFrame | Mapping, x: str = "n", y: str = "f1",
                    hue: str = "method", ax: Axes | None = None, logx: bool = True,
                    xlabel: str = "labelled training sentences (count)",
                    ylabel: str = "weighted F1 (0–1)", title: str = "Learning curves",
                    majority: float | None = None) -> Axes:
    """Score against training-set size, one line per method: the mean over repeats (seeds) with a
    band of ± one standard deviation; ``majority`` draws the majority-class F1 as a dashed floor.

    ``results`` is a long table with columns ``x``, ``y``, ``hue`` (one row per run), or a dict
    ``{method: {n: [scores over seeds]}}``. Taught in lesson 03.
    """
    table = _long_table(results, x, y, hue)
    ax = _axes(ax, (6.0, 3.8))
    for method, part in table.groupby(hue, sort=False):
        stats = part.groupby(x)[y].agg(["mean", "std"]).sort_index()
        xs, mean, spread = stats.index.to_numpy(float), stats["mean"], stats["std"].fillna(0.0)
        line, = ax.plot(xs, mean, marker="o", label=str(method))
        ax.fill_between(xs, mean - spread, mean + spread, color=line.get_color(), alpha=0.2)
    if majority is not None:
        ax.axhline(majority, color="gray", linestyle="--", linewidth=1, label="majority class")
    if logx:  # label the sizes that were run (log-scale minor labels such as 2x10^1 overlap)
        ax.set_xscale("log")
        sizes = np.unique(table[x].to_numpy(float))
        ax.set_xticks(sizes, [f"{v:g}" for v in sizes], fontsize=8, rotation=45 if len(sizes) > 7 else 0)
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(xlabel + (" — log scale" if logx else ""))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def confusion(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str] = LABELS,
              ax: Axes | None = None, title: str = "Confusion matrix") -> Axes:
    """Confusion matrix as counts, each cell also showing its share of the true class (row %).

    Taught in lesson 01.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"confusion needs two equal, non-empty label vectors; got {y_true.shape} "
                         f"and {y_pred.shape}")
    counts = confusion_matrix(y_true, y_pred, labels=list(range(len(labels))))
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax = _axes(ax, (4.2, 3.6))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, f"{counts[i, j]}\n{shares[i, j]:.0%}", ha="center", va="center",
                    color="white" if shares[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, label="share of the true class (0–1)")
    return ax


def label_balance(df: pd.DataFrame, labels: Sequence[str] = LABELS, ax: Axes | None = None,
                  title: str = "Label balance per domain") -> Axes:
    """Stacked bars: the share of each class in each domain, in percent. Taught in lesson 00."""
    _need_columns(df, ["domain", "label"], "label_balance")
    order = [d for d in DOMAINS if d in set(df["domain"])] or sorted(df["domain"].unique())
    shares = (pd.crosstab(df["domain"], df["label"], normalize="index")
              .reindex(index=order, columns=range(len(labels)), fill_value=0.0) * 100)
    ax = _axes(ax, (6.0, 3.6))
    bottom = np.zeros(len(order))
    for k, name in enumerate(labels):
        ax.bar(order, shares[k], bottom=bottom, label=name)
        bottom += shares[k].to_numpy()
    ax.set_xlabel("domain")
    ax.set_ylabel("share of sentences (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def reliability_diagram(P: np.ndarray, y: Sequence[int], n_bins: int = 10, ax: Axes | None = None,
                        label: str = "model", color: str = "C0", title: str = "Reliability diagram",
                        size_ref: float | None = None) -> Axes:
    """Reliability diagram: for each equal-width confidence bin, the share of its sentences predicted right
    against their mean confidence (one dot per non-empty bin, its area proportional to the bin's count),
    beside the diagonal ``accuracy = confidence`` of a calibrated model; below the diagonal is overconfident.
    The legend gives the expected calibration error (``labkit.calibration``). Call it twice on one Axes to
    draw a model before and after calibration, with the same ``size_ref`` (the bin count drawn at the largest
    size; default: this call's largest bin) so that the two calls' dot areas are on one scale. Taught in lesson 11.
    """
    from labkit.calibration import expected_calibration_error, reliability

    table = reliability(P, y, n_bins)
    full = table[table["count"] > 0]
    ece = expected_calibration_error(P, y, n_bins)
    ax = _axes(ax, (4.5, 4.2))
    if not any(line.get_label().startswith("calibrated") for line in ax.lines):
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="calibrated (accuracy = confidence)")
    ax.plot(full["confidence"], full["accuracy"], "-", color=color, lw=1.5)
    ref = full["count"].max() if size_ref is None else size_ref
    if ref <= 0:
        raise ValueError(f"size_ref must be positive, got {size_ref}")
    ax.scatter(full["confidence"], full["accuracy"], s=400 * full["count"] / ref, color=color,
               alpha=0.6, label=f"{label} (ECE {ece:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence in the bin (top predicted probability, 0–1)")
    ax.set_ylabel("share predicted right in the bin (0–1)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", markerscale=0.5)
    return ax
