"""Automatic checks for the exercises: specific, friendly feedback. Taught in every lesson.

An exercise is one code cell: the student's code between ``### BEGIN SOLUTION`` and
``### END SOLUTION``, followed by a call such as::

    check.close("02.1", grad, expected, what="dL/dz of the softmax head",
                hint="softmax(z) - onehot(y), averaged over the batch")

A passing check prints a line starting with ``✔``; a failing one raises :class:`ExerciseFailed`
whose message says what was expected, what was got, and a hint. When ``$LABKIT_GRADE_FILE`` is set
(the grader sets it) every result is also appended to that file as one JSON line.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np


class ExerciseFailed(AssertionError):
    """Raised by a failing check; the message is the feedback for the student."""


def _record(exercise: str, passed: bool, feedback: str) -> None:
    path = os.environ.get("LABKIT_GRADE_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as fh:  # one short line per call: append is enough
            fh.write(json.dumps({"exercise": exercise, "passed": passed, "feedback": feedback}) + "\n")


def report(exercise: str, passed: bool, feedback: str, hint: str = "") -> None:
    """Print ``✔ [exercise] feedback`` or raise ``ExerciseFailed`` with the feedback and hint."""
    _record(exercise, passed, feedback)
    if passed:
        print(f"✔ [{exercise}] {feedback}")
        return
    message = f"✘ [{exercise}] {feedback}" + (f"\n  hint: {hint}" if hint else "")
    raise ExerciseFailed(message)


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=float)


def close(exercise: str, got: Any, expected: Any, what: str, rtol: float = 1e-5,
          atol: float = 1e-8, hint: str = "") -> None:
    """Pass when ``got`` matches ``expected`` (same shape, ``|got - expected| <= atol + rtol|expected|``)."""
    if got is None:
        return report(exercise, False, f"{what}: got None -- did you assign your result?", hint)
    try:
        g, e = _as_array(got), _as_array(expected)
    except (TypeError, ValueError):
        return report(exercise, False, f"{what}: expected a number or array, got {type(got).__name__}", hint)
    if g.shape != e.shape:
        return report(exercise, False, f"{what}: expected shape {e.shape}, got shape {g.shape}", hint)
    if np.allclose(g, e, rtol=rtol, atol=atol):
        shown = f"{float(g):.6g} matches" if g.size == 1 else f"all {g.size} values match"
        return report(exercise, True, f"{what}: {shown} the reference -- correct")
    worst = float(np.max(np.abs(g - e)))
    if g.size == 1:
        return report(exercise, False, f"{what}: expected {float(e):.6g}, got {float(g):.6g}", hint)
    return report(exercise, False, f"{what}: differs from the reference by up to {worst:.3g}", hint)


def equal(exercise: str, got: Any, expected: Any, what: str, hint: str = "") -> None:
    """Pass when ``got == expected`` (for ints, strings, sets, tuples)."""
    if got == expected:
        shown = f"{got:,}" if isinstance(got, int) and not isinstance(got, bool) else repr(got)
        return report(exercise, True, f"{what} is {shown} -- correct")
    return report(exercise, False, f"{what}: expected {expected!r}, got {got!r}", hint)


def at_least(exercise: str, got: float, minimum: float, what: str, hint: str = "") -> None:
    """Pass when a measured score reaches ``minimum`` (for "train a model that beats X")."""
    if got is None:
        return report(exercise, False, f"{what}: got None -- did you assign your result?", hint)
    if float(got) >= minimum:
        return report(exercise, True, f"{what} = {float(got):.3f} reaches {minimum:.3f} -- well done")
    return report(exercise, False, f"{what} = {float(got):.3f}, needs at least {minimum:.3f}", hint)


def choice(exercise: str, got: Any, valid: set | list | tuple, what: str, hint: str = "") -> None:
    """Pass when ``got`` is one of the accepted answers (for "pick a method and justify it")."""
    if got in valid:
        return report(exercise, True, f"{what}: {got!r} is a good answer")
    return report(exercise, False, f"{what}: {got!r} is not the best answer", hint)


# --------------------------------------------------------------------------- reference answers
# Exercises whose answer is computed from the student's own inputs keep the reference here, out of
# the notebook: a check cell shows the question and the call, not the answer.
def _ref_00_2(test) -> float:
    return float((test.loc[test["domain"] == "nyt", "label"] == 1).mean())


def _ref_01_3(y_true, pred_a, pred_b) -> tuple[float, float, str]:
    from labkit.metrics import paired_bootstrap

    _, low, high = paired_bootstrap(y_true, [pred_a], [pred_b], n_boot=2000, seed=12345)
    return low, high, "A better" if low > 0 else "B better" if high < 0 else "no clear difference"


def _ref_03_3(matrices) -> tuple[dict, str]:
    means = {name: float(np.asarray(m)[~np.eye(len(m), dtype=bool)].mean()) for name, m in matrices.items()}
    return means, max(means, key=means.get)


def _ref_04_2(H_train, y_train) -> list[float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
    return [float(cross_val_score(probe, H_train[k], y_train, cv=5, scoring="f1_weighted").mean())
            for k in range(len(H_train))]


def _ref_04_2_test(layer, H_train, y_train, H_test, y_test) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from labkit.metrics import weighted_f1

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500)).fit(H_train[layer], y_train)
    return weighted_f1(y_test, probe.predict(H_test[layer]))


def _logistic(X, y):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000).fit(X, y)


def _ref_05_5(X_old_train, X_new_train, X_new_test, y_train, y_test) -> tuple[float, float]:
    from labkit.metrics import weighted_f1

    drift = weighted_f1(y_test, _logistic(X_old_train, y_train).predict(X_new_test))
    return drift, weighted_f1(y_test, _logistic(X_new_train, y_train).predict(X_new_test))


def _ref_05_6(X_source, y_source, X_target, y_target, X_test, y_test) -> tuple[float, float]:
    from labkit.metrics import weighted_f1

    pooled = _logistic(np.concatenate([X_source, X_target]), np.concatenate([y_source, y_target]))
    return weighted_f1(y_test, pooled.predict(X_test)), weighted_f1(y_test, _logistic(X_target, y_target).predict(X_test))


def _ref_06_1(X_source, y_source, X_target, y_target, X_test, y_test) -> tuple[float, float]:
    from labkit.metrics import weighted_f1
    from labkit.transfer import fit_head

    source = fit_head(X_source, y_source, lam=0.1)
    return (weighted_f1(y_test, fit_head(X_target, y_target, prior=source, lam=1.0).predict(X_test)),
            weighted_f1(y_test, fit_head(X_target, y_target, lam=1.0).predict(X_test)))


def _ref_06_2(X_source, y_source, X_test, y_test) -> float:
    from labkit.metrics import weighted_f1
    from labkit.transfer import fit_head

    return weighted_f1(y_test, fit_head(X_source, y_source, lam=0.1).predict(X_test))


def _ref_07_1(Z_source, Z_target) -> np.ndarray:
    from scipy.linalg import sqrtm

    eye = np.eye(Z_source.shape[1])
    whiten = np.linalg.inv(np.real(sqrtm(np.cov(Z_source, rowvar=False) + eye)))
    return Z_source @ whiten @ np.real(sqrtm(np.cov(Z_target, rowvar=False) + eye))


def _ref_07_3(logits, targets) -> float:
    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets)
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(np.exp(-np.take_along_axis(log_p, targets[..., None], -1).mean()))


def _ref_07_4(train_targets, test_targets, vocab_size) -> float:
    counts = np.bincount(np.asarray(train_targets).ravel(), minlength=vocab_size) + 1.0
    p = counts / counts.sum()
    return float(np.exp(-np.log(p[np.asarray(test_targets).ravel()]).mean()))


def _ref_08_1(ratings, pick, labels) -> tuple[np.ndarray, float]:
    from labkit.data import label_from_score

    one = label_from_score(np.array([r[k % len(r)] for r, k in zip(ratings, pick)]))
    return one, float(np.mean(one == np.asarray(labels)))


def _ref_08_2(one, labels, flagged) -> list[float]:
    wrong, flagged = np.asarray(one) != np.asarray(labels), np.asarray(flagged, dtype=bool)
    return [wrong[flagged].mean(), flagged[wrong].mean(), wrong[flagged].mean() / wrong.mean()]


def _ref_09_1(L) -> list[np.ndarray]:
    L = np.asarray(L)
    votes = L != -1
    stats = [[], [], []]
    for j in range(L.shape[1]):
        rest = np.delete(L, j, axis=1)
        stats[0].append(votes[:, j].mean())
        stats[1].append((votes[:, j] & (rest != -1).any(axis=1)).mean())
        stats[2].append((votes[:, j] & ((rest != -1) & (rest != L[:, [j]])).any(axis=1)).mean())
    return [np.array(v) for v in stats]


def _ref_09_2(L) -> np.ndarray:
    out = []
    for row in np.asarray(L):
        counts = np.bincount(row[row != -1], minlength=3)
        top = counts.max()
        out.append(-1 if top == 0 or (counts == top).sum() > 1 else int(counts.argmax()))
    return np.array(out)


def _ref_07_2(P, source_priors, guess) -> np.ndarray:
    weighted = np.asarray(P) * (np.asarray(guess) / np.asarray(source_priors))
    return (weighted / weighted.sum(1, keepdims=True)).mean(0)


def _ref_10_1(P, U) -> np.ndarray:
    q = np.asarray(P) / np.asarray(U).mean(0)
    return (q / q.sum(1, keepdims=True)).argmax(1)


def _ref_10_2(logits, ids) -> np.ndarray:
    z = np.asarray(logits, dtype=float)[list(ids)]
    e = np.exp(z - z.max())
    return e / e.sum()


def _ref_10_3(r, n_layers, shapes) -> int:
    return int(n_layers * sum(r * (d_in + d_out) for d_in, d_out in shapes.values()))


def _ref_10_4(H, mask) -> tuple[np.ndarray, np.ndarray]:
    H, m = np.asarray(H, dtype=float), np.asarray(mask, dtype=float)
    last = H[np.arange(len(H)), m.sum(1).astype(int) - 1]
    return last, (H * m[..., None]).sum(1) / m.sum(1, keepdims=True)


def _ref_11_1(probas, weights) -> np.ndarray:
    P, w = np.asarray(probas, dtype=float), np.asarray(weights, dtype=float)
    return sum(w[m] * P[m] for m in range(len(w))).argmax(1)


def _ref_11_2(P, y) -> float:
    P, y = np.asarray(P, dtype=float), np.asarray(y)
    total = 0.0
    for low in np.arange(10) / 10:
        inside = (P.max(1) > low) & (P.max(1) <= low + 0.1 + 1e-12)
        if inside.any():
            total += inside.mean() * abs((P[inside].argmax(1) == y[inside]).mean() - P[inside].max(1).mean())
    return float(total)


def _ref_11_3(logits, y) -> float:
    from scipy.optimize import minimize_scalar

    Z, y = np.asarray(logits, dtype=float), np.asarray(y)

    def nll(log_t: float) -> float:
        z = Z / np.exp(log_t)
        z = z - z.max(1, keepdims=True)
        return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.01), np.log(100)), method="bounded",
                                        options={"xatol": 1e-8}).x))


def _check_13_1(config) -> None:
    from labkit import framework
    if not isinstance(config, framework.RunConfig):
        return report("13.1", False, f"expected the RunConfig that framework.parse_config returns, got {type(config).__name__}",
                      "ex_config = framework.parse_config(ex_text)")
    d = config.data
    wanted = {"name": "amazon-to-nyt", "train_domains": ["amazon"], "test domains": ["amazon", "nyt"], "train_n": 200, "test_n": 150,
              "method": "tfidf", "seeds": [0, 1, 2], "min_f1": 0.5, "beat_majority": True}
    got = {"name": config.name, "train_domains": d.train_domains, "test domains": sorted(d.test_domains), "train_n": d.train_n,
           "test_n": d.test_n, "method": config.model.method, "seeds": sorted(config.evaluation.seeds),
           "min_f1": config.gate.min_f1, "beat_majority": config.gate.beat_majority}
    wrong = [f"{k} is {got[k]!r}, expected {v!r}" for k, v in wanted.items() if got[k] != v]
    report("13.1", not wrong, "; ".join(wrong) or "a valid configuration of the amazon → nyt run",
           "the [data], [model], [evaluation] and [gate] sections as in configs/tfidf_tweets.toml")


def _check_13_2(run_id, config) -> None:
    from labkit import framework, tracking
    mlflow, _ = tracking._mlflow(None)
    try:
        stored = mlflow.get_run(str(run_id))
    except Exception:
        return report("13.2", False, f"no MLflow run with id {run_id!r} in the tracker",
                      "ex_run_id = tracking.log_run(ex_result, ex_text) returns the id")
    if stored.data.params.get("train_domains") != ",".join(config.data.train_domains):
        return report("13.2", False, "the recorded run is not a run of ex_config (its training domains differ)",
                      "run ex_config, then record that result")
    again = framework.run(config, log=lambda m: None)
    keys = [f"f1.{d}" for d in config.data.test_domains]
    close("13.2", [stored.data.metrics.get(k, np.nan) for k in keys], [again.metrics()[k] for k in keys], rtol=1e-9,
          what="the recorded F1 of each test domain (re-run here from the same configuration)",
          hint="record the result of framework.run(ex_config) without changing it")


def _ref_13_3(table) -> str:
    return table[table["gap low"] <= 0]["latency ms"].idxmin()


def _ref_12_1(logits, T) -> np.ndarray:
    z = np.asarray(logits, dtype=float) / T
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _ref_12_2(student, teacher, labels, T, alpha) -> float:
    log_softmax = lambda z: z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    zs, zt, y = np.asarray(student, dtype=float), np.asarray(teacher, dtype=float), np.asarray(labels)
    log_pt, log_ps = log_softmax(zt / T), log_softmax(zs / T)
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(1).mean()
    ce = -log_softmax(zs)[np.arange(len(y)), y].mean()
    return float(alpha * T ** 2 * kl + (1 - alpha) * ce)


def _ref_12_3(k, dims) -> int:
    d, f, c = dims["width"], dims["ffn"], dims["classes"]
    embeddings = (dims["vocab"] + dims["positions"] + dims["token_types"]) * d + 2 * d
    layer = 4 * (d * d + d) + 2 * d + (d * f + f) + (f * d + d) + 2 * d
    return int(embeddings + k * layer + d * c + c)


_PAIR_OF_F1 = (("a", "b"), "a tuple (a, b) of two F1 values")
# exercises whose answer is a tuple: its parts, and the hint shown when the shape is wrong
_TUPLES = {
    "01.3": (("low", "high", "verdict"),
             "three values: the 2.5th and 97.5th percentiles of the differences, and the verdict"),
    "05.5": _PAIR_OF_F1, "05.6": _PAIR_OF_F1, "06.1": _PAIR_OF_F1, "06.2": _PAIR_OF_F1,
    "08.1": (("ex_one", "ex_agree"), "one rater's classes (an array), then the agreement (a number)"),
    "08.2": (("precision", "recall", "lift"), "three numbers"),
    "09.1": (("coverage", "overlaps", "conflicts"), "a tuple of three arrays, one value per labelling function in each"),
    "10.4": (("last", "mean"), "two arrays of shape (sentences, width): last-token and mean pooling"),
}


def answer(exercise: str, got: Any, **given: Any) -> None:
    """Check ``got`` against the reference answer of ``exercise``, computed here from ``given``.

    * ``"00.2"`` -- the share of neutral sentences in the nyt test half (``given``: ``test``);
    * ``"01.3"`` -- ``(low, high, verdict)`` of a paired bootstrap 95% interval of F1(A) − F1(B); the
      endpoints may differ from the reference by 0.01 (different random resamples), the verdict must
      match (``given``: ``y_true``, ``pred_a``, ``pred_b``);
    * ``"03.3"`` -- ``(means, better)``: each matrix's mean off-diagonal F1 and the name with the higher
      one (``given``: ``matrices``);
    * ``"04.2"`` -- ``(layer, test_f1)``: the layer chosen by 5-fold cross-validation (any layer within
      0.005 of the best cross-validated F1 is accepted) and the chosen layer's test F1 (``given``:
      ``H_train``, ``y_train``, ``H_test``, ``y_test``);
    * ``"05.5"`` -- ``(drift_f1, refit_f1)``: an old head (fitted on the original features) scored on the
      fine-tuned features, and a head refitted on the fine-tuned features (``given``: ``X_old_train``,
      ``X_new_train``, ``X_new_test``, ``y_train``, ``y_test``);
    * ``"05.6"`` -- ``(pooled_f1, target_f1)``: a head trained on source + target labels and one on the
      target labels alone (``given``: ``X_source``, ``y_source``, ``X_target``, ``y_target``, ``X_test``,
      ``y_test``); every head is ``LogisticRegression(max_iter=2000)`` with default settings;
    * ``"06.1"`` -- ``(transfer_f1, target_f1)``: source-then-target and target-only heads
      (``transfer.fit_head``, λ = 1 on the target; the source head λ = 0.1) (``given``: as for 05.6);
    * ``"06.2"`` -- ``(huge_f1, source_f1)``: source-then-target with λ = 10⁴ and the source head alone;
      both must be the source head's F1 within 0.01 (``given``: ``X_source``, ``y_source``, ``X_test``, ``y_test``);
    * ``"07.1"`` -- CORAL's whitening and re-colouring of standardised source features (``given``:
      ``Z_source``, ``Z_target``);
    * ``"07.2"`` -- the class shares after one EM step from ``guess`` (``given``: ``P``,
      ``source_priors``, ``guess``);
    * ``"07.3"`` -- perplexity ``exp(mean −log softmax(logits)[target])`` (``given``: ``logits``,
      ``targets``);
    * ``"07.4"`` -- held-out perplexity of the add-one unigram model of the training targets
      (``given``: ``train_targets``, ``test_targets``, ``vocab_size``);
    * ``"08.1"`` -- ``(one, agree)``: one rater's class per sentence and its agreement with the mean label
      (``given``: ``ratings``, ``pick``, ``labels``);
    * ``"08.2"`` -- ``(precision, recall, lift)`` of label-error flags (``given``: ``one``, ``labels``,
      ``flagged``);
    * ``"09.1"`` -- ``(coverage, overlaps, conflicts)`` of each labelling function (``given``: ``L``);
    * ``"09.2"`` -- the majority vote of each row, −1 for no votes or a tie (``given``: ``L``);
    * ``"10.1"`` -- the calibrated class of each row of ``P`` with the prior ``U.mean(0)`` (``given``: ``P``, ``U``);
    * ``"10.2"`` -- the label words' probabilities from next-token logits (``given``: ``logits``, ``ids``);
    * ``"10.3"`` -- LoRA's trainable parameter count ``n_layers · Σ r (d_in + d_out)`` (``given``: ``r``,
      ``n_layers``, ``shapes``);
    * ``"10.4"`` -- ``(last, mean)`` pooling of right-padded hidden states (``given``: ``H``, ``mask``);
    * ``"11.1"`` -- the class of each sentence under weighted soft voting (``given``: ``probas``, members ×
      sentences × classes, and ``weights``);
    * ``"11.2"`` -- the expected calibration error with 10 equal-width bins (``given``: ``P``, ``y``);
    * ``"11.3"`` -- the temperature that minimises the negative log-likelihood, within 1 % (``given``:
      ``logits``, ``y``);
    * ``"12.1"`` -- the soft targets ``softmax(logits / T)``, one row per sentence (``given``: ``logits``, ``T``);
    * ``"12.2"`` -- the distillation loss ``α T² KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α) CE(y, z_s)``,
      batch mean (``given``: ``student``, ``teacher``, ``labels``, ``T``, ``alpha``);
    * ``"12.3"`` -- the parameter count of MiniLM cut to ``k`` layers with a new head, no pooler (``given``:
      ``k``, ``dims``);
    * ``"13.1"`` -- a :class:`labkit.framework.RunConfig` of the amazon → nyt TF-IDF run (``got`` only);
    * ``"13.2"`` -- the MLflow run id of that configuration's run; its recorded F1 is compared with a re-run
      (``given``: ``config``);
    * ``"13.3"`` -- the fastest method whose paired interval of F1(best) − F1(method) reaches 0 (``given``: ``table``).
    """
    if exercise in _TUPLES and not (isinstance(got, tuple) and len(got) == len(_TUPLES[exercise][0])):
        shape, hint = _TUPLES[exercise]
        return report(exercise, False, f"expected a tuple ({', '.join(shape)}), got {type(got).__name__} {got!r:.80}", hint)
    if exercise == "00.2":
        return close("00.2", got, _ref_00_2(given["test"]), what="share of neutral sentences in the nyt test half",
                     rtol=1e-9, hint="select rows with test['domain'] == 'nyt', then the mean of (label == 1)")
    if exercise == "01.3":
        low, high, verdict = _ref_01_3(given["y_true"], given["pred_a"], given["pred_b"])
        if abs(float(got[0]) - low) > 0.01 or abs(float(got[1]) - high) > 0.01:
            return report("01.3", False, f"interval [{float(got[0]):+.3f}, {float(got[1]):+.3f}] is not the paired "
                          "bootstrap 95% interval of F1(A) - F1(B)",
                          "resample the test positions with replacement (the same ones for A and B), compute "
                          "F1(A) - F1(B) on each resample, take the 2.5 and 97.5 percentiles")
        return equal("01.3", got[2], verdict, what="verdict from the interval",
                     hint="'A better' only if the whole interval is above 0, 'B better' if below, else no clear difference")
    if exercise == "03.3":
        means, better = _ref_03_3(given["matrices"])
        cross, name = got
        close("03.3", [cross[k] for k in means], list(means.values()), what="mean off-diagonal F1 of each matrix",
              rtol=1e-9, hint="the off-diagonal cells are the 16 cells minus the 4 on the diagonal: use ~np.eye(4, dtype=bool)")
        return equal("03.3", name, better, what="the representation with the higher mean off-diagonal F1",
                     hint="compare the two means you computed")
    if exercise == "04.2":
        layer, test_f1 = got
        cv = _ref_04_2(given["H_train"], given["y_train"])
        choice("04.2", layer, {k for k, v in enumerate(cv) if v >= max(cv) - 0.005},
               what="layer chosen by cross-validation on the training half",
               hint="cross-validate every layer on the training vectors and take the argmax of the mean F1")
        return close("04.2", test_f1, _ref_04_2_test(layer, **given), what="test F1 of the chosen layer", rtol=1e-9,
                     hint="fit the same probe on the whole training half of the chosen layer, then score its test half")
    if exercise == "06.1":
        return close("06.1", [float(v) for v in got], list(_ref_06_1(**given)),
                     what="F1 of (source-then-target, target only)", rtol=1e-6,
                     hint="the source head (lam=0.1 on the tweets) is the prior of the first target head; both use lam=1.0")
    if exercise == "07.1":
        return close("07.1", got, _ref_07_1(**given), rtol=1e-5, atol=1e-6, what="your re-coloured source features",
                     hint="Z_s @ inv(sqrtm(C_s + I)) @ sqrtm(C_t + I), with C = np.cov(Z, rowvar=False)")
    if exercise == "07.3":
        return close("07.3", got, _ref_07_3(**given), rtol=1e-4, what="the perplexity of these windows",
                     hint="log_softmax over the vocabulary, pick each target's log-probability, average, negate, exp")
    if exercise == "07.4":
        return close("07.4", got, _ref_07_4(**given), rtol=1e-6, what="the unigram model's held-out perplexity",
                     hint="p(t) = (count of t in the training targets + 1) / (number of targets + vocabulary size)")
    if exercise == "08.1":
        one, agree = _ref_08_1(**given)
        close("08.1", got[0], one, what="one rater's class for every sentence", rtol=0,
              hint="rater k % len(r) of each sentence, then data.label_from_score on the scores")
        return close("08.1", got[1], agree, what="agreement with the mean label", rtol=1e-9,
                     hint="np.mean(ex_one == ex_labels)")
    if exercise == "08.2":
        return close("08.2", [float(v) for v in got], _ref_08_2(**given), rtol=1e-9,
                     what="(precision, recall, lift) of the flags",
                     hint="precision = wrong[flagged].mean(), recall = flagged[wrong].mean(), lift = precision / wrong.mean()")
    if exercise == "09.1":
        for name, g, e in zip(("coverage", "overlaps", "conflicts"), got, _ref_09_1(**given)):
            close("09.1", g, e, what=f"{name} per labelling function", rtol=1e-9,
                  hint="overlap: it votes and another votes; conflict: it votes and another votes for a different class")
        return None
    if exercise == "09.2":
        return close("09.2", got, _ref_09_2(**given), rtol=0, what="the majority vote of each row",
                     hint="count the non-abstaining votes per class; -1 where nobody votes or two classes tie")
    if exercise == "10.1":
        return close("10.1", got, _ref_10_1(**given), rtol=0, what="the calibrated class of each sentence",
                     hint="prior = U.mean(axis=0); q = P / prior; renormalise each row; argmax per row")
    if exercise == "10.2":
        return close("10.2", got, _ref_10_2(**given), rtol=1e-6, what="p(c | x) of the three label words",
                     hint="softmax over all logits, keep logits[ids], divide by their sum")
    if exercise == "10.3":
        return close("10.3", got, _ref_10_3(**given), rtol=0, what="LoRA's trainable parameters",
                     hint="each adapted layer adds A (r x d_in) and B (d_out x r): r * (d_in + d_out), in every block")
    if exercise == "10.4":
        last, mean = _ref_10_4(**given)
        close("10.4", got[0], last, rtol=1e-6, what="last-token pooling",
              hint="with right padding the last real token of row i is at mask[i].sum() - 1")
        return close("10.4", got[1], mean, rtol=1e-6, what="mean pooling",
                     hint="sum H over the real tokens (multiply by the mask) and divide by their count")
    if exercise == "11.1":
        return close("11.1", got, _ref_11_1(**given), rtol=0, what="the weighted soft vote's class of each sentence",
                     hint="sum over members of weight * probabilities (one row per sentence), then argmax per row")
    if exercise == "11.2":
        return close("11.2", got, _ref_11_2(**given), rtol=1e-6, what="the expected calibration error",
                     hint="confidence = max probability; bin b holds confidences in (b/10, (b+1)/10]; "
                          "sum over bins of (share of sentences) * |accuracy - mean confidence|")
    if exercise == "11.3":
        return close("11.3", got, _ref_11_3(**given), rtol=0.01, what="the NLL-optimal temperature",
                     hint="minimise -mean(log softmax(logits / T)[i, y_i]) over T > 0, e.g. on a fine grid of log T")
    if exercise == "12.1":
        return close("12.1", got, _ref_12_1(**given), rtol=1e-6, what="the soft targets at this temperature",
                     hint="divide the logits by T first, then a softmax over each row (subtract the row max for stability)")
    if exercise == "12.2":
        return close("12.2", got, _ref_12_2(**given), rtol=1e-6, what="the distillation loss",
                     hint="KL(p_t || p_s) = sum p_t (log p_t - log p_s) at temperature T, times alpha T^2; "
                          "plus (1 - alpha) times the cross-entropy at T = 1; both averaged over the sentences")
    if exercise == "12.3":
        return close("12.3", got, _ref_12_3(**given), rtol=0, what="the k-layer student's parameters",
                     hint="embeddings (vocab + positions + token types) x d + a LayerNorm; per layer 4(d^2 + d) + "
                          "2df + f + d + two LayerNorms (2d each); the head d x 3 + 3")
    if exercise == "07.2":
        return close("07.2", got, _ref_07_2(**given), rtol=1e-9, what="the class shares after one EM step",
                     hint="p(y|x) ∝ p_s(y|x) · π(y) / π_s(y), each row normalised, then the mean over the rows")
    if exercise == "06.2":
        source = _ref_06_2(**given)
        close("06.2", float(got[1]), source, atol=1e-6, what="F1 of the source head alone",
              hint="transfer.fit_head on the tweets with lam=0.1, scored on the Amazon test sentences")
        return close("06.2", float(got[0]), source, atol=0.01, what="source-then-target with λ = 10⁴ (vs the source head)",
                     hint="a huge λ pins the target head to its prior: the source head")
    if exercise in ("05.5", "05.6"):
        reference = (_ref_05_5 if exercise == "05.5" else _ref_05_6)(**given)
        what = ("F1 of (the old head on the new features, a head refitted on them)" if exercise == "05.5"
                else "F1 of (source + target labels, target labels only)")
        hint = ("the old head is fitted on X_old_train and predicts X_new_test; the refitted one is fitted on X_new_train"
                if exercise == "05.5" else "stack X_source on X_target (and their labels) for the first head")
        return close(exercise, [float(v) for v in got], list(reference), what=what, rtol=1e-9, hint=hint)
    if exercise == "13.1":
        return _check_13_1(got)
    if exercise == "13.2":
        return _check_13_2(got, **given)
    if exercise == "13.3":
        return equal("13.3", got, _ref_13_3(**given), what="the recommended method",
                     hint="keep the rows whose gap low is at most 0, then take the one with the lowest latency")
    raise ValueError(f"no reference answer for exercise {exercise!r}; check.answer knows 00.2, 01.3, 03.3, 04.2, "
                     "05.5, 05.6, 06.1, 06.2, 07.1, 07.2, 07.3, 07.4, 08.1, 08.2, 09.1, 09.2, 10.1-10.4, 11.1-11.3, 12.1-12.3 and 13.1-13.3")
