"""Removing RUNs, datasets and dataset types: checked first, refused with the users listed."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rc2_platform.core import CollectionType, DatasetRef
from rc2_platform.errors import (
    CollectionError,
    CollectionInUseError,
    DatasetTypeInUseError,
    MissingCollectionError,
)

if TYPE_CHECKING:
    from rc2_platform.butler import Butler
    from rc2_platform.registry import CollectionUse


def _listed(users: Sequence[CollectionUse]) -> str:
    return ", ".join(f"{u.type.name} {u.name!r} ({u.datasets} dataset(s))" for u in users)


@dataclass
class RemoveRunsResult:
    """What ``remove_runs`` removed (or, in a dry run, would remove): one row per RUN."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    #: RUNs named whose removal, killed after its commit, was finished now.
    finished: list[str] = field(default_factory=list)

    @property
    def datasets(self) -> int:
        """Datasets removed over every RUN."""
        return sum(int(r["datasets"]) for r in self.rows)


def finished_runs(butler: Butler) -> set[str]:
    """RUNs whose removal, killed after its commit, this butler finished."""
    return {r for f in butler.finished_removals if f.committed for r in f.runs}


def match_runs(
    butler: Butler, patterns: Sequence[str], finished: set[str] | None = None
) -> list[str]:
    """RUN collections matching the glob ``patterns``, sorted (bad patterns refused).

    A pattern without glob characters must name an existing RUN; a glob must match at
    least one RUN. A pattern naming (or matching) only ``finished`` RUNs (a removal of
    them was killed after its commit and has just been finished) is not an error.
    """
    finished = finished or set()
    runs = butler.registry.query_collections(types=[CollectionType.RUN])
    out: set[str] = set()
    for pattern in patterns:
        if pattern in finished or (
            not fnmatch.filter(runs, pattern) and fnmatch.filter(finished, pattern)
        ):
            continue
        if not any(ch in pattern for ch in "*?["):
            ctype = butler.registry.get_collection_type(pattern)  # MissingCollectionError
            if ctype is not CollectionType.RUN:
                raise MissingCollectionError(
                    f"collection {pattern!r} is {ctype.name}, not a RUN; `rc2 collections "
                    "remove` removes other collections"
                )
            out.add(pattern)
            continue
        found = fnmatch.filter(runs, pattern)
        if not found:
            raise MissingCollectionError(
                f"no RUN collection matches {pattern!r}; `rc2 collections list REPO --type RUN` "
                "lists them"
            )
        out.update(found)
    return sorted(out)


