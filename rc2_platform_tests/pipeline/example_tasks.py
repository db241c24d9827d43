"""Small PipelineTasks used by the pipeline tests (importable by dotted path)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rc2_platform.pipeline import Input, Output, PipelineTask, PrerequisiteInput, TaskConfig

VD = ("instrument", "visit", "detector")


class ProduceConfig(TaskConfig):
    """Config of :class:`ProduceTask`."""

    scale: float = Field(1.0, gt=0)
    mode: str = "fast"


class ProduceTask(PipelineTask[ProduceConfig]):
    """raw_in -> thing (visit+detector, Exposure)."""

    default_label = "produce"
    dimensions = VD
    ConfigClass = ProduceConfig

    source = Input(dataset_type_name="raw_in", dimensions=VD, storage_class="Exposure")
    thing = Output(dataset_type_name="thing", dimensions=VD, storage_class="Exposure")

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Scale the input."""
        self.metadata["scaled"] = True
        return {"thing": inputs["source"] * self.config.scale}


class ConsumeTask(PipelineTask[TaskConfig]):
    """thing (visit+detector, Exposure) -> result."""

    default_label = "consume"
    dimensions = VD

    thing = Input(dataset_type_name="thing", dimensions=VD, storage_class="Exposure")
    result = Output(dataset_type_name="result", dimensions=VD, storage_class="SourceCatalog")


class ConsumeOtherStorageTask(PipelineTask[TaskConfig]):
    """Reads ``thing`` as a SourceCatalog: mismatched storage class."""

    default_label = "consumeOther"
    dimensions = VD

    thing = Input(dataset_type_name="thing", dimensions=VD, storage_class="SourceCatalog")
    other = Output(dataset_type_name="other", dimensions=VD, storage_class="SourceCatalog")


class ConsumePerVisitTask(PipelineTask[TaskConfig]):
    """Reads ``thing`` with (instrument, visit) dimensions: mismatched dimensions."""

    default_label = "consumeVisit"
    dimensions = ("instrument", "visit")

    thing = Input(
        dataset_type_name="thing", dimensions=("instrument", "visit"), storage_class="Exposure"
    )
    per_visit = Output(
        dataset_type_name="per_visit", dimensions=("instrument", "visit"), storage_class="Exposure"
    )


class PrereqThingTask(PipelineTask[TaskConfig]):
    """Reads ``thing`` as a prerequisite (not allowed when a task produces it)."""

    default_label = "prereq"
    dimensions = VD

    thing = PrerequisiteInput(dataset_type_name="thing", dimensions=VD, storage_class="Exposure")
    out = Output(dataset_type_name="prereq_out", dimensions=VD, storage_class="Exposure")


class BadOutputDimsTask(PipelineTask[TaskConfig]):
    """Writes an output with a dimension its quantum does not have."""

    default_label = "badOutput"
    dimensions = ("instrument", "visit")

    out = Output(dataset_type_name="bad_out", dimensions=VD, storage_class="Exposure")


class NotATask:
    """Not a PipelineTask."""
