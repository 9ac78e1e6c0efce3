"""labkit.ensemble and labkit.calibration (lesson 11): combiners, diversity, ECE and temperature scaling."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from labkit import calibration, ensemble, plots

P1 = np.array([[0.7, 0.1, 0.2], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
P2 = np.array([[0.3, 0.1, 0.6], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2]])


def test_soft_vote_is_the_weighted_mean():
    np.testing.assert_allclose(ensemble.soft_vote([P1, P2]), (P1 + P2) / 2)
    np.testing.assert_allclose(ensemble.soft_vote([P1, P2], [3, 1]), 0.75 * P1 + 0.25 * P2)   # normalised weights
    np.testing.assert_allclose(ensemble.soft_vote([P1, P2], [1, 0]), P1)


def test_hard_vote_majority_and_ties():
    a, b, c = np.array([0, 1, 2, 2]), np.array([0, 2, 1, 2]), np.array([1, 2, 0, 0])
    # row 0: 0,0,1 -> 0; row 1: 1,2,2 -> 2; row 2: three-way tie -> the first member's 2; row 3: 2,2,0 -> 2
    np.testing.assert_array_equal(ensemble.hard_vote([a, b, c]), [0, 2, 2, 2])
    np.testing.assert_array_equal(ensemble.hard_vote([c, a, b]), [0, 2, 0, 2])      # the tie follows the order
    np.testing.assert_array_equal(ensemble.hard_vote([a, b, c], weights=[1, 1, 3]), c)  # a heavy member wins


def test_simplex_weights_drop_a_useless_member():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    good = np.full((300, 3), 0.1)
    good[np.arange(300), y] = 0.8
    noise = rng.dirichlet(np.ones(3), 300)
    w = ensemble.simplex_weights([noise, good], y, step=0.1)
    np.testing.assert_allclose(w, [0.0, 1.0])
    assert np.isclose(w.sum(), 1)
    with pytest.raises(ValueError, match="step"):
        ensemble.simplex_weights([noise, good], y, step=0.3)


def test_out_of_fold_and_stacking_match_sklearn():
    from sklearn.ensemble import StackingClassifier
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    views = [X[:, :2], X[:, 2:]]
    oof = [ensemble.out_of_fold_proba(LogisticRegression(), v, y, folds=5, seed=0) for v in views]
    assert all(p.shape == (120, 3) and np.allclose(p.sum(1), 1) for p in oof)
    meta = ensemble.fit_stacker(oof, y)
    fitted = [LogisticRegression().fit(v, y) for v in views]
    ours = ensemble.stack(meta, [m.predict_proba(v) for m, v in zip(fitted, views)])
    # the same with scikit-learn's StackingClassifier (each member sees its own columns)
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    member = lambda cols: make_pipeline(ColumnTransformer([("x", "passthrough", cols)]), LogisticRegression())
    theirs = StackingClassifier([("a", member([0, 1])), ("b", member([2, 3]))],
                                final_estimator=LogisticRegression(max_iter=2000),
                                cv=StratifiedKFold(5, shuffle=True, random_state=0), stack_method="predict_proba")
    np.testing.assert_allclose(ours, theirs.fit(X, y).predict_proba(X), atol=1e-4)


def test_out_of_fold_folds_shrink_to_the_rarest_class():
    X, y = np.arange(12.0).reshape(-1, 1), np.array([0] * 5 + [1] * 5 + [2] * 2)
    assert ensemble.out_of_fold_proba(LogisticRegression(), X, y, folds=5).shape == (12, 3)
    with pytest.raises(ValueError, match="at least 2"):
        ensemble.out_of_fold_proba(LogisticRegression(), X[:11], y[:11])


def test_error_correlation_and_disagreement():
    y = np.array([0, 1, 2, 0, 1, 2])
    a = np.array([0, 1, 2, 1, 1, 0])       # wrong on 3 and 5
    b = a.copy()                           # the same mistakes
    c = np.array([1, 0, 2, 0, 1, 2])       # wrong on 0 and 1 only
    R = ensemble.error_correlation([a, b, c], y)
    assert np.isclose(R[0, 1], 1) and R[0, 2] < 0 and np.allclose(R, R.T)
    assert np.isnan(ensemble.error_correlation([a, y], y)[0, 1])   # a member that is never wrong
    D = ensemble.disagreement([a, b, c])
    assert D[0, 1] == 0 and np.isclose(D[0, 2], 4 / 6) and np.all(np.diag(D) == 0)


def test_ece_matches_the_formula_by_hand():
    P = np.array([[0.88, 0.07, 0.05], [0.62, 0.28, 0.1], [0.18, 0.72, 0.1], [0.35, 0.33, 0.32]])
    y = np.array([0, 1, 1, 2])
    # bins: 0.88 -> (0.8, 0.9], right; 0.62 -> (0.6, 0.7], wrong; 0.72 -> (0.7, 0.8], right; 0.35 -> (0.3, 0.4], wrong
    want = (abs(1 - 0.88) + abs(0 - 0.62) + abs(1 - 0.72) + abs(0 - 0.35)) / 4
    assert np.isclose(calibration.expected_calibration_error(P, y), want)
    table = calibration.reliability(P, y)
    assert table["count"].sum() == 4 and table.loc[8, "accuracy"] == 1.0
    assert np.isclose(calibration.expected_calibration_error(P, y, n_bins=1), abs(0.5 - P.max(1).mean()))


def test_ece_is_zero_when_confidence_equals_accuracy():
    P = np.tile([0.75, 0.25, 0.0], (8, 1))
    y = np.array([0, 0, 0, 1, 0, 0, 0, 1])                 # 6 of 8 right at confidence 0.75
    assert calibration.expected_calibration_error(P, y) == pytest.approx(0.0)


def test_temperature_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    Z = rng.normal(scale=3, size=(4000, 3))
    true_T = 2.5
    y = np.array([rng.choice(3, p=p) for p in calibration.temperature_scale(Z, true_T)])
    T = calibration.fit_temperature(Z, y)
    assert abs(T - true_T) < 0.25
    scaled = calibration.temperature_scale(Z, T)
    np.testing.assert_array_equal(scaled.argmax(1), Z.argmax(1))               # the class never changes
    assert calibration.nll(scaled, y) < calibration.nll(calibration.temperature_scale(Z, 1.0), y)
    assert calibration.expected_calibration_error(scaled, y) < calibration.expected_calibration_error(
        calibration.temperature_scale(Z, 1.0), y)


def test_log_probabilities_work_as_logits():
    P = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(calibration.temperature_scale(np.log(P), 1.0), P)
    np.testing.assert_allclose(calibration.temperature_scale(np.log(P), 2.0),
                               np.sqrt(P) / np.sqrt(P).sum(1, keepdims=True))


def test_ece_difference_interval():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    good = np.full((400, 3), 0.2)
    good[np.arange(400), y] = 0.6                             # right, with confidence 0.6: ECE 0.4
    diff, low, high = calibration.ece_difference(y, [good, good], [good, good])
    assert diff == low == high == 0
    sharp = calibration.temperature_scale(np.log(good), 0.2)
    diff, low, high = calibration.ece_difference(y, sharp, good)     # sharper and always right: better
    assert diff < 0 and high < 0 and low - 1e-9 <= diff <= high + 1e-9


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="sum to 1"):
        ensemble.soft_vote([P1, P2 * 2])
    with pytest.raises(ValueError, match="same sentences"):
        ensemble.soft_vote([P1, P2[:2]])
    with pytest.raises(ValueError, match="none"):
        ensemble.soft_vote([])
    with pytest.raises(ValueError, match="negative"):
        calibration.expected_calibration_error(np.array([[1.5, -0.5, 0.0]]), [0])
    with pytest.raises(ValueError, match="2 weights|weights"):
        ensemble.soft_vote([P1, P2], [1, 2, 3])
    with pytest.raises(ValueError, match="class ids"):
        ensemble.hard_vote([np.array([0, 3])])
    with pytest.raises(ValueError, match="labels of shape"):
        calibration.expected_calibration_error(P1, [0, 1])
    with pytest.raises(ValueError, match="positive"):
        calibration.temperature_scale(np.zeros((2, 3)), 0.0)
    with pytest.raises(ValueError, match="n_bins"):
        calibration.expected_calibration_error(P1, [0, 1, 2], n_bins=0)
    with pytest.raises(ValueError, match="2-D"):
        calibration.reliability(np.array([0.5, 0.5]), [0])
    with pytest.raises(ValueError, match="columns"):
        ensemble.stack(ensemble.fit_stacker([P1, P2], [0, 2, 1]), [P1])


def test_reliability_diagram_draws_before_and_after():
    rng = np.random.default_rng(0)
    Z = rng.normal(scale=3, size=(300, 3))
    y = Z.argmax(1)
    ax = plots.reliability_diagram(calibration.temperature_scale(Z, 1.0), y, label="before")
    plots.reliability_diagram(calibration.temperature_scale(Z, 0.5), y, ax=ax, label="after", color="C1")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum(l.startswith("calibrated") for l in labels) == 1 and any("ECE" in l for l in labels)
    assert "confidence" in ax.get_xlabel()
    # one size scale for both calls: the dot area is 400 × count / size_ref
    ax = plots.reliability_diagram(calibration.temperature_scale(Z, 1.0), y, size_ref=300)
    plots.reliability_diagram(calibration.temperature_scale(Z, 0.5), y, ax=ax, color="C1", size_ref=300)
    sizes = np.concatenate([c.get_sizes() for c in ax.collections])
    assert sizes.max() <= 400 and np.isclose(sizes.sum(), 2 * 400)

