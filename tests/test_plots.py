"""labkit.plots draws labelled figures and returns Axes, without showing them."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from labkit import data, metrics, plots, protocol  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _labelled(ax):
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


def test_cross_domain_heatmap_annotates_every_cell():
    matrix = protocol.PAPER_TABLE5.iloc[[0, 4, 6, 10]].set_axis(list(data.DOMAINS), axis=0)
    ax = plots.cross_domain_heatmap(matrix, "paper NB")
    _labelled(ax)
    assert "trained on" in ax.get_ylabel() and "tested on" in ax.get_xlabel()
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 16 and "0.84" in texts
    assert len(ax.figure.axes) == 2  # the colour bar


def test_cross_domain_heatmap_shows_and_flags_the_majority_floor():
    matrix = protocol.PAPER_TABLE5.iloc[[0, 4, 6, 10]].set_axis(list(data.DOMAINS), axis=0)
    floor = matrix * 0 + 0.5
    floor.iloc[0, 1] = 0.99   # one cell that does not beat its majority line
    ax = plots.cross_domain_heatmap(matrix, "paper NB", majority=floor)
    assert "majority" in ax.get_title() and all("(" in t.get_text() for t in ax.texts)
    framed = [p for p in ax.patches if p.get_edgecolor()[:3] == (1.0, 0.0, 0.0)]
    assert len(framed) == int((matrix.to_numpy() <= floor.to_numpy()).sum()) >= 1
    with pytest.raises(ValueError, match="majority"):
        plots.cross_domain_heatmap(matrix, "x", majority=floor.iloc[:2])


def test_learning_curves_from_dict_and_table():
    curves = {"tf-idf": {16: [0.4, 0.5], 64: [0.55, 0.6]}, "minilm": {16: [0.6], 64: [0.7]}}
    ax = plots.learning_curves(curves)
    _labelled(ax)
    assert ax.get_xscale() == "log" and len(ax.lines) == 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "64"]  # the sizes run, not 10^k
    assert len(ax.xaxis.get_minorticklocs()) == 0
    table = pd.DataFrame({"n": [16, 16, 64], "f1": [0.4, 0.5, 0.6], "method": ["a"] * 3})
    ax = plots.learning_curves(table, logx=False, majority=0.3)
    assert "majority class" in [h.get_label() for h in ax.get_lines()]
    assert np.allclose(ax.lines[0].get_ydata(), [0.45, 0.6])
    with pytest.raises(ValueError, match="column"):
        plots.learning_curves(table.drop(columns="f1"))


def test_confusion_counts():
    ax = plots.confusion([0, 1, 2, 2], [0, 2, 2, 2])
    _labelled(ax)
    assert ax.texts[8].get_text().startswith("2")  # true positive, predicted positive
    with pytest.raises(ValueError):
        plots.confusion([0, 1], [0])


def test_label_balance():
    toy = pd.DataFrame({"domain": ["movie", "movie", "tweets", "tweets"], "label": [0, 2, 1, 1]})
    ax = plots.label_balance(toy)
    _labelled(ax)
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 6 and pytest.approx(sum(heights)) == 200
