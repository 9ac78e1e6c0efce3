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


def test_resampled_f1_equals_weighted_f1_on_every_resample():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    p = np.where(rng.random(300) < 0.7, y, rng.integers(0, 3, 300))
    counts = metrics.bootstrap_counts(300, 30, seed=2)
    fast = metrics.resampled_f1(y, p, counts, 3)
    for row, got in zip(counts.astype(int), fast):
        want = f1_score(np.repeat(y, row), np.repeat(p, row), average="weighted", zero_division=0)
        assert got == pytest.approx(want, abs=1e-12)


def _noisy(y, accuracy, seed):
    rng = np.random.default_rng(seed)
    return np.where(rng.random(len(y)) < accuracy, y, rng.integers(0, 3, len(y)))


def test_compare_says_better_only_when_the_interval_excludes_zero():
    rng = np.random.default_rng(0)
    y_test, y_train = rng.integers(0, 3, 400), np.r_[np.zeros(50, int), np.ones(30, int), np.full(20, 2)]
    methods = {"good": lambda s: _noisy(y_test, 0.8, s), "same": lambda s: _noisy(y_test, 0.8, s + 100),
               "weak": lambda s: _noisy(y_test, 0.4, s)}
    result = protocol.compare(methods, y_test, y_train, seeds=[0, 1, 2])
    verdicts = result.differences["verdict"]
    assert verdicts[("good", "weak")] == "good better"
    assert verdicts[("same", "weak")] == "same better"
    assert verdicts[("good", "same")] == "no clear difference"
    low, high = result.differences.loc[("good", "same"), ["low", "high"]]
    assert low < 0 < high
    assert list(result.scores.columns) == [0, 1, 2]
    assert result.summary.loc["weak", "mean"] < result.summary.loc["good", "mean"] - 0.1
    assert result.majority == pytest.approx(metrics.weighted_f1(y_test, np.zeros(400, int)))
    assert "majority class" in str(result) and "good better" in str(result)


def test_compare_refuses_too_few_seeds_and_wrong_shapes():
    y = np.array([0, 1, 2, 1])
    with pytest.raises(ValueError, match="at least 3"):
        protocol.compare({"a": lambda s: y, "b": lambda s: y}, y, y, seeds=[0, 1])
    with pytest.raises(ValueError, match="returned"):
        protocol.compare({"a": lambda s: y, "b": lambda s: y[:3]}, y, y)
    with pytest.raises(ValueError, match="at least 100"):
        metrics.paired_bootstrap(y, [y], [y], n_boot=10)
