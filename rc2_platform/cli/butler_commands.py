"""Butler commands: create a repository, register dataset types, query, manage collections.

Every command takes the repository folder first, prints a table (``--format
table|json|csv``, ``--json``) and turns bad input into one line on stderr with exit
status 1 (no traceback). Heavy imports stay inside the functions (docs/cli.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from rc2_platform.cli.common import (
    emit_json,
    emit_rows,
    format_option,
    json_option,
    output_format,
    repo_argument,
    sort_key,
)
from rc2_platform.errors import ConfigError

if TYPE_CHECKING:
    from rc2_platform.core import DatasetRef, DatasetType

F = TypeVar("F", bound=Callable[..., Any])

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?$")


# --- shared option helpers ------------------------------------------------------------


def parse_bind(values: Sequence[str]) -> dict[str, Any]:
    """Parse ``--bind name=value`` options; ints and decimal floats are converted.

    Raises
    ------
    ConfigError
        An option is not ``name=value`` or the name is not an identifier.
    """
    out: dict[str, Any] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ConfigError(
                f"--bind {item!r} is not name=value; write e.g. --bind v=1228 and use :v "
                "in the --where expression"
            )
        if _INT.match(raw):
            if len(raw.lstrip("+-").lstrip("0")) > 19:
                raise ConfigError(
                    f"--bind {name}=<{len(raw)} characters>: the integer does not fit in 64 bits "
                    "(-2**63 to 2**63-1)"
                )
            out[name] = int(raw)
        elif _FLOAT.match(raw):
            out[name] = float(raw)
        else:
            out[name] = raw
    return out


def split_collections(values: Sequence[str]) -> list[str]:
    """Collections from repeated and/or comma-separated options, order kept, no blanks."""
    out: list[str] = []
    for value in values:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


@contextmanager
def open_butler(repo: str, *, read_only: bool = False) -> Iterator[Any]:
    """Open the repository at ``repo`` and close it afterwards.

    With ``read_only`` the repository is opened read-only (a SQLite registry ``mode=ro``:
    nothing changes, a read-only filesystem works), and REPO may also be a butler server URL (``http(s)://HOST:PORT/NAME``,
    token from ``RC2_TOKEN``): the command then runs against a
    :class:`~rc2_platform.remote.RemoteButler`, which has the same read API.
    """
    butler: Any
    if repo.lower().startswith(("http://", "https://")):
        if not read_only:
            raise ConfigError(
                f"REPO {repo} is a butler server URL, and the server is read-only; run this "
                "command on the repository folder itself"
            )
        from rc2_platform.remote import RemoteButler

        butler = RemoteButler(repo)
    else:
        from rc2_platform.butler import Butler

        butler = Butler(repo, read_only=read_only)
    try:
        yield butler
    finally:
        butler.close()


def where_options(func: F) -> F:
    """Add ``--where`` and ``--bind NAME=VALUE`` (repeatable) to a command."""
    func = click.option(
        "--bind",
        "bind",
        multiple=True,
        metavar="NAME=VALUE",
        help="Value of :NAME in --where (ints and floats converted); repeatable.",
    )(func)
    return click.option(
        "--where", default="", help="Constraint, e.g. \"tract = 9615 AND band IN ('g', 'r')\"."
    )(func)


def collections_option(required: bool, help: str) -> Callable[[F], F]:
    """``--collections``/``-c NAMES`` (comma-separated or repeated) with ``help``."""
    return click.option(
        "--collections",
        "-c",
        "collections",
        multiple=True,
        required=required,
        metavar="NAMES",
        help=help,
    )


def _ref_row(ref: DatasetRef) -> dict[str, Any]:
    return {
        "dataset_type": ref.dataset_type.name,
        "run": ref.run,
        "id": str(ref.id),
        **ref.data_id.to_dict(),
    }


def _record_value(value: Any, as_json: bool) -> Any:
    """A dimension record value made printable (regions as vertices, timespans as ISO TAI)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "begin_nsec"):  # Timespan
        if as_json:
            return {"begin_nsec": value.begin_nsec, "end_nsec": value.end_nsec}
        return str(value)
    vertices = getattr(value, "getVertices", None)
    if vertices is not None:  # a sphgeom polygon
        import lsst.sphgeom as sg

        corners = [sg.LonLat(v) for v in vertices()]
        degrees = [
            [round(c.getLon().asDegrees(), 6), round(c.getLat().asDegrees(), 6)] for c in corners
        ]
        return degrees if as_json else f"polygon, {len(degrees)} vertices"
    return str(value)


