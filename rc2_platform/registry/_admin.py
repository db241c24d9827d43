"""Registry methods of data management: who uses a collection, chain edits, removals.

:class:`RegistryAdmin` is a base class of :class:`~rc2_platform.registry.Registry`
(kept apart so the facade module stays small); its SQL is in ``_usage.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rc2_platform.core.dataset_types import CollectionType, DatasetRef, DatasetType
from rc2_platform.core.timespan import Timespan
from rc2_platform.errors import CollectionError, ConfigError
from rc2_platform.registry._data_ids import data_ids as _data_ids
from rc2_platform.registry._usage import Certification, CollectionUse, UsageQueries

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import sqlalchemy as sa

    from rc2_platform.registry._calibrations import CalibrationManager
    from rc2_platform.registry._collections import CollectionManager
    from rc2_platform.registry._connections import Connections
    from rc2_platform.registry._datasets import DatasetManager
    from rc2_platform.registry.dimensions import DimensionUniverse

#: Ways ``edit_collection_chain`` changes a chain (LSST's ``butler collection-chain``).
CHAIN_MODES = ("redefine", "extend", "prepend", "remove", "pop")


class RegistryAdmin:
    """Data-management methods of the registry (mixed into ``Registry``)."""

    if TYPE_CHECKING:
        universe: DimensionUniverse
        collections: CollectionManager
        datasets: DatasetManager
        calibrations: CalibrationManager
        _db: Connections

        def transaction(self) -> AbstractContextManager[sa.Connection]: ...
        def refresh(self) -> None: ...

    @property
    def _usage(self) -> UsageQueries:
        return UsageQueries(self.collections, self.datasets)

    # --- who uses what ----------------------------------------------------------------

    def collection_parents(self, name: str) -> list[str]:
        """Names of the CHAINED collections that list ``name`` as a direct child."""
        with self._db.read() as conn:
            rec = self.collections.get(conn, name)
            return sorted(
                self.collections.by_id(conn, p).name
                for p in self._usage.chain_parents(conn, rec.id)
            )

    def dataset_users(
        self,
        *,
        runs: Sequence[str] | None = None,
        refs: Iterable[DatasetRef | uuid.UUID] | None = None,
        dataset_type: str | DatasetType | None = None,
        exclude: Iterable[str] = (),
    ) -> list[CollectionUse]:
        """TAGGED and CALIBRATION collections holding the datasets selected.

        Parameters
        ----------
        runs : sequence of str, optional
            Datasets of these RUNs.
        refs : iterable of DatasetRef or UUID, optional
            These datasets.
        dataset_type : str or DatasetType, optional
            Datasets of this type.
        exclude : iterable of str
            Collections not to report (e.g. the ones being pruned).

        Returns
        -------
        list of CollectionUse
            ``(name, type, datasets)`` per collection, sorted by name; a dataset's own
            RUN is never listed.
        """
        with self._db.read() as conn:
            run_ids = None if runs is None else [self.collections.get(conn, r).id for r in runs]
            ids = None if refs is None else [r if isinstance(r, uuid.UUID) else r.id for r in refs]
            type_ids = None if dataset_type is None else [self.datasets.get(conn, dataset_type).id]
            skip = []
            for name in exclude:
                skip += [c.id for c in self.collections.flatten(conn, name)]
            return self._usage.users(
                conn, run_ids=run_ids, dataset_ids=ids, type_ids=type_ids, exclude=skip
            )

    def count_datasets_by_run(self, dataset_type: str | DatasetType) -> dict[str, int]:
        """RUN name -> number of datasets of ``dataset_type`` it holds (RUNs with some)."""
        with self._db.read() as conn:
            stored = self.datasets.get(conn, dataset_type)
            return self._usage.count_by_run(conn, stored.id)

    # --- chains -----------------------------------------------------------------------

    def edit_collection_chain(
        self, parent: str, children: Sequence[str | int], mode: str = "redefine"
    ) -> list[str]:
        """Change CHAINED ``parent`` and return its new children, in one transaction.

        Parameters
        ----------
        parent : str
            The chain; created by ``redefine``, ``extend`` and ``prepend`` if missing.
        children : sequence of str or int
            Collection names; for ``pop``, positions (default: the first, 0; negative
            positions count from the end).
        mode : str
            ``redefine`` (replace), ``extend`` (append, moving existing ones to the
            end), ``prepend`` (put first), ``remove`` (drop these names; each must be
            in the chain), ``pop`` (drop these positions).

        Raises
        ------
        ConfigError
            Unknown mode, a name not in the chain, a position out of range.
        CollectionCycleError, CollectionTypeError, MissingCollectionError
            As :meth:`set_collection_chain`.
        """
        if mode not in CHAIN_MODES:
            raise ConfigError(f"chain mode {mode!r} is unknown; use one of {list(CHAIN_MODES)}")
        with self.transaction() as conn:
            if mode in ("redefine", "extend", "prepend"):
                self.collections.register(conn, parent, CollectionType.CHAINED)
            current = self.collections.get_chain(conn, parent)
            chain = _new_chain(parent, current, list(children), mode)
            self.collections.set_chain(conn, parent, chain)
        self.refresh()
        return chain

    # --- dataset types ----------------------------------------------------------------

    def remove_dataset_type(self, name: str) -> int:
        """Remove a dataset type with its datasets' rows; return how many datasets it had.

        The caller (``Butler`` / ``rc2_platform.admin``) removes the files and decides
        whether datasets may go (``rc2 remove-dataset-type`` refuses unless told).
        """
        with self.transaction() as conn:
            stored = self.datasets.get(conn, name)
            n = self._usage.remove_dataset_type(conn, stored)
        self.refresh()
        return n

    # --- calibrations -----------------------------------------------------------------

    def query_certifications(
        self,
        collection: str,
        dataset_type: str | DatasetType,
        *,
        data_ids: Iterable[Mapping[str, Any]] | None = None,
        timespan: Timespan | None = None,
    ) -> list[Certification]:
        """Validity ranges in CALIBRATION ``collection`` (overlapping ``timespan`` if given)."""
        with self._db.read() as conn:
            rec = self.collections.require_type(
                conn, collection, CollectionType.CALIBRATION, action="read certifications of"
            )
            stored = self.datasets.get(conn, dataset_type)
            dims = stored.dataset_type.dimensions
            keys = (
                None
                if data_ids is None
                else [d.values_tuple for d in _data_ids(self.universe, dims, data_ids)]
            )
            rows = self.calibrations.calib_rows(conn, stored, [rec.id], keys)
            found = self._usage.certifications(conn, rows, stored)
        return [c for c in found if timespan is None or c.timespan.overlaps(timespan)]


def _new_chain(parent: str, current: list[str], children: list[str | int], mode: str) -> list[str]:
    names = [str(c) for c in children]
    if mode == "redefine":
        return names
    if mode in ("extend", "prepend"):
        rest = [c for c in current if c not in names]
        return rest + names if mode == "extend" else names + rest
    if mode == "remove":
        missing = [c for c in names if c not in current]
        if missing:
            raise CollectionError(
                f"cannot remove {missing} from chain {parent!r}: not among its children {current}"
            )
        return [c for c in current if c not in names]
    positions: list[int] = []
    for c in children or [0]:
        try:
            i = int(c)
        except ValueError:
            raise ConfigError(
                f"--mode pop takes positions in chain {parent!r}, not {c!r}; e.g. 0 for the first"
            ) from None
        if not -len(current) <= i < len(current):
            raise ConfigError(
                f"position {i} is outside chain {parent!r}, which has {len(current)} children"
            )
        positions.append(i % len(current))
    return [c for i, c in enumerate(current) if i not in set(positions)]
