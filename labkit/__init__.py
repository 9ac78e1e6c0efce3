"""labkit: the helper package of the Transfer Learning Lab course.

Notebooks import the modules they need explicitly, e.g. ``from labkit import data, device``.
Importing ``labkit`` does nothing else: no seeding, no downloads, no printing.
"""

__version__ = "0.1.0"
