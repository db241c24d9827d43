"""The Butler: the facade users hold over a registry and a file datastore.

A repository is a folder with ``butler.yaml``, the datastore's files and, by default,
the SQLite registry ``registry.sqlite3``. A server registry (PostgreSQL, MariaDB) is
named by URL in ``butler.yaml`` *without* its password, which comes from the
environment variable ``RC2_DB_PASSWORD`` when the repository is opened.

Every write is atomic across the two halves: registry rows and files land together or
not at all (the datastore transaction wraps the registry transaction, so a failed
registry commit also removes the files written inside it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rc2_platform.butler_queries import ButlerQueries, CollectionArg
from rc2_platform.butler_removal import (
    RUNS_DIR,
    ButlerRemoval,
    run_in_use,
    run_state_directory,
    safe_run_name,
)
from rc2_platform.butler_repair import FinishedRemoval, finish_moves, finish_pending_removals
from rc2_platform.core import (
    DatasetIdGenMode,
    DatasetRef,
    DatasetType,
    Timespan,
)
from rc2_platform.core.crash_points import crash_point
from rc2_platform.core.yaml_safe import read_yaml
from rc2_platform.datastore import DatastoreRecord, FileDatastore, Transfer, load_datastore_config
from rc2_platform.datastore._pending import MANIFEST_DIR
from rc2_platform.errors import (
    ConfigError,
    DatasetNotFoundError,
    FileNotInDatastoreError,
    MigrationRequiredError,
    Rc2Error,
    RepositoryExistsError,
    RepositoryNotFoundError,
    SchemaVersionError,
)
from rc2_platform.registry import (
    DatasetColumns,
    MigrationReport,
    Registry,
    connecting,
    strip_password,
)

__all__ = [
    "BUTLER_CONFIG",
    "RUNS_DIR",
    "SQLITE_FILE",
    "Butler",
    "CollectionArg",
    "FileDataset",
    "run_in_use",
    "run_state_directory",
    "safe_run_name",
]

_log = logging.getLogger(__name__)

BUTLER_CONFIG = "butler.yaml"
SQLITE_FILE = "registry.sqlite3"
_ROOT_TOKEN = "<butlerRoot>"


@dataclass(frozen=True)
class FileDataset:
    """An existing file to ingest as one dataset.

    Parameters
    ----------
    path : Path
        The file.
    ref : DatasetRef
        The dataset it becomes (its UUID is used as given).
    formatter : str, optional
        Formatter name to record, when not the storage class's default.
    """

    path: Path
    ref: DatasetRef
    formatter: str | None = None


class Butler(ButlerQueries, ButlerRemoval):
    """Open an existing repository.

    Its removal methods come from :class:`~rc2_platform.butler_removal.ButlerRemoval`,
    its lookups and queries from :class:`~rc2_platform.butler_queries.ButlerQueries`.

    Parameters
    ----------
    root : str or Path
        Repository folder (holding ``butler.yaml``).
    collections : str or sequence of str, optional
        Default collections searched by :meth:`get` and the queries.
    run : str, optional
        Default RUN for :meth:`put`.
    read_only : bool
        Open for reading only (what query commands do): a SQLite registry is opened
        ``mode=ro``, so reading changes nothing and works on a read-only filesystem.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        collections: CollectionArg | None = None,
        run: str | None = None,
        read_only: bool = False,
    ) -> None:
        root = Path(root).resolve()
        config = self.read_config(root)
        url = str(config["registry"]["url"]).replace(_ROOT_TOKEN, str(root))
        with connecting(url):
            try:
                registry = Registry.open(url, read_only=read_only)
            except MigrationRequiredError as exc:
                raise MigrationRequiredError(
                    str(exc).replace("rc2 migrate REPO", f"rc2 migrate {root}")
                ) from None
        self._setup(root, config, registry, collections, run)
        if not read_only:
            self.finish_pending_removals(quiet=True)

    def _setup(
        self,
        root: Path,
        config: Mapping[str, Any],
        registry: Registry,
        collections: CollectionArg | None,
        run: str | None,
    ) -> None:
        self.root = root
        self.registry = registry
        try:
            self.datastore = self.open_datastore(root, config)
        except BaseException:
            registry.close()
            raise
        self.collections: list[str] = (
            [collections] if isinstance(collections, str) else list(collections or [])
        )
        self.run = run
        #: Removals killed after their commit that this butler finished (or discarded).
        self.finished_removals: list[FinishedRemoval] = []
        #: Sources of ``move`` ingests killed after their commit that this butler removed.
        self.finished_moves: list[Path] = []
        self._repair_errors: set[str] = set()

    # --- creation and configuration ---------------------------------------------------

    @staticmethod
    def read_config(root: str | Path) -> dict[str, Any]:
        """Read and check ``root/butler.yaml``."""
        path = Path(root) / BUTLER_CONFIG
        if not path.exists():
            raise RepositoryNotFoundError(
                f"no repository at {root}: {path} does not exist; create one with `rc2 create {root}`"
            )
        config = read_yaml(path)
        registry = config.get("registry") if isinstance(config, dict) else None
        if not isinstance(registry, dict) or "url" not in registry:
            raise ConfigError(f"{path} lacks registry.url; it is not a butler configuration")
        url = registry["url"]
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(
                f"registry.url in {path} is {'empty' if isinstance(url, str) else 'a ' + type(url).__name__}"
                ", not a URL text; write e.g. url: sqlite:///<butlerRoot>/registry.sqlite3"
            )
        return config

    @staticmethod
    def migrate(root: str | Path, *, dry_run: bool = False) -> MigrationReport:
        """Upgrade the registry of the repository at ``root`` to this software's schema.

        The Alembic revisions run in one transaction (see ``docs/data-management.md``);
        ``dry_run`` only says what would be done.
        """
        root = Path(root).resolve()
        config = Butler.read_config(root)
        url = str(config["registry"]["url"]).replace(_ROOT_TOKEN, str(root))
        with connecting(url):
            return Registry.migrate(url, dry_run=dry_run)

    @staticmethod
    def open_datastore(root: str | Path, config: Mapping[str, Any] | None = None) -> FileDatastore:
        """Open only the datastore of a repository (what batch workers use: no database)."""
        root = Path(root).resolve()
        config = config if config is not None else Butler.read_config(root)
        ds = config.get("datastore", {}) or {}
        ds_config = ds.get("config")
        return FileDatastore(
            root,
            load_datastore_config(Path(root) / ds_config) if ds_config else None,
        )

    @classmethod
    def create(
        cls, root: str | Path, registry_url: str | None = None, *, exist_ok: bool = False
    ) -> Butler:
        """Create a new repository at ``root`` and return it opened.

        Parameters
        ----------
        root : str or Path
            Folder for ``butler.yaml`` and the datastore (created if missing).
        registry_url : str, optional
            SQLAlchemy URL of a server registry; default: SQLite inside ``root``. A
            password in the URL is not stored (use ``RC2_DB_PASSWORD``).
        exist_ok : bool
            Return the existing repository instead of failing when one is there; also
            complete a creation that was killed after the registry schema was made but
            before ``butler.yaml`` was written.
        """
        root = Path(root).resolve()
        if (root / BUTLER_CONFIG).exists():
            if exist_ok:
                return cls(root)
            raise RepositoryExistsError(
                f"a repository already exists at {root}; open it, or choose another folder"
            )
        made_root = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        try:
            return cls._create_in(root, registry_url, exist_ok=exist_ok)
        except BaseException:
            if made_root and not any(root.iterdir()):
                root.rmdir()  # a failed creation leaves no empty folder behind
            raise

    @classmethod
    def _create_in(cls, root: Path, registry_url: str | None, *, exist_ok: bool) -> Butler:
        """The body of :meth:`create` once ``root`` exists."""
        stored_url = (
            f"sqlite:///{_ROOT_TOKEN}/{SQLITE_FILE}"
            if registry_url is None
            else strip_password(registry_url)
        )
        url = stored_url.replace(_ROOT_TOKEN, str(root)) if registry_url is None else registry_url
        with connecting(url):
            try:
                registry = Registry.create(url)
            except SchemaVersionError:
                if not exist_ok:
                    raise
                # A creation killed between the schema and butler.yaml: finish it.
                _log.warning("completing the creation of %s over its existing registry", root)
                registry = Registry.open(url)
        config = {"registry": {"url": stored_url}, "datastore": {"root": _ROOT_TOKEN}}
        try:
            crash_point("butler.create")
            (root / BUTLER_CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
        except BaseException:
            registry.close()
            raise
        _log.info("created repository at %s", root)
        # Keep the registry opened with the URL as given (it may carry the password), so
        # the returned butler works even before RC2_DB_PASSWORD is exported.
        butler = cls.__new__(cls)
        butler._setup(root, config, registry, None, None)
        return butler

    def close(self) -> None:
        """Release database connections."""
        self.registry.close()

    def __enter__(self) -> Butler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction over registry rows and datastore files.

        Files removed inside it are listed in a pending-removal manifest written just
        before the registry commits and deleted after it (see :mod:`butler_repair`).
        """
        with self.datastore.transaction(), self.registry.transaction():
            yield
            self.datastore.journal_removals()

    def finish_pending_removals(self, *, quiet: bool = False) -> list[FinishedRemoval]:
        """Finish the removals that a killed process left half done (see :mod:`butler_repair`).

        Done when a writable butler opens and before each removal; returns what this
        call did (also kept in :attr:`finished_removals`). ``quiet``: log a failure
        instead of raising it.
        """
        if not (self.root / MANIFEST_DIR).is_dir():
            return []
        done = len(self.finished_removals)
        try:
            finish_pending_removals(self)
        except (Rc2Error, OSError) as exc:
            if not quiet:
                raise
            if str(exc) not in self._repair_errors:  # once per butler, not per removal
                self._repair_errors.add(str(exc))
                _log.warning("could not finish a pending removal (run `rc2 fsck`): %s", exc)
        return self.finished_removals[done:]

    # --- dataset types and collections -----------------------------------------------------

    def register_dataset_type(self, dataset_type: DatasetType) -> bool:
        """Register a dataset type after checking the datastore can store it.

        Parameters
        ----------
        dataset_type : DatasetType
            The definition; dimensions may be given in any order and may include
            implied ones (the registry keeps the required ones, in canonical order).

        Returns
        -------
        bool
            True if registered now, False if an identical definition existed.

        Raises
        ------
        FormatterError
            The storage class has no formatter in the datastore configuration.
        ConflictingDefinitionError
            A dataset type of that name exists with another definition.
        DimensionError
            An unknown dimension.
        """
        self.datastore.formatter_for(dataset_type.storage_class)
        return self.registry.register_dataset_type(dataset_type)

    # --- put / get / exists / remove ------------------------------------------------------

    def put(
        self,
        obj: Any,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, Any],
        *,
        run: str | None = None,
        id_mode: DatasetIdGenMode = DatasetIdGenMode.UNIQUE,
    ) -> DatasetRef:
        """Store ``obj`` as a new dataset in ``run``; atomic over registry and file."""
        run = run or self.run
        if run is None:
            raise DatasetNotFoundError("put needs a RUN collection: pass run=...")
        dt = self._dataset_type(dataset_type)
        with self.transaction():
            (ref,) = self.registry.insert_datasets(dt, [data_id], run, id_mode)
            # The dataset is new to the registry, so a file at its path can only be left
            # by a killed write: replace it.
            record = self.datastore.put(obj, ref, overwrite=True)
            self.registry.insert_datastore_records([record])
            crash_point("butler.put.before_commit")
        return ref

    def get(
        self,
        dataset_type: str | DatasetType | DatasetRef,
        data_id: Mapping[str, Any] | None = None,
        *,
        collections: CollectionArg | None = None,
        timespan: Timespan | None = None,
    ) -> Any:
        """Read one dataset, given its ref, or its type and data ID (find-first search)."""
        ref = self.resolve(dataset_type, data_id, collections=collections, timespan=timespan)
        record = self.datastore_records([ref]).get(ref.id)
        if record is None:
            raise FileNotInDatastoreError(
                f"{ref} is registered but has no file record; it was never stored or was unstored"
            )
        return self.datastore.get(ref, record)

    def exists(
        self,
        dataset_type: str | DatasetType | DatasetRef,
        data_id: Mapping[str, Any] | None = None,
        *,
        collections: CollectionArg | None = None,
    ) -> bool:
        """Whether the dataset is registered and its file is present."""
        try:
            ref = self.resolve(dataset_type, data_id, collections=collections)
        except DatasetNotFoundError:
            return False
        record = self.datastore_records([ref]).get(ref.id)
        return record is not None and self.datastore.exists(ref, record)

    # --- ingest and batch registration -----------------------------------------------------

    def ingest(
        self,
        datasets: Sequence[FileDataset],
        *,
        transfer: Transfer | str = Transfer.AUTO,
    ) -> list[DatasetRef]:
        """Ingest existing files as datasets whose refs are given (atomic, batched).

        Refs that already exist with the same UUID (deterministic ingest ids) are skipped,
        so re-running an ingest is a no-op. Returns the refs that were new.

        Crash repair: a file already at the path of a new ref can only have been left by
        an ingest killed before its registry commit; it is adopted if identical to the
        source (same link target, inode, or size and SHA-256), otherwise replaced.
        """
        if not datasets:
            return []
        with self.transaction():
            new = {r.id for r in self.registry.import_datasets([d.ref for d in datasets])}
            records = [
                self.datastore.ingest(d.path, d.ref, transfer, formatter=d.formatter, repair=True)
                for d in datasets
                if d.ref.id in new
            ]
            self.registry.insert_datastore_records(records)
            if transfer == Transfer.MOVE and len(new) < len(datasets):
                finish_moves(self, [d for d in datasets if d.ref.id not in new])
            crash_point("butler.ingest.before_commit")
        crash_point("butler.ingest.committed")
        return [d.ref for d in datasets if d.ref.id in new]

    def register_outputs(self, stored: Sequence[tuple[DatasetRef, DatastoreRecord]]) -> int:
        """Register datasets whose files a worker already wrote (one transaction).

        Used by execution: workers write through the datastore alone and the orchestrating
        side calls this per finished job. Already registered refs are skipped; returns the
        number newly registered.
        """
        if not stored:
            return 0
        with self.registry.transaction():
            new = {r.id for r in self.registry.import_datasets([ref for ref, _ in stored])}
            self.registry.insert_datastore_records([rec for ref, rec in stored if ref.id in new])
            crash_point("butler.register_outputs.before_commit")
        crash_point("butler.register_outputs.committed")
        return len(new)

    def register_output_columns(self, run: str, batches: Sequence[DatasetColumns]) -> int:
        """Register column-wise the datasets whose files workers wrote (one transaction).

        The bulk form of :meth:`register_outputs` (``rc2 aggregate``): see
        :meth:`Registry.import_dataset_columns`. Returns the number newly registered.
        """
        return self.registry.import_dataset_columns(run, batches)
