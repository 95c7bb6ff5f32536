"""Small real datasets shipped inside the package (nothing is downloaded), and the pieces that
combine datasets annotating different targets.

Example::

    >>> from losskit.data import load_digits
    >>> digits = load_digits()
    >>> tuple(digits.images.shape), tuple(digits.labels.shape)
    ((1797, 8, 8), (1797,))
"""

from losskit.data._digits import Digits, DigitsDataset, load_digits
from losskit.data._keyed import KeyedTensorDataset
from losskit.data._multidigits import MultiDigits, multidigits
from losskit.data._partial import PartialDigits, partially_labelled_digits
from losskit.data._round_robin import RoundRobin

__all__ = [
    "Digits",
    "DigitsDataset",
    "KeyedTensorDataset",
    "MultiDigits",
    "PartialDigits",
    "RoundRobin",
    "load_digits",
    "multidigits",
    "partially_labelled_digits",
]
