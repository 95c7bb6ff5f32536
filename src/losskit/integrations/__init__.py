"""Using a Criterion inside other training frameworks (optional extras).

* :mod:`losskit.integrations.lightning` (``pip install 'losskit[lightning]'``): a mixin for a
  ``LightningModule``.
* :mod:`losskit.integrations.accelerate` (``pip install 'losskit[accelerate]'``): the pieces of a
  hand-written Accelerate loop.

Each module imports its framework when first imported and raises
:class:`~losskit.errors.MissingDependencyError` naming the extra when it is missing.
"""
