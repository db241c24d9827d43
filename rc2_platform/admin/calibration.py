"""Certifying calibrations by hand and decertifying validity ranges (LSST semantics).

``certify_calibrations`` puts the datasets of one type found in a RUN (or chain) into a
CALIBRATION collection with one validity range; ``decertify`` removes validity inside a
time range, trimming ranges that stick out and splitting ranges that contain it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rc2_platform.core import CollectionType, Timespan
from rc2_platform.errors import ConfigError, DatasetNotFoundError

if TYPE_CHECKING:
    from astropy.time import Time

    from rc2_platform.butler import Butler
    from rc2_platform.registry import Certification


def parse_time(value: str | None, option: str = "--begin-date") -> Time | None:
    """An ISO date or date-time (TAI) as an astropy Time; None/empty means unbounded."""
    if value is None or not value.strip():
        return None
    from astropy.time import Time

    try:
        t = Time(value.strip(), scale="tai")
    except ValueError:
        raise ConfigError(
            f"{option} {value!r} is not an ISO date or date-time (TAI), e.g. 2020-01-01 or "
            "2020-01-01T12:00:00"
        ) from None
    if not 1800 <= t.datetime.year <= 2200:  # also keeps nanoseconds inside 64 bits
        raise ConfigError(f"{option} {value!r} is outside the years 1800-2200")
    return t


def timespan_of(begin: str | None, end: str | None) -> Timespan:
    """The validity range ``[begin, end)`` from two optional ISO strings (never empty)."""
    span = Timespan.from_times(parse_time(begin), parse_time(end, "--end-date"))
    if span.end_nsec <= span.begin_nsec:
        raise ConfigError(
            f"--end-date {end} is not after --begin-date {begin}: the range [begin, end) "
            "would be empty; give the earlier date first"
        )
    return span


@dataclass
class CertifyResult:
    """Datasets certified by ``certify_calibrations``."""

    collection: str
    dataset_type: str
    timespan: Timespan
    rows: list[dict[str, Any]] = field(default_factory=list)


def certify_calibrations(
    butler: Butler,
    input_collection: str,
    calib_collection: str,
    dataset_type: str,
    *,
    begin: str | None = None,
    end: str | None = None,
    search_all: bool = False,
) -> CertifyResult:
    """Certify the ``dataset_type`` datasets of ``input_collection`` over ``[begin, end)``.

    As LSST's ``butler certify-calibrations``: when ``input_collection`` is a chain,
    only its first child is searched unless ``search_all`` (then the whole chain,
    first match per data ID). ``calib_collection`` is created if missing. All datasets
    are certified in one transaction, or none (an overlap with an existing validity
    range of the same data ID raises CalibrationConflictError).

    Raises
    ------
    DatasetNotFoundError
        No dataset of the type in the input collection.
    """
    reg = butler.registry
    timespan = timespan_of(begin, end)
    dt = reg.get_dataset_type(dataset_type)
    searched = [input_collection]
    if reg.get_collection_type(input_collection) is CollectionType.CHAINED and not search_all:
        searched = reg.get_collection_chain(input_collection)[:1]
    refs = reg.query_datasets(dt, searched, find_first=True) if searched else []
    if not refs:
        raise DatasetNotFoundError(
            f"no {dataset_type} dataset in {searched or input_collection} to certify"
            + ("; --search-all searches the whole chain" if searched != [input_collection] else "")
        )
    with reg.transaction():
        reg.register_collection(calib_collection, CollectionType.CALIBRATION)
        reg.certify(calib_collection, refs, timespan)
    result = CertifyResult(calib_collection, dt.name, timespan)
    result.rows = [
        {"dataset_type": dt.name, "run": r.run, **r.data_id.to_dict(), "id": str(r.id)}
        for r in refs
    ]
    return result


def _remaining(old: Timespan, cut: Timespan) -> list[Timespan]:
    pieces = []
    if old.begin_nsec < cut.begin_nsec:
        pieces.append(Timespan(old.begin_nsec, cut.begin_nsec))
    if old.end_nsec > cut.end_nsec:
        pieces.append(Timespan(cut.end_nsec, old.end_nsec))
    return pieces


@dataclass
class DecertifyResult:
    """Validity ranges changed by ``decertify``: before and what remains."""

    collection: str
    dataset_type: str
    timespan: Timespan
    changed: list[tuple[Certification, list[Timespan]]] = field(default_factory=list)
    dry_run: bool = False

    def rows(self) -> list[dict[str, Any]]:
        """One row per validity range touched."""
        return [
            {
                **c.data_id.to_dict(),
                "id": str(c.dataset_id),
                "before": str(c.timespan),
                "after": [str(p) for p in after],
            }
            for c, after in self.changed
        ]


def decertify(
    butler: Butler,
    calib_collection: str,
    dataset_type: str,
    *,
    begin: str | None = None,
    end: str | None = None,
    where: str = "",
    bind: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> DecertifyResult:
    """Remove validity inside ``[begin, end)`` (default: all time) from a CALIBRATION collection.

    A range inside the cut goes; one sticking out is trimmed; one containing it is
    split in two. ``where`` restricts the data IDs (a where-expression over the
    dataset type's dimensions, required or implied, and their records' columns).

    Raises
    ------
    ExpressionError
        ``where`` names a dimension (or a column of an element with one) the dataset
        type lacks: it would join other tables instead of selecting data IDs, matching
        every one of them or none. Nothing is changed.
    """
    reg = butler.registry
    timespan = timespan_of(begin, end)
    dt = reg.get_dataset_type(dataset_type)
    reg.check_where_dimensions(where, [dt])
    data_ids = reg.query_data_ids(dt.dimensions, where, bind) if where else None
    result = DecertifyResult(calib_collection, dt.name, timespan, dry_run=dry_run)
    if data_ids is not None and not data_ids:
        return result
    found = reg.query_certifications(calib_collection, dt, data_ids=data_ids, timespan=timespan)
    result.changed = [(c, _remaining(c.timespan, timespan)) for c in found]
    if found and not dry_run:
        reg.decertify(calib_collection, dt, timespan, data_ids)
    return result
