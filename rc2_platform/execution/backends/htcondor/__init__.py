"""HTCondor backend: submit descriptions, memory-retry policy, schedd clients, event logs, DAGMan."""

from __future__ import annotations

from .backend import HTCondorBackend
from .dagman import check_dependencies, write_dag
from .event_log import EventLogWriter, read_event_log
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
    "LocalScheddDouble",
    "ScheddClient",
    "build_submit_description",
    "check_dependencies",
    "memory_request_expression",
    "periodic_hold_expression",
    "periodic_release_expression",
    "periodic_remove_expression",
    "read_event_log",
    "write_dag",
]
