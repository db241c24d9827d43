"""Checks of datasets being registered: data IDs exist, repeated ids are identical.

:class:`DatasetChecks` (``DatasetManager.checks``) validates data IDs set-wise per batch
(what per-row foreign keys of the tags tables used to do, one query per referenced
dimension element), drops already-registered identical datasets from a batch, and turns
a constraint violation into the error that names its cause.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from rc2_platform.core.dataset_types import DatasetRef
from rc2_platform.errors import DatasetConflictError, DimensionValueError
from rc2_platform.registry._bulk import chunks, restrict_columns, select_raw
from rc2_platform.registry.schema import RegistrySchema

if TYPE_CHECKING:
    from rc2_platform.registry._datasets import StoredDatasetType

__all__ = ["DatasetChecks", "whole_data_ids_key"]


def whole_data_ids_key(dims: tuple[str, ...]) -> str:
    """The key of whole checked data IDs of ``dims`` in a ``verified`` map (no element name)."""
    return "(" + ",".join(dims) + ")"


class DatasetChecks:
    """Data-ID and identity checks of datasets of one schema."""

    def __init__(self, schema: RegistrySchema):
        self.schema = schema
        self.universe = schema.universe

    def check_data_ids(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        keys: Sequence[tuple[Any, ...]],
        verified: dict[str, set[tuple[Any, ...]]] | None = None,
    ) -> None:
        """Raise DimensionValueError unless every data ID's dimension records exist.

        One query per referenced element over the batch's distinct values (what the
        dropped per-row foreign keys of the tags table used to check). ``verified``
        (element -> key tuples found so far, updated) lets one registration of several
        dataset types with the same data IDs query each value once; it also keeps, under
        :func:`whole_data_ids_key` of the dimensions, the whole data IDs checked, so the
        next dataset type of those dimensions (a task's outputs share their data IDs)
        is checked by one set lookup per data ID.
        """
        dims = stored.dataset_type.dimensions
        whole: set[tuple[Any, ...]] | None = None
        if verified is not None and keys and isinstance(keys[0], tuple):
            whole = verified.setdefault(whole_data_ids_key(dims), set())
            if whole.issuperset(keys):
                return
        for name in self.schema.dimension_checks(dims):
            el = self.universe[name]
            idx = [dims.index(r) for r in el.required]
            wanted: set[tuple[Any, ...]]
            # Distinct values by C-level map/set (a comprehension per key costs ~3x more).
            if len(idx) == 1:
                wanted = {(v,) for v in set(map(operator.itemgetter(idx[0]), keys))}
            else:
                wanted = set(map(operator.itemgetter(*idx), keys))
            known = verified.setdefault(name, set()) if verified is not None else set()
            if known:
                wanted -= known
                if not wanted:
                    continue
            found = self._existing_keys(conn, name, wanted)
            known |= found
            missing = wanted - found
            if missing:
                shown = sorted(missing, key=repr)[:5]
                raise DimensionValueError(
                    f"{stored.dataset_type.name}: data ID value(s) "
                    f"{[dict(zip(el.required, m, strict=True)) for m in shown]} do not exist "
                    f"in the registry's {name} records; insert those dimension records first"
                )
        if whole is not None:
            whole.update(keys)

    def _existing_keys(
        self, conn: sa.Connection, element: str, wanted: set[tuple[Any, ...]]
    ) -> set[tuple[Any, ...]]:
        el = self.universe[element]
        table = self.schema.elements[element]
        cols = [table.c[k] for k in el.required]
        found: set[tuple[Any, ...]] = set()
        last = sorted({k[-1] for k in wanted}, key=repr)
        for part in chunks(last, 10_000):
            stmt = sa.select(*cols).where(cols[-1].in_(part))
            if len(cols) > 1:
                stmt = stmt.where(*restrict_columns(cols[:-1], wanted, 100))
            found.update(tuple(row) for row in select_raw(conn, stmt))
        return found

    def drop_identical(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        refs: Sequence[DatasetRef],
        run_id: int,
    ) -> list[DatasetRef]:
        """Refs whose UUID is not stored yet; stored ones must match exactly (else
        DatasetConflictError)."""
        d = self.schema.dataset
        found: dict[uuid.UUID, tuple[int, int]] = {}
        for part in chunks([r.id for r in refs]):
            for row in conn.execute(
                sa.select(d.c.dataset_id, d.c.dataset_type_id, d.c.run_id).where(
                    d.c.dataset_id.in_(part)
                )
            ):
                found[row[0]] = (row[1], row[2])
        new = []
        for r in refs:
            old = found.get(r.id)
            if old is None:
                new.append(r)
            elif old != (stored.id, run_id):
                raise DatasetConflictError(
                    f"dataset {r.id} already exists with another dataset type or run than {r!r}"
                )
        if len(new) < len(refs):
            self._check_same_data_ids(conn, stored, [r for r in refs if r.id in found])
        return new

    def _check_same_data_ids(
        self, conn: sa.Connection, stored: StoredDatasetType, refs: list[DatasetRef]
    ) -> None:
        t = stored.tags
        dims = stored.dataset_type.dimensions
        want = {r.id: r for r in refs}
        for part in chunks(list(want)):
            stmt = sa.select(t.c.dataset_id, *[t.c[d] for d in dims]).where(
                t.c.dataset_id.in_(part)
            )
            for row in conn.execute(stmt):
                ref = want[row[0]]
                if tuple(row[1:]) != ref.data_id.values_tuple:
                    raise DatasetConflictError(
                        f"dataset {ref.id} already exists with data ID {dict(zip(dims, row[1:], strict=True))}, "
                        f"not {ref.data_id}"
                    )

    def explain_integrity_error(
        self,
        conn: sa.Connection,
        stored: StoredDatasetType,
        refs: Sequence[DatasetRef],
        collection_id: int,
        exc: Exception,
    ) -> None:
        """Turn a constraint violation into DimensionValueError or DatasetConflictError."""
        dims = stored.dataset_type.dimensions
        for d in dims:
            el = self.universe[d]
            if not el.has_table:
                continue
            table = self.schema.elements[d]
            keys = {tuple(r.data_id[k] for k in el.required) for r in refs}
            found: set[tuple[Any, ...]] = set()
            values = sorted({k[-1] for k in keys}, key=repr)
            for part in chunks(values):
                stmt = sa.select(*[table.c[k] for k in el.required]).where(table.c[d].in_(part))
                found.update(tuple(row) for row in conn.execute(stmt))
            missing = sorted(keys - found, key=repr)
            if missing:
                raise DimensionValueError(
                    f"{stored.dataset_type.name}: data ID value(s) "
                    f"{[dict(zip(el.required, m, strict=True)) for m in missing[:5]]} do not exist "
                    f"in the registry's {d} records; insert those dimension records first"
                ) from exc
        t = stored.tags
        clashes = []
        for part in chunks(list(refs), 500):
            cond = sa.tuple_(*[t.c[d] for d in dims]).in_([r.data_id.values_tuple for r in part])
            stmt = sa.select(*[t.c[d] for d in dims]).where(
                t.c.dataset_type_id == stored.id, t.c.collection_id == collection_id, cond
            )
            clashes += [dict(zip(dims, row, strict=True)) for row in conn.execute(stmt)]
        raise DatasetConflictError(
            f"{stored.dataset_type.name}: a dataset already exists in this collection for data ID(s) "
            f"{clashes[:5] if clashes else '(duplicate ids within the batch)'}; "
            "use another RUN or remove the existing datasets"
        ) from exc
