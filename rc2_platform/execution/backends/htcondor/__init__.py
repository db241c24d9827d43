"""HTCondor backend: submit descriptions, memory-retry policy, schedd clients, event logs, DAGMan."""

from __future__ import annotations

from .backend import HTCondorBackend
from .dagman import check_dependencies, node_submit_file, prepare_node_retry, write_dag
from .event_log import EventLogWriter, Hold, read_event_log, read_event_log_holds
from .schedd import HTCondorSchedd, LocalScheddDouble, ScheddClient
from .submit import (
    build_submit_description,
    memory_request_expression,
    periodic_hold_expression,
    periodic_release_expression,
    periodic_remove_expression,
)

__all__ = [
    "EventLogWriter",
    "HTCondorBackend",
    "HTCondorSchedd",
    "Hold",
    "LocalScheddDouble",
    "ScheddClient",
    "build_submit_description",
    "check_dependencies",
    "memory_request_expression",
    "node_submit_file",
    "periodic_hold_expression",
    "periodic_release_expression",
    "periodic_remove_expression",
    "prepare_node_retry",
    "read_event_log",
    "read_event_log_holds",
    "write_dag",
]
