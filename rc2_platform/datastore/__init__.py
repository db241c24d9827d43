"""The POSIX file datastore: path templates, formatters, transfer modes.

Public API: :class:`FileDatastore`, :class:`DatastoreRecord`, :class:`Transfer`,
:class:`Exposure`, :class:`Formatter` and its subclasses, :class:`PathTemplate`,
:func:`load_datastore_config`. See ``docs/datastore.md``.
"""

from __future__ import annotations

from rc2_platform.core.exposure import Exposure
from rc2_platform.datastore.config import (
    DatastoreConfig,
    StorageClassConfig,
    load_datastore_config,
)
from rc2_platform.datastore.file_datastore import DatastoreRecord, FileDatastore, Transfer
from rc2_platform.datastore.formatters import (
    FORMATTERS,
    FitsExposureFormatter,
    FitsImageFormatter,
    FitsTableFormatter,
    Formatter,
    JsonFormatter,
    YamlFormatter,
    get_formatter,
)
from rc2_platform.datastore.templates import PathTemplate

__all__ = [
    "FORMATTERS",
    "DatastoreConfig",
    "DatastoreRecord",
    "Exposure",
    "FileDatastore",
    "FitsExposureFormatter",
    "FitsImageFormatter",
    "FitsTableFormatter",
    "Formatter",
    "JsonFormatter",
    "PathTemplate",
    "StorageClassConfig",
    "Transfer",
    "YamlFormatter",
    "get_formatter",
    "load_datastore_config",
]