# --- repository and dataset types -----------------------------------------------------


@click.command("create")
@repo_argument
@click.option(
    "--registry-url",
    default=None,
    help="Server registry URL (postgresql+psycopg://user@host/db); password via RC2_DB_PASSWORD.",
)
@json_option
def create(repo: str, registry_url: str | None, as_json: bool) -> None:
    """Create a new repository in folder REPO (SQLite registry inside it by default)."""
    from rc2_platform.butler import Butler

    with Butler.create(repo, registry_url=registry_url) as butler:
        row = {"root": str(butler.root), "registry": butler.registry.url}
    if as_json:
        emit_json([row])
    else:
        click.echo(f"created repository {row['root']} (registry {row['registry']})")


@click.command("register-dataset-type")
@click.argument("repo")
@click.argument("name")
@click.argument("dimensions", nargs=-1, required=True)
@click.option(
    "--storage-class", required=True, help="e.g. Exposure, SourceCatalog, StructuredDataDict."
)
@click.option(
    "--calibration", is_flag=True, help="Datasets may be certified into CALIBRATION collections."
)
@json_option
def register_dataset_type(
    repo: str,
    name: str,
    dimensions: tuple[str, ...],
    storage_class: str,
    calibration: bool,
    as_json: bool,
) -> None:
    """Register dataset type NAME with DIMENSIONS (an identical re-registration is a no-op)."""
    from rc2_platform.core import DatasetType

    with open_butler(repo) as butler:
        new = butler.register_dataset_type(
            DatasetType(name, dimensions, storage_class, calibration)
        )
        dt = butler.registry.get_dataset_type(name)
    row = _dataset_type_row(dt) | {"registered": new}
    if as_json:
        emit_json([row])
    else:
        state = "registered" if new else "already registered (identical)"
        click.echo(f"{state}: {dt.name} {list(dt.dimensions)} {dt.storage_class}")


def _dataset_type_row(dt: DatasetType) -> dict[str, Any]:
    return {
        "name": dt.name,
        "dimensions": list(dt.dimensions),
        "storage_class": dt.storage_class,
        "calibration": dt.is_calibration,
    }


@click.command("dataset-types")
@repo_argument
@click.argument("pattern", required=False)
@format_option
def dataset_types(repo: str, pattern: str | None, as_json: bool) -> None:
    """List the registered dataset types (optionally those matching glob PATTERN).

    REPO may be a butler server URL (http://HOST:PORT/NAME; token from RC2_TOKEN).
    """
    with open_butler(repo, read_only=True) as butler:
        types = butler.registry.query_dataset_types(pattern)
    rows = [_dataset_type_row(t) for t in sorted(types, key=lambda t: t.name)]
    if not as_json:
        rows = [r | {"dimensions": " ".join(r["dimensions"])} for r in rows]
    emit_rows(rows, ["name", "dimensions", "storage_class", "calibration"], as_json=as_json)


# --- queries ----------------------------------------------------------------------------


