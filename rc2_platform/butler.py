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

import fcntl
import hashlib
import logging
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rc2_platform.butler_repair import FinishedRemoval, finish_moves, finish_pending_removals
from rc2_platform.core import (
    CollectionType,
    DataCoordinate,
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
    CollectionError,
    CollectionInUseError,
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

_log = logging.getLogger(__name__)

BUTLER_CONFIG = "butler.yaml"
#: Folder of a repository holding one sub-folder of execution state per RUN (journal,
#: lock, job folders): ``REPO/_runs/<safe run name>/``. Removing a RUN removes it.
RUNS_DIR = "_runs"
SQLITE_FILE = "registry.sqlite3"
_ROOT_TOKEN = "<butlerRoot>"

CollectionArg = str | Sequence[str]


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


def safe_run_name(run: str) -> str:
    """Return a file-name-safe, collision-free token for a RUN name.

    ``HSC/runs/RC2`` becomes ``HSC_runs_RC2-<8 hex digits of its SHA-1>``.
    """
    token = re.sub(r"[^A-Za-z0-9._-]", "_", run).strip("._") or "run"
    return f"{token[:80]}-{hashlib.sha1(run.encode()).hexdigest()[:8]}"


def run_state_directory(root: str | Path, run: str) -> Path:
    """``REPO/_runs/<safe run name>``: a RUN's execution state (not created here)."""
    return Path(root).resolve() / RUNS_DIR / safe_run_name(run)


def run_in_use(directory: Path) -> str | None:
    """Who executes the RUN whose state folder is ``directory``, if a live process does.

    An orchestrator (``rc2 run``) holds an exclusive ``flock`` on ``lock`` for its life.
    (A workflow's recorded token, DAGMan's or Dagster's, does not stop a removal: the
    operator asking for it is the one who knows that workflow is gone.)
    """
    path = directory / "lock"
    if not path.exists():
        return None
    text = path.read_text()
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return text or "another process"
    finally:
        os.close(fd)
    return None


class Butler:
    """Open an existing repository.

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

    def remove_collection(
        self,
        name: str,
        *,
        unstore: bool = True,
        unlink: bool = False,
        unlink_from_chains: bool = False,
    ) -> int:
        """Remove a collection; for a RUN also its datasets and (``unstore``) their files.

        Atomic: the files are deleted only once the registry rows are gone. A RUN's
        execution state (``REPO/_runs/<run>/``: journal, lock, job folders) goes with it,
        as its provenance dataset goes with its datasets.

        Parameters
        ----------
        name : str
            The collection.
        unstore : bool
            Delete the RUN's files (False: leave them on disk).
        unlink : bool
            Allow removing a RUN whose datasets are tagged or certified in other
            collections: they leave those collections too.
        unlink_from_chains : bool
            Drop the collection from the chains that list it, instead of refusing.

        Returns
        -------
        int
            The number of datasets removed (0 for TAGGED, CHAINED, CALIBRATION).

        Raises
        ------
        CollectionInUseError
            A RUN's datasets are used by TAGGED or CALIBRATION collections (without
            ``unlink``); the message lists them.
        CollectionError
            The RUN is being executed (a live orchestrator holds its lock), or the
            collection is a child of a chain (without ``unlink_from_chains``).
        """
        self.finish_pending_removals(quiet=True)
        if (
            any(f.committed and name in f.runs for f in self.finished_removals)
            and name not in self.registry.query_collections()
        ):
            return 0  # its removal, killed after the commit, was finished on opening
        refs: list[DatasetRef] = []
        is_run = self.registry.get_collection_type(name) is CollectionType.RUN
        if is_run:
            self.check_run_removable(name, unlink=unlink, unlink_from_chains=unlink_from_chains)
            for dt in self.registry.query_dataset_types():
                refs.extend(self.registry.query_datasets(dt, [name], find_first=False))
        records = self.datastore_records(refs) if unstore else {}
        with self.transaction():
            self.registry.remove_collection(name, unlink_from_chains=unlink_from_chains)
            for ref in refs:
                rec = records.get(ref.id)
                if rec is not None:
                    self.datastore.remove(ref, rec)
            if is_run:
                self.datastore.note_removal(runs=[name])
                self.datastore.remove_folder(name, f"{RUNS_DIR}/{safe_run_name(name)}")
        return len(refs)

    def check_run_removable(
        self, run: str, *, unlink: bool = False, unlink_from_chains: bool = False
    ) -> None:
        """Refuse a RUN being executed, or used by chains / TAGGED / CALIBRATION collections.

        Raises
        ------
        CollectionError
            A live orchestrator executes the RUN.
        CollectionInUseError
            Chains list the RUN (unless ``unlink_from_chains``) or other collections
            use its datasets (unless ``unlink``); the message names every one.
        """
        holder = run_in_use(run_state_directory(self.root, run))
        if holder is not None:
            raise CollectionError(
                f"RUN {run!r} is being executed ({holder.strip()}); cancel it "
                f"(`rc2 cancel {self.root} {run}`) or let it end before removing it"
            )
        problems = []
        chains = [] if unlink_from_chains else self.registry.collection_parents(run)
        if chains:
            problems.append(f"is in chain(s) {chains} (--unlink-from-chains drops it from them)")
        users = [] if unlink else self.registry.dataset_users(runs=[run])
        if users:
            listed = ", ".join(f"{u.type.name} {u.name!r} ({u.datasets})" for u in users)
            problems.append(
                f"has datasets used by {listed} (decertify or untag them first, or pass "
                "--unlink to remove them from those collections too)"
            )
        if problems:
            raise CollectionInUseError(f"RUN {run!r} " + " and ".join(problems))

    # --- helpers ------------------------------------------------------------------------

    def _collections(self, collections: CollectionArg | None) -> list[str]:
        if collections is None:
            if not self.collections:
                raise DatasetNotFoundError(
                    "no collections given to search; pass --collections (or collections=...)"
                )
            return self.collections
        return [collections] if isinstance(collections, str) else list(collections)

    def _dataset_type(self, dataset_type: str | DatasetType) -> DatasetType:
        if isinstance(dataset_type, DatasetType):
            return dataset_type
        return self.registry.get_dataset_type(dataset_type)

    def datastore_records(self, refs: Iterable[DatasetRef]) -> dict[uuid.UUID, DatastoreRecord]:
        """The datastore records of ``refs`` (one query per 5,000 refs)."""
        return self.registry.get_datastore_records(refs)

    def get_uris(self, refs: Iterable[DatasetRef]) -> dict[uuid.UUID, str]:
        """``file://`` URIs of the datasets' files (datasets without a file are left out)."""
        records = self.datastore_records(refs)
        return {i: self.datastore.absolute(r).as_uri() for i, r in records.items()}

    def resolve(
        self,
        dataset_type: str | DatasetType | DatasetRef,
        data_id: Mapping[str, Any] | None = None,
        *,
        collections: CollectionArg | None = None,
        timespan: Timespan | None = None,
    ) -> DatasetRef:
        """Find the ref of one dataset (a ref is returned as is)."""
        if isinstance(dataset_type, DatasetRef):
            return dataset_type
        dt = self._dataset_type(dataset_type)
        ref = self.registry.find_dataset(
            dt, data_id or {}, self._collections(collections), timespan
        )
        if ref is None:
            raise DatasetNotFoundError(
                f"no {dt.name} dataset with data ID {dict(data_id or {})} in collections "
                f"{self._collections(collections)}"
            )
        return ref

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

    def remove(self, refs: Iterable[DatasetRef], *, unstore: bool = True) -> None:
        """Remove datasets from the registry and (with ``unstore``) their files."""
        self.finish_pending_removals(quiet=True)
        refs = list(refs)
        records = self.datastore_records(refs) if unstore else {}
        with self.transaction():
            self.registry.remove_datasets(refs)
            for ref in refs:
                rec = records.get(ref.id)
                if rec is not None:
                    self.datastore.remove(ref, rec)

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

    # --- queries ----------------------------------------------------------------------------

    def query_datasets(
        self,
        dataset_type: str | DatasetType,
        *,
        collections: CollectionArg | None = None,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        find_first: bool = True,
    ) -> list[DatasetRef]:
        """Datasets of one type in ``collections`` matching ``where``."""
        return self.registry.query_datasets(
            dataset_type, self._collections(collections), where, bind, find_first
        )

    def query_data_ids(
        self, dimensions: Iterable[str], *, where: str = "", bind: Mapping[str, Any] | None = None
    ) -> list[DataCoordinate]:
        """Data IDs of ``dimensions`` matching ``where``."""
        return self.registry.query_data_ids(dimensions, where, bind)

    def query_dimension_records(
        self, element: str, *, where: str = "", bind: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Dimension records of ``element`` matching ``where``."""
        return self.registry.query_dimension_records(element, where, bind)
