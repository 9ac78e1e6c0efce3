"""labkit.protocol.learning_curve: sizes, seeds, subsets and the long-table format plots read."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from labkit import metrics, plots, protocol  # noqa: E402


def _toy(n, seed, domain="amazon"):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    label = np.where(x > 0.4, 2, np.where(x < -0.4, 0, 1))
    return pd.DataFrame({"domain": domain, "x": x, "label": label})


def _threshold_fit(part):
    """A model that learns the two thresholds from its training rows (more rows, better thresholds)."""
    lo = part.loc[part.label == 1, "x"].min() if (part.label == 1).any() else -0.4
    hi = part.loc[part.label == 1, "x"].max() if (part.label == 1).any() else 0.4
    return lambda p: np.where(p.x > hi, 2, np.where(p.x < lo, 0, 1))


def test_learning_curve_sizes_seeds_and_whole_table_once():
    train, test = _toy(200, 0), _toy(300, 1)
    seen = []

    def fit(part):
        seen.append(len(part))
        return _threshold_fit(part)

    curve = protocol.learning_curve(fit, train, test, sizes=[64, 16, 1000, 200], seeds=range(3))
    assert list(curve.columns) == ["n", "seed", "f1"]
    # 16 and 64 with three seeds each; 200 and 1000 both mean "the whole table": run once, as n = 200
    assert curve.n.tolist() == [16] * 3 + [64] * 3 + [200]
    assert seen == [16] * 3 + [64] * 3 + [200]
    assert curve.f1.between(0, 1).all()
    means = curve.groupby("n").f1.mean()
    assert means[200] > means[16]
    assert curve[curve.n == 16].f1.nunique() > 1, "different seeds should draw different label subsets"


def test_learning_curve_subsets_are_stratified_and_reproducible():
    train, test = _toy(300, 2), _toy(100, 3)
    labels = []

    def fit(part):
        labels.append(sorted(part.label.unique()))
        return _threshold_fit(part)

    a = protocol.learning_curve(fit, train, test, sizes=[3, 12], seeds=[5, 6])
    b = protocol.learning_curve(_threshold_fit, train, test, sizes=[3, 12], seeds=[5, 6])
    assert all(found == [0, 1, 2] for found in labels), "even 3 labels cover the 3 classes"
    pd.testing.assert_frame_equal(a, b)


def test_learning_curve_table_plots_with_error_bands():
    train, test = _toy(120, 4), _toy(120, 5)
    curve = protocol.learning_curve(_threshold_fit, train, test, sizes=[16, 32, None], seeds=range(4))
    assert curve.n.max() == 120 and (curve.n == 120).sum() == 1  # None = all 120 rows, once
    ax = plots.learning_curves(curve.assign(method="thresholds"))
    assert len(ax.lines) == 1 and len(ax.collections) == 1  # the mean line and its ± 1 sd band
    plt.close("all")


def test_learning_curve_bad_input():
    train, test = _toy(50, 0), _toy(50, 1)
    with pytest.raises(ValueError, match="at least one size"):
        protocol.learning_curve(_threshold_fit, train, test, sizes=[])
    with pytest.raises(ValueError, match="'domain' and 'label'"):
        protocol.learning_curve(_threshold_fit, train.drop(columns="domain"), test, sizes=[8])
    with pytest.raises(ValueError, match="n >= 3"):
        protocol.learning_curve(_threshold_fit, train, test, sizes=[2])


def test_transfer_gap_by_hand():
    m = pd.DataFrame([[0.8, 0.5], [0.4, 0.6]])
    gap = protocol.transfer_gap(m)
    assert gap["in-domain (diagonal)"] == pytest.approx(0.7)
    assert gap["cross-domain (off-diagonal)"] == pytest.approx(0.45)
    assert gap["drop"] == pytest.approx(0.25) and gap["relative drop (%)"] == pytest.approx(100 * 0.25 / 0.7)
    with pytest.raises(ValueError, match="square"):
        protocol.transfer_gap(pd.DataFrame([[0.5, 0.4, 0.3]]))
