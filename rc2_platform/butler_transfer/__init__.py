"""Moving datasets between repositories: export to a file, import from one, transfer.

Library calls first (the ``rc2 export`` / ``rc2 import`` / ``rc2 transfer-datasets``
commands call them)::

    from rc2_platform.butler_transfer import export_datasets, import_datasets, transfer_datasets

    with Butler("repo") as src:
        export_datasets(src, "out.yaml", ["HSC/runs/RC2"], with_files="out_files")
    with Butler("other") as dest:
        import_datasets(dest, "out.yaml")
    with Butler("repo") as src, Butler("pg_repo") as dest:
        transfer_datasets(
            src, dest, ["HSC/runs/RC2"], where="tract = 9615", dataset_types=["deepCoadd*"]
        )

Every load is checked first and written in one transaction, and is idempotent (datasets
already present with the same UUID are skipped). The file format is in
``docs/data-management.md``; all SQL stays in the registry.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rc2_platform.butler_transfer._bundle import Bundle, DatasetGroup, UniverseTag, collect
from rc2_platform.butler_transfer._files import (
    TRANSFER_MODES,
    PlacedFiles,
    check_mode,
    relative_path,
)
from rc2_platform.butler_transfer._format import (
    FORMAT_VERSION,
    check_compatible,
    from_document,
    read_file,
    to_document,
    write_file,
)
from rc2_platform.butler_transfer._load import load
from rc2_platform.butler_transfer._records_check import drop_duplicate_records
from rc2_platform.butler_transfer._sources import ALLOW_OUTSIDE_FLAG, ExportFiles, RepositoryFiles
from rc2_platform.errors import ExportFormatError, FileNotInDatastoreError

if TYPE_CHECKING:
    from rc2_platform.butler import Butler

__all__ = [
    "ALLOW_OUTSIDE_FLAG",
    "FORMAT_VERSION",
    "TRANSFER_MODES",
    "Bundle",
    "DatasetGroup",
    "TransferReport",
    "export_datasets",
    "import_datasets",
    "transfer_datasets",
]


@dataclass
class TransferReport:
    """What an export, import or transfer did (``--json`` prints :meth:`to_dict`).

    ``registry_seconds`` is the time spent in registry calls, ``file_seconds`` moving
    files and ``format_seconds`` writing or reading the YAML file.
    """

    operation: str
    counts: dict[str, int] = field(default_factory=dict)
    new_datasets: int | None = None
    files_transferred: int = 0
    registry_seconds: float = 0.0
    file_seconds: float = 0.0
    format_seconds: float = 0.0
    dry_run: bool = False
    #: Seconds per step (collecting for an export, loading for an import; both for a
    #: transfer, collecting ones prefixed ``collect_``).
    phases: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of this process per step (a database server's are not in them).
    cpu_phases: dict[str, float] = field(default_factory=dict)
    #: Existing dimension records kept with the destination's values although the
    #: load's differ (only with ``skip_differing_records``), one line each.
    kept_records: list[str] = field(default_factory=list)
    #: An export whose files lie outside its folder (written without ``with_files``, into
    #: a folder beside it, or as symlinks): importing it needs ``allow_outside_files``.
    outside_files: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "operation": self.operation,
            **self.counts,
            "new_datasets": self.new_datasets,
            "files_transferred": self.files_transferred,
            "registry_seconds": round(self.registry_seconds, 3),
            "file_seconds": round(self.file_seconds, 3),
            "format_seconds": round(self.format_seconds, 3),
            "dry_run": self.dry_run,
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "cpu_phases": {k: round(v, 3) for k, v in self.cpu_phases.items()},
            "kept_records": list(self.kept_records),
            "outside_files": self.outside_files,
        }


def _schema_version() -> str:
    from rc2_platform.registry import SCHEMA_VERSION

    return SCHEMA_VERSION


def export_datasets(
    butler: Butler,
    path: str | Path,
    collections: Sequence[str],
    *,
    where: str = "",
    dataset_types: Sequence[str] = (),
    with_files: str | Path | None = None,
    transfer: str = "copy",
    dry_run: bool = False,
) -> TransferReport:
    """Export the datasets of ``collections`` (and what they need) to the YAML file ``path``.

    With ``with_files`` the datasets' files are copied (or linked: ``transfer``) into that
    folder, and the file names them relative to itself; without, the file names the
    source datastore's absolute root, so an import on the same machine can read them
    there. A dataset whose file is missing stops the export; nothing is left behind.

    An import reads files outside the export's folder (the folder holding ``path``) only
    when allowed (``allow_outside_files``): ``TransferReport.outside_files`` says whether
    this export needs it (no ``with_files``, ``with_files`` outside that folder, or
    ``transfer="symlink"``).
    """
    bundle = collect(butler, collections, where=where, dataset_types=dataset_types)
    report = TransferReport(
        "export",
        bundle.counts(),
        registry_seconds=bundle.registry_seconds,
        dry_run=dry_run,
        phases=dict(bundle.phases),
        cpu_phases=dict(bundle.cpu_phases),
    )
    path = Path(path)
    if dry_run:
        return report
    if with_files is not None:
        t0 = time.perf_counter()
        files_dir = Path(with_files)
        report.files_transferred = _copy_files(butler, bundle, files_dir, transfer)
        report.file_seconds = time.perf_counter() - t0
        files_root = os.path.relpath(files_dir.resolve(), path.resolve().parent)
        outside = transfer == "symlink" or files_root.split(os.sep)[0] == os.pardir
    else:
        files_root = str(butler.datastore.root)
        outside = True
    report.outside_files = outside and report.counts["files"] > 0
    t0 = time.perf_counter()
    write_file(to_document(bundle, files_root), path)
    report.format_seconds = time.perf_counter() - t0
    return report


def _copy_files(butler: Butler, bundle: Bundle, files_dir: Path, transfer: str) -> int:
    """Copy every dataset's file under ``files_dir``; the groups' paths become relative to
    it. Returns the number of files copied."""
    check_mode(transfer)
    placed = PlacedFiles()
    try:
        for g, k, rec in bundle.file_records():
            src = butler.datastore.absolute(rec)
            if not src.is_file():
                raise FileNotInDatastoreError(
                    f"dataset {g.describe(k)} has no file at {src}; nothing was exported"
                )
            rel = relative_path(rec)
            target = files_dir / rel
            target.unlink(missing_ok=True)
            placed.add(src, target, transfer)
            assert g.paths is not None  # file_records yields only groups with paths
            g.paths[k] = rel
    except BaseException:
        placed.undo()
        raise
    return len(placed.paths)


def import_datasets(
    butler: Butler,
    path: str | Path,
    *,
    transfer: str = "copy",
    dry_run: bool = False,
    skip_differing_records: bool = False,
    allow_outside_files: bool = False,
) -> TransferReport:
    """Import an export file into ``butler`` (checked first, one transaction, idempotent).

    A file of another dimension universe, registry schema or format version is refused,
    as are conflicting dataset types, dimension records existing with other values, a
    record the file holds twice with different values and missing files; nothing is
    written then. With ``skip_differing_records`` such records
    keep the repository's values instead (listed in ``TransferReport.kept_records``).

    The files must be inside the export's folder (the folder holding ``path``): an
    absolute path or ``files_root``, a ``..`` or a symlink leading out of it is refused
    (:class:`~rc2_platform.errors.OutsideFilesError`, nothing written) unless
    ``allow_outside_files`` (an export you trust, e.g. one made without ``with_files``).
    """
    path = Path(path)
    t0 = time.perf_counter()
    doc = read_file(path)
    tag = UniverseTag.of(butler.registry.universe)
    check_compatible(doc, path, tag, _schema_version())
    bundle = from_document(doc, tag)
    universe = butler.registry.universe
    drop_duplicate_records(bundle.records, lambda e: universe[e].required, str(path))
    format_seconds = time.perf_counter() - t0
    files_root = doc.get("files_root")
    source = None
    if files_root is not None and bundle.counts()["files"]:
        source = ExportFiles(path, files_root, allow_outside=allow_outside_files)
    loaded = load(
        butler,
        bundle,
        source,
        transfer=transfer,
        dry_run=dry_run,
        skip_differing_records=skip_differing_records,
    )
    return TransferReport(
        "import",
        loaded.counts,
        None if dry_run else loaded.new_datasets,
        loaded.files_transferred,
        loaded.registry_seconds,
        loaded.file_seconds,
        format_seconds,
        dry_run,
        loaded.phases,
        loaded.cpu_phases,
        loaded.kept_records,
    )


def transfer_datasets(
    source: Butler,
    dest: Butler,
    collections: Sequence[str],
    *,
    where: str = "",
    dataset_types: Sequence[str] = (),
    transfer: str = "copy",
    dry_run: bool = False,
    skip_differing_records: bool = False,
    allow_outside_files: bool = False,
) -> TransferReport:
    """Copy the datasets of ``collections`` with their files and records to ``dest``.

    Works between any two registries (SQLite, PostgreSQL, MariaDB); the dimension
    records the datasets need come along; running it again transfers nothing new. A
    record existing in ``dest`` with other values is refused (nothing written) unless
    ``skip_differing_records``: then ``dest``'s is kept (``TransferReport.kept_records``).
    A file outside ``source``'s datastore root (ingested in place with ``direct``) is
    refused (nothing written) unless ``allow_outside_files``.
    """
    src_tag = UniverseTag.of(source.registry.universe)
    dest_tag = UniverseTag.of(dest.registry.universe)
    if src_tag.digest != dest_tag.digest:
        raise ExportFormatError(
            f"{source.root} has dimension universe {src_tag} but {dest.root} has {dest_tag}; "
            "migrate the older one with `rc2 migrate` first"
        )
    bundle = collect(source, collections, where=where, dataset_types=dataset_types)
    loaded = load(
        dest,
        bundle,
        RepositoryFiles(source, allow_outside=allow_outside_files),
        transfer=transfer,
        dry_run=dry_run,
        skip_differing_records=skip_differing_records,
    )
    return TransferReport(
        "transfer",
        loaded.counts,
        None if dry_run else loaded.new_datasets,
        loaded.files_transferred,
        bundle.registry_seconds + loaded.registry_seconds,
        loaded.file_seconds,
        0.0,
        dry_run,
        {**{f"collect_{k}": v for k, v in bundle.phases.items()}, **loaded.phases},
        {**{f"collect_{k}": v for k, v in bundle.cpu_phases.items()}, **loaded.cpu_phases},
        loaded.kept_records,
    )
