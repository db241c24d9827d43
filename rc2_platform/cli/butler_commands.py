"""Butler commands: create a repository, register dataset types, query, manage collections.

Every command takes the repository folder first, prints a table (``--json`` for JSON)
and turns bad input into a message on stderr with exit status 1 (no traceback).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import sqlalchemy as sa

from rc2_platform.butler import Butler
from rc2_platform.cli.common import emit_rows, handles_errors, json_option
from rc2_platform.core import CollectionType, DatasetRef, DatasetType
from rc2_platform.errors import ConfigError
from rc2_platform.registry._engine import safe_url

F = TypeVar("F", bound=Callable[..., Any])

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?$")


# --- shared option helpers ------------------------------------------------------------


def _handles_database_errors(func: F) -> F:
    """Report database errors the butler did not translate as one line, exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except sa.exc.DBAPIError as exc:
            reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
            click.echo(f"Error: registry database error: {reason[0] if reason else exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def butler_command(func: F) -> F:
    """Wrap a command body with both error handlers (Rc2Error first)."""
    return _handles_database_errors(handles_errors(func))


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
def open_butler(repo: str) -> Iterator[Butler]:
    """Open the repository at ``repo`` and close it afterwards."""
    butler = Butler(repo)
    try:
        yield butler
    finally:
        butler.close()


def _where_options(func: F) -> F:
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


def _collections_option(required: bool, help: str) -> Callable[[F], F]:
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
@click.argument("repo")
@click.option(
    "--registry-url",
    default=None,
    help="Server registry URL (postgresql+psycopg://user@host/db); password via RC2_DB_PASSWORD.",
)
@json_option
@butler_command
def create(repo: str, registry_url: str | None, as_json: bool) -> None:
    """Create a new repository in folder REPO (SQLite registry inside it by default)."""
    with Butler.create(repo, registry_url=registry_url) as butler:
        row = {"root": str(butler.root), "registry": safe_url(butler.registry.engine.url)}
    if as_json:
        emit_rows([row], ["root", "registry"], as_json=True)
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
@butler_command
def register_dataset_type(
    repo: str,
    name: str,
    dimensions: tuple[str, ...],
    storage_class: str,
    calibration: bool,
    as_json: bool,
) -> None:
    """Register dataset type NAME with DIMENSIONS (an identical re-registration is a no-op)."""
    with open_butler(repo) as butler:
        new = butler.register_dataset_type(
            DatasetType(name, dimensions, storage_class, calibration)
        )
        dt = butler.registry.get_dataset_type(name)
    row = _dataset_type_row(dt) | {"registered": new}
    if as_json:
        emit_rows([row], list(row), as_json=True)
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
@click.argument("repo")
@click.argument("pattern", required=False)
@json_option
@butler_command
def dataset_types(repo: str, pattern: str | None, as_json: bool) -> None:
    """List the registered dataset types (optionally those matching glob PATTERN)."""
    with open_butler(repo) as butler:
        types = butler.registry.query_dataset_types(pattern)
    rows = [_dataset_type_row(t) for t in sorted(types, key=lambda t: t.name)]
    if not as_json:
        rows = [r | {"dimensions": " ".join(r["dimensions"])} for r in rows]
    emit_rows(rows, ["name", "dimensions", "storage_class", "calibration"], as_json=as_json)


# --- queries ----------------------------------------------------------------------------


@click.command("query-datasets")
@click.argument("repo")
@click.argument("dataset_type", required=False)
@_collections_option(
    False, "Collections to search, in order (comma-separated or repeated); default: all."
)
@_where_options
@click.option("--find-all", is_flag=True, help="Every match, not only the first per data ID.")
@json_option
@butler_command
def query_datasets(
    repo: str,
    dataset_type: str | None,
    collections: tuple[str, ...],
    where: str,
    bind: tuple[str, ...],
    find_all: bool,
    as_json: bool,
) -> None:
    """List datasets of DATASET_TYPE (default: every registered type).

    Without --collections every collection is searched and every match is listed.
    """
    bind_values = parse_bind(bind)
    colls = split_collections(collections)
    with open_butler(repo) as butler:
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
            refs.sort(key=lambda r: (r.run, tuple(str(v) for v in r.data_id.values_tuple)))
            per_type.append((dt, refs))
    if as_json:
        rows = [_ref_row(r) for _, refs in per_type for r in refs]
        emit_rows(rows, [], as_json=True)
        return
    shown = [(dt, refs) for dt, refs in per_type if refs] or per_type[:1]
    if not shown:
        click.echo("(no dataset types registered)", err=True)
    for dt, refs in shown:
        emit_rows(
            [_ref_row(r) for r in refs],
            ["run", *dt.dimensions, "id"],
            as_json=False,
            title=dt.name,
        )


@click.command("query-data-ids")
@click.argument("repo")
@click.argument("dimensions", nargs=-1, required=True)
@_where_options
@json_option
@butler_command
def query_data_ids(
    repo: str, dimensions: tuple[str, ...], where: str, bind: tuple[str, ...], as_json: bool
) -> None:
    """List the data IDs of DIMENSIONS (with their required dimensions) matching --where."""
    bind_values = parse_bind(bind)
    with open_butler(repo) as butler:
        ids = butler.query_data_ids(dimensions, where=where, bind=bind_values)
        columns = list(butler.registry.universe.required(dimensions))
    emit_rows([d.to_dict() for d in ids], columns, as_json=as_json)


@click.command("query-dimension-records")
@click.argument("repo")
@click.argument("element")
@_where_options
@json_option
@butler_command
def query_dimension_records(
    repo: str, element: str, where: str, bind: tuple[str, ...], as_json: bool
) -> None:
    """List the records of dimension ELEMENT (e.g. visit, patch) matching --where."""
    bind_values = parse_bind(bind)
    with open_butler(repo) as butler:
        records = butler.query_dimension_records(element, where=where, bind=bind_values)
        el = butler.registry.universe[element]
        columns = list(el.columns)
        if el.has_timespan:
            columns.append("timespan")
        if el.has_region:
            columns.append("region")
    rows = [{k: _record_value(v, as_json) for k, v in r.items()} for r in records]
    emit_rows(rows, columns, as_json=as_json, title=element)


# --- collections ------------------------------------------------------------------------


@click.group("collections")
def collections_group() -> None:
    """List, chain, tag and remove collections."""


def _collection_type(value: str | None) -> list[CollectionType] | None:
    if value is None:
        return None
    try:
        return [CollectionType[value.upper()]]
    except KeyError:
        raise ConfigError(
            f"unknown collection type {value!r}; use one of {[t.name for t in CollectionType]}"
        ) from None


@collections_group.command("list")
@click.argument("repo")
@click.argument("pattern", required=False)
@click.option("--type", "type_", default=None, help="RUN, TAGGED, CHAINED or CALIBRATION.")
@json_option
@butler_command
def collections_list(repo: str, pattern: str | None, type_: str | None, as_json: bool) -> None:
    """List collections (optionally matching glob PATTERN), with chains' children."""
    types = _collection_type(type_)
    with open_butler(repo) as butler:
        reg = butler.registry
        rows = []
        for name in reg.query_collections(pattern, types):
            ctype = reg.get_collection_type(name)
            children = reg.get_collection_chain(name) if ctype is CollectionType.CHAINED else []
            rows.append({"name": name, "type": ctype.name, "children": children})
    if not as_json:
        rows = [r | {"children": ", ".join(r["children"])} for r in rows]
    emit_rows(rows, ["name", "type", "children"], as_json=as_json)


_CHAIN_MODES = ("redefine", "extend", "prepend")


def _new_chain(current: list[str], children: list[str], mode: str) -> list[str]:
    if mode == "redefine":
        return children
    rest = [c for c in current if c not in children]
    return rest + children if mode == "extend" else children + rest


@collections_group.command("chain")
@click.argument("repo")
@click.argument("parent")
@click.argument("children", nargs=-1, required=True)
@click.option(
    "--mode",
    type=click.Choice(_CHAIN_MODES),
    default="redefine",
    show_default=True,
    help="Replace the chain, append to it, or put CHILDREN first.",
)
@json_option
@butler_command
def collections_chain(
    repo: str, parent: str, children: tuple[str, ...], mode: str, as_json: bool
) -> None:
    """Make CHAINED collection PARENT search CHILDREN (created if missing)."""
    wanted = split_collections(children)
    with open_butler(repo) as butler:
        reg = butler.registry
        with reg.transaction():
            reg.register_collection(parent, CollectionType.CHAINED)
            chain = _new_chain(reg.get_collection_chain(parent), wanted, mode)
            reg.set_collection_chain(parent, chain)
    if as_json:
        emit_rows([{"name": parent, "children": chain}], [], as_json=True)
    else:
        click.echo(f"{parent} = [{', '.join(chain)}]")


@collections_group.command("tag")
@click.argument("repo")
@click.argument("tagged")
@click.argument("dataset_type")
@_collections_option(True, "Collections to search for the datasets to tag.")
@_where_options
@json_option
@butler_command
def collections_tag(
    repo: str,
    tagged: str,
    dataset_type: str,
    collections: tuple[str, ...],
    where: str,
    bind: tuple[str, ...],
    as_json: bool,
) -> None:
    """Tag into TAGGED (created if missing) the DATASET_TYPE datasets found by the query."""
    bind_values = parse_bind(bind)
    with open_butler(repo) as butler:
        refs = butler.query_datasets(
            dataset_type, collections=split_collections(collections), where=where, bind=bind_values
        )
        with butler.registry.transaction():
            butler.registry.register_collection(tagged, CollectionType.TAGGED)
            butler.registry.associate(tagged, refs)
    if as_json:
        emit_rows([{"collection": tagged, "tagged": len(refs)}], [], as_json=True)
    else:
        click.echo(f"tagged {len(refs)} {dataset_type} dataset(s) into {tagged}")


@collections_group.command("remove")
@click.argument("repo")
@click.argument("name")
@click.option("--keep-files", is_flag=True, help="Removing a RUN: leave its files on disk.")
@json_option
@butler_command
def collections_remove(repo: str, name: str, keep_files: bool, as_json: bool) -> None:
    """Remove collection NAME; a RUN takes its datasets (and files) with it."""
    with open_butler(repo) as butler:
        n = butler.remove_collection(name, unstore=not keep_files)
    if as_json:
        emit_rows([{"removed": name, "datasets": n}], [], as_json=True)
    else:
        click.echo(f"removed collection {name} ({n} dataset(s))")


def register(group: click.Group) -> None:
    """Add the butler commands to the ``rc2`` group."""
    for command in (
        create,
        register_dataset_type,
        dataset_types,
        query_datasets,
        query_data_ids,
        query_dimension_records,
        collections_group,
    ):
        group.add_command(command)


__all__ = ["parse_bind", "register", "split_collections"]