@click.command("query-datasets")
@repo_argument
@click.argument("dataset_type", required=False)
@collections_option(
    False,
    "Collections to search, in order (comma-separated or repeated); default, and with an "
    "empty value (-c ''): every collection, every match.",
)
@where_options
@click.option("--find-all", is_flag=True, help="Every match, not only the first per data ID.")
@click.option(
    "--show-uri", is_flag=True, help="Add a uri column: the file:// URI of each dataset's file."
)
@format_option
def query_datasets(
    repo: str,
    dataset_type: str | None,
    collections: tuple[str, ...],
    where: str,
    bind: tuple[str, ...],
    find_all: bool,
    show_uri: bool,
    as_json: bool,
) -> None:
    """List datasets of DATASET_TYPE (default: every registered type).

    Without --collections (or with an empty one, -c '') every collection is searched
    and every match is listed. Commands that remove, copy or move data refuse an
    empty -c instead.
    REPO may be a butler server URL (http://HOST:PORT/NAME; token from RC2_TOKEN),
    except with --show-uri.
    """
    if show_uri and repo.lower().startswith(("http://", "https://")):
        raise ConfigError(
            "--show-uri needs the repository folder: a butler server gives signed links to "
            "files, not their URIs"
        )
    from rc2_platform.core import CollectionType

    bind_values = parse_bind(bind)
    colls = split_collections(collections)
    with open_butler(repo, read_only=True) as butler:
        if not colls:
            colls = butler.registry.query_collections(
                types=[CollectionType.RUN, CollectionType.TAGGED, CollectionType.CALIBRATION]
            )
            find_all = True
        types = (
            [butler.registry.get_dataset_type(dataset_type)]
            if dataset_type
            else sorted(butler.registry.query_dataset_types(), key=lambda t: t.name)
        )
        per_type: list[tuple[DatasetType, list[DatasetRef]]] = []
        for dt in types:
            refs = butler.query_datasets(
                dt, collections=colls, where=where, bind=bind_values, find_first=not find_all
            )
            refs.sort(key=lambda r: (r.run, sort_key(r.data_id.values_tuple)))
            per_type.append((dt, refs))
        uris = butler.get_uris(r for _, refs in per_type for r in refs) if show_uri else {}
    uri = ["uri"] if show_uri else []

    def row(ref: DatasetRef) -> dict[str, Any]:
        return _ref_row(ref) | ({"uri": uris.get(ref.id)} if show_uri else {})

    if as_json or output_format() == "csv":
        rows = [row(r) for _, refs in per_type for r in refs]
        dims = list(dict.fromkeys(d for dt, _ in per_type for d in dt.dimensions))
        emit_rows(rows, ["dataset_type", "run", *dims, "id", *uri], as_json=as_json)
        return
    shown = [(dt, refs) for dt, refs in per_type if refs] or per_type[:1]
    if not shown:
        click.echo("(no dataset types registered)", err=True)
    for dt, refs in shown:
        emit_rows(
            [row(r) for r in refs],
            ["run", *dt.dimensions, "id", *uri],
            as_json=False,
            title=dt.name,
        )


@click.command("query-data-ids")
@repo_argument
@click.argument("dimensions", nargs=-1, required=True)
@where_options
@format_option
def query_data_ids(
    repo: str, dimensions: tuple[str, ...], where: str, bind: tuple[str, ...], as_json: bool
) -> None:
    """List the data IDs of DIMENSIONS (with their required dimensions) matching --where.

    REPO may be a butler server URL (http://HOST:PORT/NAME; token from RC2_TOKEN).
    """
    bind_values = parse_bind(bind)
    with open_butler(repo, read_only=True) as butler:
        ids = butler.query_data_ids(dimensions, where=where, bind=bind_values)
        columns = list(butler.registry.universe.required(dimensions))
    rows = sorted((d.to_dict() for d in ids), key=lambda r: sort_key(r.get(c) for c in columns))
    emit_rows(rows, columns, as_json=as_json)


@click.command("query-dimension-records")
@repo_argument
@click.argument("element")
@where_options
@format_option
def query_dimension_records(
    repo: str, element: str, where: str, bind: tuple[str, ...], as_json: bool
) -> None:
    """List the records of dimension ELEMENT (e.g. visit, patch) matching --where.

    REPO may be a butler server URL (http://HOST:PORT/NAME; token from RC2_TOKEN).
    """
    bind_values = parse_bind(bind)
    with open_butler(repo, read_only=True) as butler:
        records = butler.query_dimension_records(element, where=where, bind=bind_values)
        el = butler.registry.universe[element]
        columns = list(el.columns)
        if el.has_timespan:
            columns.append("timespan")
        if el.has_region:
            columns.append("region")
    rows = [{k: _record_value(v, as_json) for k, v in r.items()} for r in records]
    rows.sort(key=lambda r: sort_key(r.get(c) for c in columns if c not in ("timespan", "region")))
    emit_rows(rows, columns, as_json=as_json, title=element)


__all__ = ["collections_option", "open_butler", "parse_bind", "split_collections", "where_options"]
