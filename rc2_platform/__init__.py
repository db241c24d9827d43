"""rc2_platform: a Gen3-style data butler, QuantumGraph builder and executor.

The public entry points are :class:`rc2_platform.butler.Butler` (library) and the
``rc2`` command line (:mod:`rc2_platform.cli`). Dagster definitions live in
:mod:`rc2_platform.defs` and are the only part of the package that imports dagster.
"""

__version__ = "0.1.0"
