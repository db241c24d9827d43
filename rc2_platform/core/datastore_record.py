"""Where one dataset's file is: the record the datastore writes and the registry stores."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DatastoreRecord:
    """Where one dataset's file is; stored by the registry in ``file_datastore_records``.

    ``path`` is POSIX and relative to the datastore root, except for files ingested
    with ``transfer="direct"`` which keep their absolute path.
    """

    dataset_id: uuid.UUID
    path: str
    formatter: str
    storage_class: str
    file_size: int
