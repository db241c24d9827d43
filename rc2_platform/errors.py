"""The exception hierarchy of rc2_platform.

Every error a user can cause derives from :class:`Rc2Error`. Messages say what was
wrong, with which value (collection, dataset type, data ID, file), and what to do.
The CLI prints ``str(error)`` on one line and exits non-zero; it never shows a
traceback for these.
"""

from __future__ import annotations


class Rc2Error(Exception):
    """Base class of every user-facing error raised by rc2_platform."""


class ConfigError(Rc2Error, ValueError):
    """A configuration file or value is invalid."""


class InvalidNameError(Rc2Error, ValueError):
    """A collection, dataset type or dimension value breaks the name grammar (core/names.py)."""


# --- registry -------------------------------------------------------------------------


class ExportFormatError(ConfigError):
    """An export file that is not one, or of another format, schema or dimension universe."""


class RegistryError(Rc2Error):
    """Base class of registry errors."""


class SchemaVersionError(RegistryError):
    """The registry database was written by an incompatible schema version."""


class MigrationRequiredError(SchemaVersionError):
    """The registry has an older schema that ``rc2 migrate REPO`` upgrades."""


class RepositoryNotFoundError(RegistryError, FileNotFoundError):
    """No repository (``butler.yaml``) exists at the given location."""


class RepositoryExistsError(RegistryError, FileExistsError):
    """A repository already exists where a new one was to be created."""


class RegistryConnectionError(RegistryError):
    """The registry database could not be reached or its URL is unusable."""


class DimensionError(RegistryError, KeyError):
    """An unknown dimension, or a data ID that is incomplete or inconsistent."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that.
        return str(self.args[0]) if self.args else ""


class DimensionValueError(DimensionError):
    """A data ID value does not exist in the registry or has the wrong type."""


class DatasetTypeError(RegistryError):
    """Base class of dataset type errors."""


class MissingDatasetTypeError(DatasetTypeError, KeyError):
    """A dataset type is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConflictingDefinitionError(DatasetTypeError):
    """A dataset type or dimension record was re-registered with a different definition."""


class CollectionError(RegistryError):
    """Base class of collection errors."""


class MissingCollectionError(CollectionError, KeyError):
    """A collection does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CollectionTypeError(CollectionError):
    """An operation is not valid for the collection's type (e.g. a put into a CHAINED)."""


class CollectionCycleError(CollectionError):
    """A CHAINED collection would contain itself."""


class DatasetError(RegistryError):
    """Base class of dataset errors."""


class DatasetConflictError(DatasetError):
    """A dataset with the same dataset type, data ID and RUN already exists."""


class CalibrationConflictError(DatasetError):
    """Two calibrations of the same dataset type and data ID would have overlapping validity."""


class DatasetNotFoundError(DatasetError, LookupError):
    """A requested dataset does not exist."""


class QueryError(RegistryError):
    """Base class of query errors."""


class ExpressionSyntaxError(QueryError):
    """A where-expression could not be parsed; the message points at the offending part."""


class ExpressionError(QueryError):
    """A where-expression parsed but refers to unknown identifiers, binds or wrong types."""


# --- datastore ------------------------------------------------------------------------


class DatastoreError(Rc2Error):
    """Base class of datastore errors."""


class PathTraversalError(DatastoreError):
    """A data ID value would make a path that leaves the datastore root."""


class OutsideFilesError(PathTraversalError):
    """An export file or source repository names a file outside its folder (absolute, ``..``
    or a symlink leading out) and reading such files was not allowed
    (``--allow-outside-files``)."""


class FormatterError(DatastoreError):
    """An object could not be written or read with the storage class's formatter."""


class TruncatedFileError(FormatterError, ValueError):
    """A file is shorter than its own headers announce (a copy or write cut short).

    The message gives the file's size and the byte its headers say it ends at. Another
    attempt reads the same bytes, so the run-state machine does not retry it
    (``retry.not_retried``): re-copy or re-write the file, then re-run.
    """


class FileNotInDatastoreError(DatastoreError, FileNotFoundError):
    """The datastore has no file for a dataset that the registry knows."""


# --- ingest / pipeline / graph / execution --------------------------------------------


class IngestError(Rc2Error):
    """A file could not be ingested; the message names the file and the reason."""


class PipelineError(Rc2Error):
    """A pipeline definition is invalid (bad YAML, broken contract, mismatched connections)."""


class GraphError(Rc2Error):
    """A QuantumGraph could not be built, written or read."""


class ExecutionError(Rc2Error):
    """A quantum or job failed, or an execution config is invalid."""


class TaskError(ExecutionError):
    """A science task failed on its data (too few matches, all-NaN image, ...)."""


class TaskDataError(TaskError):
    """The pixels or catalogs given to an algorithm cannot be processed.

    Raised for data problems an operator can act on (an all-NaN image, a saturated
    frame, no stars, too few reference matches), never for programming errors. The
    message says what was wrong, with the numbers, and what to check. Another attempt
    on the same data fails the same way, so the run-state machine does not retry it
    (``retry.not_retried``).

    Parameters
    ----------
    message : str
        One-line description of the problem.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class QuantumOutputError(ExecutionError):
    """A task returned outputs that do not match its quantum's output refs."""


class RunNotFoundError(ExecutionError, LookupError):
    """No execution journal exists for a RUN in a repository."""


class MissingInputsError(ExecutionError):
    """A graph's inputs are not in the repository it is run against (nothing was registered)."""


class RunLockedError(ExecutionError):
    """Another orchestrator holds the RUN; the message names it and how to take over."""


class RunConflictError(ExecutionError):
    """The RUN already holds outputs and neither --resume nor --extend-run was given."""


class ClusterJobError(ExecutionError):
    """A cluster job could not start (bad graph, cluster, quanta or repository)."""


class BackendError(ExecutionError):
    """An execution backend (local, HTCondor, Kubernetes) could not submit, query or cancel."""


class JobSubmissionError(BackendError):
    """A cluster job could not be submitted; the message names the job and the reason."""


class UnknownJobHandleError(BackendError):
    """A job handle does not belong to this backend (or to this backend instance)."""


class JobWaitTimeoutError(BackendError):
    """Waiting for cluster jobs exceeded the given timeout; the jobs keep running."""


# --- remote access (butler server and client) -----------------------------------------


class QueryLimitError(QueryError):
    """A query exceeded a limit the server's operator set (rows, time, request size)."""


class RemoteError(Rc2Error):
    """A butler server could not be reached, or answered in a way the client cannot use."""


class AuthenticationError(RemoteError):
    """No valid token was presented (missing, unknown, expired or revoked): HTTP 401."""


class PermissionDeniedError(RemoteError, PermissionError):
    """The token is valid but does not grant access to what was asked: HTTP 403."""


class TokenError(Rc2Error):
    """A token could not be created, listed or revoked (bad scope, expiry or token id)."""


class ExpiredCursorError(QueryError):
    """The pages of a query result are no longer kept by the server (or never were)."""


class ServerBusyError(RemoteError):
    """The server is running as many queries as its operator allows; retry shortly: HTTP 503."""


class CollectionInUseError(CollectionError):
    """A collection (or its datasets) is still used by chains, TAGGED or CALIBRATION ones."""


class DatasetTypeInUseError(DatasetTypeError):
    """A dataset type to remove still has datasets."""


class ArtifactExistsError(DatastoreError, FileExistsError):
    """Retrieving artifacts would overwrite existing files."""
