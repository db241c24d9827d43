"""The PipelineTask base class and the base of task configs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from rc2_platform.pipeline.connections import BaseConnection, ConnectionKind


class TaskConfig(BaseModel):
    """Base of every task config: typed fields with defaults, validated, frozen.

    Subclasses add pydantic fields (with ``Field(..., description=...)`` and
    constraints such as ``gt=0``). Unknown keys are rejected and a validated config
    cannot be changed afterwards: overrides from a pipeline YAML are applied by
    building a new config (see :meth:`with_overrides`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def with_overrides(self, overrides: Mapping[str, Any]) -> TaskConfig:
        """Return a new validated config with ``overrides`` (nested mappings merged).

        Raises
        ------
        pydantic.ValidationError
            If an override names an unknown field or has an invalid value.
        """
        merged = _deep_merge(self.model_dump(), overrides)
        return type(self).model_validate(merged)


def _deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


ConfigT = TypeVar("ConfigT", bound=TaskConfig)


class PipelineTask(Generic[ConfigT]):
    """Base class of the tasks a pipeline runs, one quantum at a time.

    A subclass declares:

    ``default_label``
        The label the task gets in a pipeline, e.g. ``isr``.
    ``dimensions``
        The dimensions of one quantum, e.g. ``("instrument", "visit", "detector")``.
    ``ConfigClass``
        A :class:`TaskConfig` subclass with defaults.
    connections
        Class attributes that are :class:`~rc2_platform.pipeline.connections.Input`,
        ``PrerequisiteInput``, ``Output``, ``InitInput`` or ``InitOutput``
        instances; the attribute name is the connection name. They are collected
        into the class attribute :attr:`connections` (name -> connection).
    ``leaves_inputs_unchanged``
        True when ``run`` never modifies the objects it is given: the executor may then
        hand it the cached copy of an overall input (a refcat shard, a calibration)
        instead of a private copy (default False: every read is the task's own).

    Parameters
    ----------
    config : ConfigT, optional
        The validated config; ``ConfigClass()`` defaults when omitted.
    label : str, optional
        The task's label in its pipeline; ``default_label`` when omitted.

    Attributes
    ----------
    metadata : dict[str, Any]
        Free-form, YAML-serializable values the task records while running (counts,
        fit results, timings); the executor stores them as ``{label}_metadata``.
    log : logging.Logger
        Logger named ``rc2_platform.tasks.<label>``.
    """

    default_label: ClassVar[str] = ""
    dimensions: ClassVar[tuple[str, ...]] = ()
    ConfigClass: ClassVar[type[TaskConfig]] = TaskConfig
    connections: ClassVar[dict[str, BaseConnection]] = {}
    leaves_inputs_unchanged: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        collected: dict[str, BaseConnection] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, BaseConnection):
                    collected[attr] = value.with_name(attr)
        cls.connections = collected

    def __init__(self, config: ConfigT | None = None, *, label: str | None = None) -> None:
        if config is None:
            config = self.ConfigClass()  # type: ignore[assignment]
        elif not isinstance(config, self.ConfigClass):
            raise TypeError(
                f"{type(self).__name__} needs a {self.ConfigClass.__name__}, "
                f"not a {type(config).__name__}"
            )
        self.config: ConfigT = config  # type: ignore[assignment]
        self.label: str = label or self.default_label
        self.metadata: dict[str, Any] = {}
        self.log = logging.getLogger(f"rc2_platform.tasks.{self.label}")

    @classmethod
    def adjust_connections(
        cls, config: TaskConfig, connections: dict[str, BaseConnection]
    ) -> dict[str, BaseConnection]:
        """Return the connections this task uses with ``config``.

        The default returns ``connections`` unchanged. Override to drop connections a
        config disables (e.g. no ``dark`` prerequisite when ``do_dark`` is false).
        Called by the pipeline loader; must not add connections.
        """
        return connections

    @classmethod
    def connections_of_kind(cls, kind: ConnectionKind) -> dict[str, BaseConnection]:
        """Return the declared connections of one kind, by connection name."""
        return {n: c for n, c in cls.connections.items() if c.kind is kind}

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Process the in-memory inputs of one quantum.

        Parameters
        ----------
        **inputs
            One keyword per input and prerequisite-input connection name; a list for
            ``multiple`` connections; a zero-argument loader for ``deferred_load``.

        Returns
        -------
        dict[str, Any]
            In-memory objects keyed by output connection name.
        """
        raise NotImplementedError(f"{type(self).__name__}.run is not implemented yet")

    def run_quantum(self, inputs: Mapping[str, Any], data_id: Mapping[str, Any]) -> dict[str, Any]:
        """Run one quantum: the executor's entry point.

        The default records the data ID in :attr:`metadata` and calls :meth:`run`
        with ``inputs`` as keywords. Override when the task needs the data ID (e.g.
        to find its patch in the sky map).

        Parameters
        ----------
        inputs : Mapping[str, Any]
            Loaded inputs keyed by connection name (see :meth:`run`).
        data_id : Mapping[str, Any]
            The quantum's data ID.

        Returns
        -------
        dict[str, Any]
            Outputs keyed by output connection name.
        """
        self.metadata.setdefault("data_id", dict(data_id))
        return self.run(**inputs)

    def get_metadata(self) -> dict[str, Any]:
        """Return the metadata the executor stores as ``{label}_metadata``."""
        return dict(self.metadata)
