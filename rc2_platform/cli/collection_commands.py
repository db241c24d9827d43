"""The ``rc2 collections`` group: list (``--tree``), chain (``--mode``), tag and remove.

Thin wrappers of registry and butler calls; heavy imports stay inside the functions
(docs/cli.md). Removing a RUN whose datasets other collections use is refused with
those collections named (``--unlink`` overrides), as ``rc2 remove-runs`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from rc2_platform.cli.butler_commands import (
    collections_option,
    open_butler,
    parse_bind,
    split_collections,
    where_options,
)
from rc2_platform.cli.common import (
    emit_json,
    emit_rows,
    format_option,
    json_option,
    named_collections,
    repo_argument,
)
from rc2_platform.errors import ConfigError

if TYPE_CHECKING:
    from rc2_platform.core import CollectionType


@click.group("collections")
def collections_group() -> None:
    """List, chain, tag and remove collections."""


def _collection_type(value: str | None) -> list[CollectionType] | None:
    from rc2_platform.core import CollectionType

    if value is None:
        return None
    try:
        return [CollectionType[value.upper()]]
    except KeyError:
        raise ConfigError(
            f"unknown collection type {value!r}; use one of {[t.name for t in CollectionType]}"
        ) from None


@collections_group.command("list")
@repo_argument
@click.argument("pattern", required=False)
@click.option(
    "--type",
    "type_",
    default=None,
    help="Only collections of this type: RUN, TAGGED, CHAINED or CALIBRATION.",
)
@click.option(
    "--tree",
    is_flag=True,
    help="Show chains as trees: every child (recursively) indented under its chain.",
)
@format_option
def collections_list(
    repo: str, pattern: str | None, type_: str | None, tree: bool, as_json: bool
) -> None:
    """List collections (optionally matching glob PATTERN), with chains' children.

    With --tree each chain's children follow it, indented one level per depth (JSON:
    a "depth" and "parent" per row). REPO may be a butler server URL
    (http://HOST:PORT/NAME; token from RC2_TOKEN).
    """
    from rc2_platform.core import CollectionType

    types = _collection_type(type_)
    with open_butler(repo, read_only=True) as butler:
        reg = butler.registry
        rows: list[dict[str, Any]] = []
        for name in reg.query_collections(pattern, types):
            ctype = reg.get_collection_type(name)
            children = reg.get_collection_chain(name) if ctype is CollectionType.CHAINED else []
            if tree:
                rows.extend(_tree_rows(reg, name, ctype, None, 0))
            else:
                rows.append({"name": name, "type": ctype.name, "children": children})
    if tree:
        if not as_json:
            rows = [r | {"name": "  " * r["depth"] + r["name"]} for r in rows]
        emit_rows(rows, ["name", "type"], as_json=as_json)
        return
    if not as_json:
        rows = [r | {"children": ", ".join(r["children"])} for r in rows]
    emit_rows(rows, ["name", "type", "children"], as_json=as_json)


def _tree_rows(
    reg: Any, name: str, ctype: CollectionType, parent: str | None, depth: int
) -> list[dict[str, Any]]:
    """``name`` and, for a chain, its children recursively (depth-first, in order)."""
    from rc2_platform.core import CollectionType

    rows = [{"name": name, "type": ctype.name, "depth": depth, "parent": parent}]
    if ctype is CollectionType.CHAINED and depth < 100:
        for child in reg.get_collection_chain(name):
            rows += _tree_rows(reg, child, reg.get_collection_type(child), name, depth + 1)
    return rows


_CHAIN_MODES = ("redefine", "extend", "prepend", "remove", "pop")


@collections_group.command("chain")
@repo_argument
@click.argument("parent")
@click.argument("children", nargs=-1)
@click.option(
    "--mode",
    type=click.Choice(_CHAIN_MODES),
    default="redefine",
    show_default=True,
    help="redefine: replace the chain; extend: append; prepend: put CHILDREN first; "
    "remove: drop CHILDREN; pop: drop the children at positions CHILDREN (default 0).",
)
@json_option
def collections_chain(
    repo: str, parent: str, children: tuple[str, ...], mode: str, as_json: bool
) -> None:
    """Make CHAINED collection PARENT search CHILDREN (created if missing), or edit it.

    Children already in the chain move (extend, prepend); remove and pop refuse names
    or positions the chain does not have. Every mode but pop needs at least one CHILD
    (an empty value such as '' names none): a redefinition never empties a chain.
    """
    wanted = split_collections(children)
    if not wanted and mode != "pop":
        given = f" ({' '.join(repr(c) for c in children)} names none)" if children else ""
        raise click.UsageError(
            f"--mode {mode} needs at least one CHILD{given}"
            + (f"; redefining {parent} with none would empty it" if mode == "redefine" else "")
            + f"; {parent} is unchanged"
        )
    with open_butler(repo) as butler:
        chain = butler.registry.edit_collection_chain(parent, wanted, mode)
    if as_json:
        emit_json([{"name": parent, "children": chain}])
    else:
        click.echo(f"{parent} = [{', '.join(chain)}]")


@collections_group.command("tag")
@repo_argument
@click.argument("tagged")
@click.argument("dataset_type")
@collections_option(
    True, "Collections to search for the datasets to tag (an empty -c '' is refused)."
)
@where_options
@json_option
def collections_tag(
    repo: str,
    tagged: str,
    dataset_type: str,
    collections: tuple[str, ...],
    where: str,
    bind: tuple[str, ...],
    as_json: bool,
) -> None:
    """Tag into TAGGED (created if missing) the DATASET_TYPE datasets found by the query.

    A --where on a dimension DATASET_TYPE lacks (``visit = 1`` for a bias) is refused
    with one line: it would join that dimension and tag every dataset of the type.
    """
    from rc2_platform.core import CollectionType

    bind_values = parse_bind(bind)
    names = named_collections(collections, "collections tag", "nothing was tagged")
    with open_butler(repo) as butler:
        if where:
            butler.registry.check_where_dimensions(
                where, [butler.registry.get_dataset_type(dataset_type)]
            )
        refs = butler.query_datasets(dataset_type, collections=names, where=where, bind=bind_values)
        with butler.registry.transaction():
            butler.registry.register_collection(tagged, CollectionType.TAGGED)
            butler.registry.associate(tagged, refs)
    if as_json:
        emit_json([{"collection": tagged, "tagged": len(refs)}])
    else:
        click.echo(f"tagged {len(refs)} {dataset_type} dataset(s) into {tagged}")


@collections_group.command("remove")
@repo_argument
@click.argument("name")
@click.option("--keep-files", is_flag=True, help="Removing a RUN: leave its files on disk.")
@click.option(
    "--unlink",
    is_flag=True,
    help="Removing a RUN whose datasets are tagged or certified elsewhere: drop them from "
    "those collections too (otherwise refused).",
)
@click.option(
    "--unlink-from-chains", is_flag=True, help="Drop NAME from the chains listing it first."
)
@json_option
def collections_remove(
    repo: str, name: str, keep_files: bool, unlink: bool, unlink_from_chains: bool, as_json: bool
) -> None:
    """Remove collection NAME; a RUN takes its datasets (and files) with it.

    A RUN whose datasets a TAGGED or CALIBRATION collection still uses is refused with
    those collections listed (exit 1) unless --unlink; see also `rc2 remove-runs`.
    """
    with open_butler(repo) as butler:
        n = butler.remove_collection(
            name, unstore=not keep_files, unlink=unlink, unlink_from_chains=unlink_from_chains
        )
        finished = any(f.committed and name in f.runs for f in butler.finished_removals)
    if as_json:
        extra = {"finished_interrupted_removal": True} if finished and not n else {}
        emit_json([{"removed": name, "datasets": n} | extra])
    elif finished and not n:
        click.echo(
            f"collection {name} was removed by a removal killed after its commit; finished it"
        )
    else:
        click.echo(f"removed collection {name} ({n} dataset(s))")