def remove_runs(
    butler: Butler,
    patterns: Sequence[str],
    *,
    unlink_from_chains: bool = False,
    unlink: bool = False,
    dry_run: bool = False,
) -> RemoveRunsResult:
    """Remove RUN collections with their datasets, files, journal and provenance.

    Every RUN is checked before any is removed: a RUN listed by a chain is refused
    unless ``unlink_from_chains``; a RUN whose datasets are tagged or certified in other
    collections is refused unless ``unlink``; a RUN being executed is refused.

    Parameters
    ----------
    butler : Butler
        The repository.
    patterns : sequence of str
        RUN names or glob patterns (``u/someone/*``).
    unlink_from_chains : bool
        Drop the RUNs from the chains that list them.
    unlink : bool
        Also drop their datasets from the TAGGED and CALIBRATION collections using them.
    dry_run : bool
        Check and report, change nothing.

    A RUN whose earlier removal was killed after its commit is gone from the registry;
    the files and folder it left are deleted when the butler opens (or here), and
    naming it again is not an error: it is listed in ``finished``.

    Raises
    ------
    CollectionInUseError
        Chains or collections still use a RUN; the message lists them all.
    MissingCollectionError
        A pattern matches no RUN.
    """
    if not dry_run:
        butler.finish_pending_removals(quiet=True)
    finished = finished_runs(butler)
    runs = match_runs(butler, patterns, finished)
    reg = butler.registry
    problems: list[str] = []
    result = RemoveRunsResult(dry_run=dry_run)
    result.finished = sorted(
        r for r in finished if any(fnmatch.fnmatchcase(r, p) for p in patterns)
    )
    for run in runs:
        chains = reg.collection_parents(run)
        users = reg.dataset_users(runs=[run])
        if chains and not unlink_from_chains:
            problems.append(f"RUN {run!r} is in chain(s) {chains} (--unlink-from-chains)")
        if users and not unlink:
            problems.append(f"RUN {run!r} has datasets used by {_listed(users)} (--unlink)")
        # A live orchestrator executing the RUN: refused at once.
        butler.check_run_removable(run, unlink=True, unlink_from_chains=True)
        counts = {
            dt.name: len(reg.query_datasets(dt, [run], find_first=False))
            for dt in reg.query_dataset_types()
        }
        result.rows.append(
            {
                "run": run,
                "datasets": sum(counts.values()),
                "dataset_types": {k: v for k, v in counts.items() if v},
                "unlinked_from_chains": chains,
                "unlinked_from": [u.name for u in users],
            }
        )
    if problems:
        raise CollectionInUseError(
            "refusing to remove: " + "; ".join(problems) + "; nothing was removed"
        )
    if dry_run:
        return result
    for run in runs:
        butler.remove_collection(run, unlink=unlink, unlink_from_chains=unlink_from_chains)
    return result


@dataclass
class PruneResult:
    """Datasets removed by ``prune_datasets`` (in a dry run: that would be removed).

    ``refs`` are the datasets this call's transaction deleted; ``already_removed`` the
    ones it found but another removal (a concurrent ``rc2 prune-datasets``) deleted
    first, after they were found.
    """

    refs: list[DatasetRef] = field(default_factory=list)
    unlinked_from: list[str] = field(default_factory=list)
    dry_run: bool = False
    already_removed: list[DatasetRef] = field(default_factory=list)

    def counts(self) -> list[dict[str, Any]]:
        """One row per (dataset type, RUN): how many datasets this call removed (would
        remove) and how many it found already removed by another."""
        by: dict[tuple[str, str], list[int]] = {}
        for k, refs in enumerate((self.refs, self.already_removed)):
            for r in refs:
                by.setdefault((r.dataset_type.name, r.run), [0, 0])[k] += 1
        return [
            {"dataset_type": t, "run": run, "datasets": n, "already_removed": gone}
            for (t, run), (n, gone) in sorted(by.items())
        ]


