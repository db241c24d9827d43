"""QuantumGraph: model, file format, builder and clustering."""

from rc2_platform.graph.io import QuantumGraphReader, load_graph, output_ref, save_graph
from rc2_platform.graph.model import Quantum, QuantumGraph, TaskSummary

__all__ = [
    "Quantum",
    "QuantumGraph",
    "QuantumGraphReader",
    "TaskSummary",
    "load_graph",
    "output_ref",
    "save_graph",
]
