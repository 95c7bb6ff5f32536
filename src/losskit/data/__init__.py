"""Small real datasets shipped inside the package (nothing is downloaded).

Example::

    >>> from losskit.data import load_digits
    >>> digits = load_digits()
    >>> tuple(digits.images.shape), tuple(digits.labels.shape)
    ((1797, 8, 8), (1797,))
"""

from losskit.data._digits import Digits, DigitsDataset, load_digits

__all__ = ["Digits", "DigitsDataset", "load_digits"]
