"""The QuantumGraph file format (``.qgraph``): versioned, compact, readable in parts.

Layout::

    b"RC2QGRPH"            8-byte magic
    uint32 little-endian   format version
    uint64 little-endian   length of the header
    header                 zlib-compressed JSON: run, collections, tasks, dataset types,
                           block index, clusters, init-outputs, metadata
    blocks                 zlib-compressed JSON, each holding up to BLOCK_SIZE quanta

A block is self-contained (its own table of interned data ID values), so one quantum or
one cluster is loaded by reading the header and only the blocks that hold it.

Output refs are not stored with their UUIDs: every dataset the graph writes gets the
deterministic id ``make_dataset_id(type, data ID, output run, DATAID_TYPE_RUN)``, so the
reader recomputes it. Inputs that already exist (raws, calibrations, ...) keep their
stored UUID. This is what keeps a quantum at a few tens of bytes on disk.
"""

from __future__ import annotations

import base64
import bisect
import json
import struct
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from rc2_platform.core.data_id import DataCoordinate
from rc2_platform.core.dataset_types import (
    DatasetIdGenMode,
    DatasetRef,
    DatasetType,
    make_dataset_id,
)
from rc2_platform.errors import GraphError
from rc2_platform.graph.model import Quantum, QuantumGraph, TaskSummary

MAGIC = b"RC2QGRPH"
FORMAT_VERSION = 1
BLOCK_SIZE = 256
_PREAMBLE = struct.Struct("<8sIQ")


def output_ref(dataset_type: DatasetType, data_id: DataCoordinate, run: str) -> DatasetRef:
    """Make the ref of a dataset the graph writes (deterministic UUID in the output run)."""
    return DatasetRef(
        dataset_type,
        data_id,
        run,
        make_dataset_id(dataset_type, data_id, run, DatasetIdGenMode.DATAID_TYPE_RUN),
    )


