"""QuantumGraph: model, file format, builder and clustering."""

from rc2_platform.graph.builder import QuantumGraphBuilder, build_quantum_graph
from rc2_platform.graph.io import QuantumGraphReader, load_graph, output_ref, save_graph
from rc2_platform.graph.model import Quantum, QuantumGraph, TaskSummary

__all__ = [
    "Quantum",
    "QuantumGraph",
    "QuantumGraphBuilder",
    "QuantumGraphReader",
    "TaskSummary",
    "build_quantum_graph",
    "load_graph",
    "output_ref",
    "save_graph",
]
