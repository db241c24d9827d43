"""The PipelineTask API, pipeline YAML loading and the pipeline graph.

Public API::

    from rc2_platform.pipeline import (
        Pipeline, PipelineGraph, PipelineTask, TaskConfig, TaskDef,
        Input, PrerequisiteInput, Output, InitInput, InitOutput, LookupKind,
    )
    pipeline = Pipeline.from_yaml("DRP-RC2#step1")   # shipped pipeline, subset step1
    graph = pipeline.to_graph()
"""

from __future__ import annotations

from rc2_platform.pipeline._yaml import shipped_pipelines
from rc2_platform.pipeline.connections import (
    BaseConnection,
    ConnectionKind,
    InitInput,
    InitOutput,
    Input,
    LookupKind,
    Output,
    PrerequisiteInput,
    config_dataset_type_name,
    metadata_dataset_type_name,
)
from rc2_platform.pipeline.graph import DatasetTypeNode, PipelineGraph, StepDef
from rc2_platform.pipeline.pipeline import Contract, Pipeline
from rc2_platform.pipeline.task import PipelineTask, TaskConfig
from rc2_platform.pipeline.task_def import (
    CONFIG_CONNECTION,
    METADATA_CONNECTION,
    TaskDef,
)

#: Location of the RC2 pipeline shipped in the package (usable with Pipeline.from_yaml).
DRP_RC2 = "resource://rc2_platform/pipelines/DRP-RC2.yaml"

__all__ = [
    "CONFIG_CONNECTION",
    "DRP_RC2",
    "METADATA_CONNECTION",
    "BaseConnection",
    "ConnectionKind",
    "Contract",
    "DatasetTypeNode",
    "InitInput",
    "InitOutput",
    "Input",
    "LookupKind",
    "Output",
    "Pipeline",
    "PipelineGraph",
    "PipelineTask",
    "PrerequisiteInput",
    "StepDef",
    "TaskConfig",
    "TaskDef",
    "config_dataset_type_name",
    "metadata_dataset_type_name",
    "shipped_pipelines",
]