class _Interner:
    """Assigns small integers to repeated values (data ID values, names)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._index: dict[tuple[type, Any], int] = {}

    def __call__(self, value: Any) -> int:
        key = (type(value), value)
        idx = self._index.get(key)
        if idx is None:
            idx = self._index[key] = len(self.items)
            self.items.append(value)
        return idx


@dataclass
class _HeaderTables:
    dataset_types: _Interner
    runs: _Interner
    connections: _Interner
    output_run: str
    #: Dataset UUID -> whether it is the deterministic output id (computed once per dataset).
    deterministic: dict[uuid.UUID, bool] = field(default_factory=dict)


def _encode_ref(ref: DatasetRef, values: _Interner, tables: _HeaderTables) -> Any:
    dims = ref.dataset_type.dimensions
    vidx = [values(ref.data_id[d]) for d in dims]
    if ref.run == tables.output_run:
        known = tables.deterministic.get(ref.id)
        if known is None:
            known = tables.deterministic[ref.id] = (
                ref.id == output_ref(ref.dataset_type, ref.data_id, ref.run).id
            )
        if known:
            return vidx
    return {
        "r": tables.runs(ref.run),
        "u": base64.b64encode(ref.id.bytes).decode("ascii"),
        "d": vidx,
    }


def _encode_connections(
    refs_by_conn: dict[str, tuple[DatasetRef, ...]], values: _Interner, tables: _HeaderTables
) -> list[Any]:
    out = []
    for conn, refs in refs_by_conn.items():
        if not refs:
            out.append([tables.connections(conn), -1, []])
            continue
        dt_idx = tables.dataset_types(refs[0].dataset_type)
        out.append(
            [tables.connections(conn), dt_idx, [_encode_ref(r, values, tables) for r in refs]]
        )
    return out


def _encode_block(
    quanta: Sequence[Quantum],
    task_index: dict[str, int],
    tasks: list[TaskSummary],
    tables: _HeaderTables,
) -> bytes:
    values = _Interner()
    rows = []
    for q in quanta:
        dims = tasks[task_index[q.task_label]].dimensions
        rows.append(
            [
                task_index[q.task_label],
                [values(q.data_id[d]) for d in dims],
                _encode_connections(q.inputs, values, tables),
                _encode_connections(q.outputs, values, tables),
            ]
        )
    doc = {"v": values.items, "q": rows}
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)


def _dataset_type_doc(dt: DatasetType) -> dict[str, Any]:
    return {
        "name": dt.name,
        "dimensions": list(dt.dimensions),
        "storage_class": dt.storage_class,
        "is_calibration": dt.is_calibration,
    }


def save_graph(graph: QuantumGraph, path: str | Path) -> int:
    """Write ``graph`` to ``path`` (atomically); return the file size in bytes."""
    path = Path(path)
    tables = _HeaderTables(_Interner(), _Interner(), _Interner(), graph.output_run)
    tables.runs(graph.output_run)
    task_index = {t.label: i for i, t in enumerate(graph.tasks)}
    blocks: list[bytes] = []
    block_index: list[list[int]] = []
    offset = 0
    for start in range(0, len(graph.quanta), BLOCK_SIZE):
        chunk = graph.quanta[start : start + BLOCK_SIZE]
        data = _encode_block(chunk, task_index, graph.tasks, tables)
        blocks.append(data)
        block_index.append([offset, len(data), start, len(chunk)])
        offset += len(data)
    init_values = _Interner()
    init_outputs = {
        label: [
            [tables.dataset_types(r.dataset_type), _encode_ref(r, init_values, tables)]
            for r in refs
        ]
        for label, refs in graph.init_outputs.items()
    }
    header = {
        "format_version": FORMAT_VERSION,
        "output_run": graph.output_run,
        "input_collections": graph.input_collections,
        "metadata": graph.metadata,
        "tasks": [
            {
                "label": t.label,
                "task_class": t.task_class,
                "dimensions": list(t.dimensions),
                "config": dict(t.config),
                "step": t.step,
            }
            for t in graph.tasks
        ],
        "dataset_types": [_dataset_type_doc(dt) for dt in tables.dataset_types.items],
        "runs": tables.runs.items,
        "connections": tables.connections.items,
        "blocks": block_index,
        "n_quanta": len(graph.quanta),
        "clusters": graph.clusters,
        "init_values": init_values.items,
        "init_outputs": init_outputs,
    }
    header_bytes = zlib.compress(json.dumps(header, separators=(",", ":"), default=str).encode(), 6)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            f.write(_PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_bytes)))
            f.write(header_bytes)
            for data in blocks:
                f.write(data)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise GraphError(f"could not write QuantumGraph file {path}: {exc}") from exc
    return path.stat().st_size


class QuantumGraphReader:
    """Reads a ``.qgraph`` file's header, and quanta on demand.

    Parameters
    ----------
    path : str or Path
        The graph file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file: BinaryIO = self.path.open("rb")
        except OSError as exc:
            raise GraphError(f"cannot open QuantumGraph file {self.path}: {exc}") from exc
        preamble = self._file.read(_PREAMBLE.size)
        if len(preamble) < _PREAMBLE.size or preamble[:8] != MAGIC:
            self._file.close()
            raise GraphError(f"{self.path} is not a QuantumGraph file (no {MAGIC!r} magic)")
        _, version, header_len = _PREAMBLE.unpack(preamble)
        if version != FORMAT_VERSION:
            self._file.close()
            raise GraphError(
                f"{self.path} has QuantumGraph format version {version}; this rc2_platform reads "
                f"version {FORMAT_VERSION}: rebuild the graph with `rc2 qgraph build`"
            )
        try:
            self.header: dict[str, Any] = json.loads(zlib.decompress(self._file.read(header_len)))
        except (zlib.error, ValueError) as exc:
            self._file.close()
            raise GraphError(f"{self.path}: corrupt QuantumGraph header ({exc})") from exc
        self._data_start = _PREAMBLE.size + header_len
        self.tasks = [
            TaskSummary(
                label=t["label"],
                task_class=t["task_class"],
                dimensions=tuple(t["dimensions"]),
                config=t["config"],
                step=t["step"],
            )
            for t in self.header["tasks"]
        ]
        self.dataset_types = [
            DatasetType(d["name"], tuple(d["dimensions"]), d["storage_class"], d["is_calibration"])
            for d in self.header["dataset_types"]
        ]
        self._block_starts = [b[2] for b in self.header["blocks"]]
        self._refs: dict[uuid.UUID, DatasetRef] = {}

    def __enter__(self) -> QuantumGraphReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying file."""
        self._file.close()

    @property
    def n_quanta(self) -> int:
        """Number of quanta in the graph."""
        return int(self.header["n_quanta"])

    @property
    def output_run(self) -> str:
        """The graph's output RUN collection."""
        return str(self.header["output_run"])

    @property
    def clusters(self) -> dict[str, list[int]]:
        """Cluster name -> quantum indexes."""
        return dict(self.header["clusters"])

    def _decode_ref(self, dt: DatasetType, entry: Any, values: list[Any]) -> DatasetRef:
        if isinstance(entry, list):
            data_id = DataCoordinate(dt.dimensions, tuple(values[i] for i in entry))
            ref = output_ref(dt, data_id, self.output_run)
        else:
            data_id = DataCoordinate(dt.dimensions, tuple(values[i] for i in entry["d"]))
            ref = DatasetRef(
                dt,
                data_id,
                self.header["runs"][entry["r"]],
                uuid.UUID(bytes=base64.b64decode(entry["u"])),
            )
        # One object per dataset, however many quanta read it.
        return self._refs.setdefault(ref.id, ref)

    def _decode_connections(
        self, encoded: list[Any], values: list[Any]
    ) -> dict[str, tuple[DatasetRef, ...]]:
        result: dict[str, tuple[DatasetRef, ...]] = {}
        names = self.header["connections"]
        for conn_idx, dt_idx, entries in encoded:
            if dt_idx < 0:
                result[names[conn_idx]] = ()
                continue
            dt = self.dataset_types[dt_idx]
            result[names[conn_idx]] = tuple(self._decode_ref(dt, e, values) for e in entries)
        return result

    def _read_block(self, block_no: int) -> list[Quantum]:
        offset, length, first, _count = self.header["blocks"][block_no]
        self._file.seek(self._data_start + offset)
        try:
            doc = json.loads(zlib.decompress(self._file.read(length)))
        except (zlib.error, ValueError) as exc:
            raise GraphError(f"{self.path}: corrupt block {block_no} ({exc})") from exc
        values = doc["v"]
        quanta = []
        for i, (task_idx, vidx, ins, outs) in enumerate(doc["q"]):
            task = self.tasks[task_idx]
            quanta.append(
                Quantum(
                    index=first + i,
                    task_label=task.label,
                    data_id=DataCoordinate(task.dimensions, tuple(values[j] for j in vidx)),
                    inputs=self._decode_connections(ins, values),
                    outputs=self._decode_connections(outs, values),
                )
            )
        return quanta

    def read_quanta(self, indexes: Iterable[int]) -> list[Quantum]:
        """Load only the quanta with the given indexes (reading only the blocks that hold them)."""
        wanted = sorted(set(indexes))
        if wanted and (wanted[0] < 0 or wanted[-1] >= self.n_quanta):
            raise GraphError(
                f"{self.path} has quanta 0..{self.n_quanta - 1}; asked for {wanted[-1]}"
            )
        by_block: dict[int, list[int]] = {}
        for idx in wanted:
            by_block.setdefault(bisect.bisect_right(self._block_starts, idx) - 1, []).append(idx)
        result: list[Quantum] = []
        for block_no, idxs in by_block.items():
            block = self._read_block(block_no)
            first = self._block_starts[block_no]
            result.extend(block[i - first] for i in idxs)
        return result

    def read_cluster(self, name: str) -> list[Quantum]:
        """Load the quanta of one cluster."""
        clusters = self.header["clusters"]
        if name not in clusters:
            raise GraphError(
                f"{self.path} has no cluster {name!r}; `rc2 qgraph show {self.path}` lists clusters"
            )
        return self.read_quanta(clusters[name])

    def read_all(self) -> QuantumGraph:
        """Load the whole graph."""
        quanta: list[Quantum] = []
        for block_no in range(len(self.header["blocks"])):
            quanta.extend(self._read_block(block_no))
        init_values = self.header["init_values"]
        init_outputs = {
            label: [
                self._decode_ref(self.dataset_types[dt_idx], e, init_values) for dt_idx, e in refs
            ]
            for label, refs in self.header["init_outputs"].items()
        }
        return QuantumGraph(
            self.tasks,
            quanta,
            output_run=self.output_run,
            input_collections=self.header["input_collections"],
            init_outputs=init_outputs,
            metadata=self.header["metadata"],
            clusters=self.header["clusters"],
        )


def load_graph(path: str | Path) -> QuantumGraph:
    """Read a whole QuantumGraph file."""
    with QuantumGraphReader(path) as reader:
        return reader.read_all()
