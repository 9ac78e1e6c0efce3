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
        shown = f"{got:,}" if isinstance(got, int) else repr(got)
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
