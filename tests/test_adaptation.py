"""labkit.adaptation: CORAL and prior re-estimation by EM (lesson 07)."""

import numpy as np
import pytest

from labkit import adaptation


def test_coral_gives_the_source_the_target_covariance():
    rng = np.random.default_rng(0)
    Xs = rng.normal(size=(400, 3)) @ np.diag([1.0, 2.0, 0.5])
    Xt = rng.normal(size=(500, 3)) @ np.array([[1.0, 0.5, 0], [0, 1.0, 0], [0, 0, 3.0]]) + 4.0
    out = adaptation.coral(Xs, Xt, eps=1e-9)
    np.testing.assert_allclose(np.cov(out, rowvar=False), np.cov(Xt, rowvar=False), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.cov(Xs, rowvar=False), np.cov(Xt, rowvar=False), atol=0.5)   # it did change
    with pytest.raises(ValueError, match="same width"):
        adaptation.coral(Xs, Xt[:, :2])


def test_em_recovers_shifted_priors_of_a_calibrated_classifier():
    """Two well-separated classes, exact Bayes posteriors: EM finds the target's class shares."""
    rng = np.random.default_rng(1)
    source_priors = np.array([0.5, 0.5])
    y = rng.random(20000) < 0.2                      # the target: 20% class 1
    x = rng.normal(loc=np.where(y, 1.5, -1.5))
    like = np.stack([np.exp(-(x + 1.5) ** 2 / 2), np.exp(-(x - 1.5) ** 2 / 2)], axis=1)
    P = like * source_priors / (like * source_priors).sum(1, keepdims=True)
    est = adaptation.em_priors(P, source_priors)
    assert abs(est[1] - y.mean()) < 0.01
    adjusted = adaptation.adjust_priors(P, source_priors, est)
    assert (adjusted.argmax(1) == y).mean() > (P.argmax(1) == y).mean()   # fewer errors after the correction


def test_adjust_priors_refuses_bad_shapes_and_empty_classes():
    P = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match="prior vectors"):
        adaptation.adjust_priors(P, np.ones(2) / 2, np.ones(2) / 2)
    with pytest.raises(ValueError, match="> 0"):
        adaptation.adjust_priors(P, np.array([0.5, 0.5, 0.0]), np.ones(3) / 3)
