"""Dataset types, dataset references and collection types."""

from __future__ import annotations

import enum
import hashlib
import uuid
from dataclasses import dataclass, field

from rc2_platform.core.data_id import DataCoordinate

#: Namespace of deterministic dataset IDs (uuid5); never change it.
DATASET_ID_NAMESPACE = uuid.UUID("6a1c7f0e-5b0c-4b6e-9a31-7d8a2f5b9c40")


class CollectionType(enum.IntEnum):
    """The four kinds of collection."""

    RUN = 1
    TAGGED = 2
    CHAINED = 3
    CALIBRATION = 4


class DatasetIdGenMode(enum.Enum):
    """How new dataset UUIDs are made."""

    #: A new unique UUID for every dataset (``Registry.insert_datasets`` makes
    #: time-ordered version-7 UUIDs so that bulk inserts append to the id indexes;
    #: ``DatasetRef.make`` a random UUID4).
    UNIQUE = "unique"
    #: uuid5 of (dataset type, data ID, run): re-ingesting the same thing gives the same id.
    DATAID_TYPE_RUN = "dataid_type_run"


@dataclass(frozen=True, slots=True)
class DatasetType:
    """A named kind of dataset with fixed dimensions and a storage class.

    Parameters
    ----------
    name : str
        Dataset type name, e.g. ``calexp``.
    dimensions : tuple[str, ...]
        Required dimensions, in the universe's canonical order.
    storage_class : str
        Storage class name (see ``rc2_platform/config/storage_classes.yaml``).
    is_calibration : bool
        Whether datasets of this type may be certified into CALIBRATION collections.
    """

    name: str
    dimensions: tuple[str, ...]
    storage_class: str
    is_calibration: bool = False

    def same_definition(self, other: DatasetType) -> bool:
        """Whether ``other`` has the same dimensions, storage class and calibration flag."""
        return (
            set(self.dimensions) == set(other.dimensions)
            and self.storage_class == other.storage_class
            and self.is_calibration == other.is_calibration
        )


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """A reference to one dataset: type + data ID + RUN, identified by a UUID."""

    dataset_type: DatasetType
    data_id: DataCoordinate
    run: str
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    @classmethod
    def make(
        cls,
        dataset_type: DatasetType,
        data_id: DataCoordinate,
        run: str,
        mode: DatasetIdGenMode = DatasetIdGenMode.UNIQUE,
    ) -> DatasetRef:
        """Make a new ref, choosing its UUID according to ``mode``."""
        return cls(dataset_type, data_id, run, make_dataset_id(dataset_type, data_id, run, mode))

    def __repr__(self) -> str:
        return f"DatasetRef({self.dataset_type.name}, {self.data_id!r}, run={self.run!r}, id={self.id})"


def make_dataset_id(
    dataset_type: DatasetType,
    data_id: DataCoordinate,
    run: str,
    mode: DatasetIdGenMode = DatasetIdGenMode.UNIQUE,
) -> uuid.UUID:
    """Return a new dataset UUID; deterministic for :attr:`DatasetIdGenMode.DATAID_TYPE_RUN`.

    The deterministic id is ``uuid5(DATASET_ID_NAMESPACE, "type;run;dim=value;...")`` with
    the dimensions sorted by name; it is computed directly with hashlib because the graph
    builder makes one for every output (tens of thousands per tract).
    """
    if mode is DatasetIdGenMode.UNIQUE:
        return uuid.uuid4()
    dims = data_id.dimensions
    order = _SORTED_POSITIONS.get(dims)
    if order is None:
        order = _SORTED_POSITIONS[dims] = tuple(sorted(range(len(dims)), key=dims.__getitem__))
    values = data_id.values_tuple
    key = ";".join([dataset_type.name, run, *(f"{dims[i]}={values[i]}" for i in order)])
    digest = hashlib.sha1(_NAMESPACE_BYTES + key.encode()).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


_NAMESPACE_BYTES = DATASET_ID_NAMESPACE.bytes
#: Per dimension tuple, the positions of its dimensions in name order.
_SORTED_POSITIONS: dict[tuple[str, ...], tuple[int, ...]] = {}
