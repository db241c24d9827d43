"""Registry methods of searching: datasets and data IDs, dimension records, overlaps.

:class:`RegistryQueries` is a base class of :class:`~rc2_platform.registry.Registry`
(kept apart so the facade module stays small); its methods delegate to the
registry's :class:`~rc2_platform.registry._search.DatasetSearch` and
:class:`~rc2_platform.registry._data_id_queries.DataIdQueries`.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import DatasetRef, DatasetType
from rc2_platform.core.timespan import Timespan
from rc2_platform.errors import ExpressionError
from rc2_platform.registry._bulk import no_gc
from rc2_platform.registry._search import CollectionArg, DatasetColumnsFound

if TYPE_CHECKING:
    from rc2_platform.registry._data_id_queries import DataIdQueries
    from rc2_platform.registry._search import DatasetSearch
    from rc2_platform.registry.dimensions import DimensionUniverse


class RegistryQueries:
    """Dataset searches and data-ID queries of the registry (mixed into ``Registry``)."""

    if TYPE_CHECKING:
        _search: DatasetSearch
        _data_ids: DataIdQueries
        universe: DimensionUniverse

    # --- dataset searches (``_search.py``) ---------------------------------------------

    def find_datasets(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        data_ids: Iterable[Mapping[str, Any]] | None = None,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        timespan: Timespan | None = None,
    ) -> dict[DataCoordinate, DatasetRef]:
        """Find-first search of ``collections`` for a whole set of data IDs in one query.

        Returns a mapping from data ID (the dataset type's dimensions) to the ref found
        in the first collection of the flattened search path holding it.
        """
        refs = self._search.search(dataset_type, collections, data_ids, where, bind, timespan, True)
        with no_gc():
            return dict(zip(map(operator.attrgetter("data_id"), refs), refs, strict=True))

    def query_datasets(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        find_first: bool = True,
    ) -> list[DatasetRef]:
        """Datasets of a type in ``collections`` matching ``where`` (first found per data ID)."""
        return self._search.search(dataset_type, collections, None, where, bind, None, find_first)

    def query_dataset_columns(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        find_first: bool = True,
    ) -> DatasetColumnsFound:
        """:meth:`query_datasets` as columns: RUN names, ids as hex, data ID tuples.

        For callers that pass results on rather than use them (the butler server): no
        ref, data ID or UUID object is built per dataset.
        """
        return self._search.search_columns(dataset_type, collections, where, bind, find_first)

    def find_dataset(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, Any],
        collections: CollectionArg,
        timespan: Timespan | None = None,
    ) -> DatasetRef | None:
        """Find-first lookup of one data ID (None if not found).

        The statement is compiled once per (dataset type, collections, timespan) and run
        on a kept driver connection (see ``rc2_platform/registry/_lookup.py``).
        """
        return self._search.find_dataset(dataset_type, data_id, collections, timespan)

    def find_calibrations(
        self,
        dataset_type: str | DatasetType,
        collections: CollectionArg,
        data_ids_and_times: Sequence[tuple[Mapping[str, Any], Timespan]],
    ) -> dict[tuple[DataCoordinate, Timespan], DatasetRef]:
        """Resolve many (data ID, time) pairs against a search path in one query.

        The calibration data ID is the dataset type's dimensions taken from each data ID
        (which may have more dimensions, e.g. an exposure's). The first collection in the
        search order with a dataset whose validity overlaps the time wins (a RUN or
        TAGGED collection matches any time); within one CALIBRATION collection the
        latest-beginning validity wins.
        """
        return self._search.find_calibrations(dataset_type, collections, data_ids_and_times)

    # --- data ID and record queries (``_data_id_queries.py``) --------------------------

    def query_data_id_rows(
        self,
        dimensions: Iterable[str],
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        datasets: Iterable[str | DatasetType] | None = None,
        collections: CollectionArg | None = None,
    ) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """Distinct data IDs as raw rows: (column names, rows), columns = expanded dimensions.

        Joins implied dimensions, overlap tables when the dimensions mix spatial families,
        and (with ``datasets``) the datasets existing in ``collections``.
        """
        return self._data_ids.data_id_rows(dimensions, where, bind, datasets, collections)

    def where_dimensions(self, where: str) -> set[str]:
        """The dimensions a where-expression constrains (nothing is queried).

        Its dimension identifiers and, for each ``element.column`` it names, that
        element's required dimensions: ``"visit.exposure_time > 10 AND detector = 3"``
        gives ``{"instrument", "visit", "detector"}``. ExpressionError for an unknown
        identifier or a syntax error.
        """
        return self._data_ids.where_dimensions(where)

    def check_where_dimensions(self, where: str, dataset_types: Iterable[DatasetType]) -> None:
        """Refuse a where-expression constraining a dimension one of ``dataset_types`` lacks.

        Selecting datasets of a type by a dimension it lacks (``visit = 1`` for a bias
        with dimensions instrument, detector) joins that dimension's table instead of
        selecting data IDs: it matches every dataset of the type or none. A dimension
        is allowed when every type has it, required or implied (``band`` of a type with
        ``physical_filter``), as are the columns of elements whose dimensions those are.
        Nothing is queried; call it before changing anything.

        Parameters
        ----------
        where : str
            The where-expression (empty: nothing to check).
        dataset_types : iterable of DatasetType
            The types the expression selects datasets of.

        Raises
        ------
        ExpressionError
            One line naming the dimensions and the first type lacking them with its
            dimensions, e.g. ``--where 'visit = 1' constrains visit, which bias lacks
            (its dimensions: instrument, detector); constrain only those (nothing was
            changed)``; also for an unknown identifier or a syntax error.
        """
        if not where:
            return
        named = self.where_dimensions(where)
        for dt in dataset_types:
            allowed = self.universe.expand(dt.dimensions)
            if extra := sorted(named - set(allowed)):
                raise ExpressionError(
                    f"--where {where!r} constrains {', '.join(extra)}, which {dt.name} lacks "
                    f"(its dimensions: {', '.join(allowed)}); constrain only those "
                    "(nothing was changed)"
                )

    def query_data_ids(
        self,
        dimensions: Iterable[str],
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        datasets: Iterable[str | DatasetType] | None = None,
        collections: CollectionArg | None = None,
        *,
        full: bool = False,
    ) -> list[DataCoordinate]:
        """Distinct data IDs of ``dimensions`` matching ``where``.

        The data IDs hold the required dimensions (with ``full`` also the implied ones),
        sorted by value.
        """
        return self._data_ids.data_ids(list(dimensions), where, bind, datasets, collections, full)

    def query_dimension_records(
        self, element: str, where: str = "", bind: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Records of ``element`` matching ``where`` (regions and timespans decoded)."""
        return self._data_ids.dimension_records(element, where, bind)

    def query_record_keys(
        self, element: str, columns: Sequence[str], **equal: Any
    ) -> set[tuple[Any, ...]]:
        """Distinct values of ``columns`` among the records of ``element`` with ``equal`` values.

        E.g. ``query_record_keys("patch", ["tract"], skymap="hsc_rings_v1")``: the tracts
        that have patches (one indexed query, no record is decoded).
        """
        return self._data_ids.key_values(element, columns, equal)

    def query_overlaps(
        self, element: str, other: str, columns: Sequence[str]
    ) -> set[tuple[Any, ...]]:
        """Distinct ``columns`` of the materialized overlaps of ``element`` and ``other``.

        E.g. ``query_overlaps("visit_detector_region", "patch", ["skymap", "tract", "patch"])``:
        every patch some detector of some visit covers. DimensionError when the universe
        materializes no overlap between the two.
        """
        return self._data_ids.overlap_keys(element, other, columns)

    def count_dimension_records(self, element: str) -> int:
        """The number of records of ``element``."""
        return self._data_ids.count_records(element)