def prune_datasets(
    butler: Butler,
    collections: Sequence[str],
    *,
    dataset_types: Sequence[str] | None = None,
    where: str = "",
    bind: Mapping[str, Any] | None = None,
    unlink: bool = False,
    unstore: bool = True,
    dry_run: bool = False,
) -> PruneResult:
    """Remove the datasets found in ``collections`` (every match, not only the first).

    The datasets leave the registry (their RUN, and any TAGGED or CALIBRATION
    collection searched) and, with ``unstore``, their files go, in one transaction.
    Datasets also used by TAGGED or CALIBRATION collections *not* searched are refused
    unless ``unlink``. ``where`` may constrain only dimensions every type in
    ``dataset_types`` has (required or implied) and their records' columns; without
    ``dataset_types``, every type any of whose datasets it selects.

    Two prunes of the same datasets at once (two processes) each report what their own
    transaction deleted (``PruneResult.refs``): the later one waits for the first and
    finds them gone (``PruneResult.already_removed``), which is not an error.

    Raises
    ------
    CollectionError
        ``collections`` is empty: a removal acts only on collections named explicitly
        (an empty list is neither "none" nor "every collection" here).
    CollectionInUseError
        Other collections use some of the datasets; the message lists them.
    ExpressionError
        ``where`` constrains a dimension a type lacks (it would join that dimension
        instead of selecting data IDs, pruning every dataset of the type); nothing is
        removed.
    """
    if not [c for c in collections if c.strip()]:
        raise CollectionError(
            f"prune_datasets: collections={list(collections)!r} names no collection; name the "
            "collections to prune explicitly (an empty list is not every collection); "
            "nothing was removed"
        )
    reg = butler.registry
    types = (
        [reg.get_dataset_type(t) for t in dataset_types]
        if dataset_types
        else reg.query_dataset_types()
    )
    if dataset_types:
        reg.check_where_dimensions(where, types)
    seen: dict[Any, DatasetRef] = {}
    for dt in types:
        found = reg.query_datasets(dt, list(collections), where, bind, find_first=False)
        if found and not dataset_types:
            reg.check_where_dimensions(where, [dt])
        for ref in found:
            seen.setdefault(ref.id, ref)
    refs = sorted(seen.values(), key=lambda r: (r.dataset_type.name, r.run, str(r.id)))
    users = reg.dataset_users(refs=refs, exclude=collections) if refs else []
    if users and not unlink:
        raise CollectionInUseError(
            f"refusing to prune {len(refs)} dataset(s): some are used by {_listed(users)}; "
            "add those collections to --collections, or pass --unlink; nothing was removed"
        )
    result = PruneResult(refs, [u.name for u in users], dry_run)
    if not dry_run and refs:
        result.refs = butler.remove(refs, unstore=unstore)
        removed = {r.id for r in result.refs}
        result.already_removed = [r for r in refs if r.id not in removed]
    return result


@dataclass
class RemoveTypeResult:
    """What ``remove_dataset_type`` removed: the type and its datasets per RUN."""

    name: str
    datasets_by_run: dict[str, int]
    used_by: list[str]
    dry_run: bool = False
    #: True when an earlier removal of the type, killed after its commit, was finished now.
    finished: bool = False


def remove_dataset_type(
    butler: Butler, name: str, *, with_datasets: bool = False, dry_run: bool = False
) -> RemoveTypeResult:
    """Remove dataset type ``name``; refused while it has datasets unless ``with_datasets``.

    With ``with_datasets`` every dataset of the type goes too (rows, memberships and
    files, in one transaction).

    Raises
    ------
    DatasetTypeInUseError
        The type has datasets; the message lists the RUNs (and TAGGED / CALIBRATION
        collections) holding them.
    MissingDatasetTypeError
        No such dataset type.
    """
    reg = butler.registry
    if not dry_run:
        butler.finish_pending_removals(quiet=True)
    finished = any(f.committed and name in f.dataset_types for f in butler.finished_removals)
    if finished and name not in {t.name for t in reg.query_dataset_types()}:
        return RemoveTypeResult(name, {}, [], dry_run, finished=True)
    dt = reg.get_dataset_type(name)
    by_run = reg.count_datasets_by_run(dt)
    users = reg.dataset_users(dataset_type=dt)
    if by_run and not with_datasets:
        runs = ", ".join(f"{r!r} ({n})" for r, n in sorted(by_run.items()))
        also = f"; also in {_listed(users)}" if users else ""
        raise DatasetTypeInUseError(
            f"dataset type {name!r} still has {sum(by_run.values())} dataset(s) in RUN(s) "
            f"{runs}{also}; pass --with-datasets to remove them too, or prune them first"
        )
    result = RemoveTypeResult(name, by_run, [u.name for u in users], dry_run)
    if dry_run:
        return result
    refs = reg.query_datasets(dt, sorted(by_run), find_first=False) if by_run else []
    records = butler.datastore_records(refs)
    with butler.transaction():
        butler.datastore.note_removal(dataset_types=[name])
        reg.remove_dataset_type(name)
        for ref in refs:
            rec = records.get(ref.id)
            if rec is not None:
                butler.datastore.remove(ref, rec)
    return result
