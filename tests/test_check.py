"""labkit.check.answer: references live in labkit, a wrong answer fails with feedback, an unknown id is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from labkit import check, metrics


def test_bootstrap_interval_reference_accepts_a_hand_computed_interval_and_rejects_an_unpaired_one():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 400)
    a = np.where(rng.random(400) < 0.8, y, rng.integers(0, 3, 400))
    b = np.where(rng.random(400) < 0.8, a, rng.integers(0, 3, 400))  # B mostly agrees with A: pairing matters
    draws = np.random.default_rng(0)
    paired, unpaired = [], []
    for _ in range(1000):
        i, j = draws.integers(0, 400, 400), draws.integers(0, 400, 400)
        paired.append(metrics.weighted_f1(y[i], a[i]) - metrics.weighted_f1(y[i], b[i]))
        unpaired.append(metrics.weighted_f1(y[i], a[i]) - metrics.weighted_f1(y[j], b[j]))
    low, high = np.percentile(paired, [2.5, 97.5])
    check.answer("01.3", (low, high, "A better"), y_true=y, pred_a=a, pred_b=b)
    with pytest.raises(check.ExerciseFailed, match="verdict"):
        check.answer("01.3", (low, high, "no clear difference"), y_true=y, pred_a=a, pred_b=b)
    wide_low, wide_high = np.percentile(unpaired, [2.5, 97.5])
    assert wide_high - wide_low > high - low
    with pytest.raises(check.ExerciseFailed, match="not the paired"):
        check.answer("01.3", (wide_low, wide_high, "A better"), y_true=y, pred_a=a, pred_b=b)


def test_neutral_share_and_unknown_exercise():
    test = pd.DataFrame({"domain": ["nyt", "nyt", "nyt", "movie"], "label": [1, 0, 1, 1]})
    check.answer("00.2", 2 / 3, test=test)
    with pytest.raises(check.ExerciseFailed):
        check.answer("00.2", 0.75, test=test)
    with pytest.raises(ValueError, match="no reference answer"):
        check.answer("99.9", 1)
