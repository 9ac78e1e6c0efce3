"""Instructor tools, apart from the lesson machinery: the student build, the student workspace and
the grader (:mod:`labkit.instructor.grading`). Students meet only :mod:`labkit.check`."""
