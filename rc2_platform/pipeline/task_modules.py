"""The allow-list of modules a pipeline's or a QuantumGraph's task classes may come from.

A ``class:`` in a pipeline YAML (or a task class recorded in a graph file) names a module
that Python would import, running its top-level code. Before anything is imported, the
dotted path is checked here: it must be made of Python identifiers and its module must be
one of the allowed modules or inside one of the allowed packages:

- :data:`DEFAULT_TASK_MODULES` (the shipped tasks and the execution stand-in);
- the packages or modules named in the environment variable ``RC2_TASK_MODULES``
  (comma- or colon-separated, e.g. ``RC2_TASK_MODULES=my_survey.tasks``);
- the values of the ``rc2_platform.tasks`` entry-point group of installed distributions
  (``[project.entry-points."rc2_platform.tasks"] my_tasks = "my_survey.tasks"``); the
  entry points are read, never loaded.

See docs/pipeline.md#task-classes.
"""

from __future__ import annotations

import functools
import os
import re
from importlib import metadata

from rc2_platform.errors import PipelineError

#: Packages and modules whose task classes every pipeline may use.
DEFAULT_TASK_MODULES = ("rc2_platform.tasks", "rc2_platform.execution.stand_in")
#: Environment variable adding packages or modules to the allow-list.
TASK_MODULES_ENV = "RC2_TASK_MODULES"
#: Entry-point group whose values add packages or modules to the allow-list.
ENTRY_POINT_GROUP = "rc2_platform.tasks"

_SPLIT = re.compile(r"[,:\s]+")


@functools.lru_cache(maxsize=1)
def _entry_point_modules() -> tuple[str, ...]:
    return tuple(ep.value.strip() for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))


def allowed_task_modules() -> tuple[str, ...]:
    """The packages and modules task classes may come from (defaults, environment, entry points)."""
    extra = [m for m in _SPLIT.split(os.environ.get(TASK_MODULES_ENV, "")) if m]
    found = [*DEFAULT_TASK_MODULES, *extra, *_entry_point_modules()]
    return tuple(dict.fromkeys(m.rstrip(".") for m in found if m.rstrip(".")))


def _is_dotted(path: str) -> bool:
    return all(part.isidentifier() for part in path.split("."))


def is_allowed_module(name: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether module ``name`` is (inside) an allowed task module or one of ``extra``."""
    if not isinstance(name, str) or not _is_dotted(name):
        return False
    allowed = (*allowed_task_modules(), *extra)
    return any(name == m or name.startswith(m + ".") for m in allowed)


def check_task_class(dotted: str, label: str, source: str = "") -> tuple[str, str]:
    """Check ``package.module.Class`` against the allow-list, before any import.

    Parameters
    ----------
    dotted : `str`
        The class path as written in the pipeline or graph file.
    label : `str`
        The task label (named in the error).
    source : `str`, optional
        The pipeline or graph file (named in the error).

    Returns
    -------
    module_name, class_name : `tuple` [`str`, `str`]
        The module to import and the class to take from it.

    Raises
    ------
    PipelineError
        One line naming the file, the label, the class and the rule.
    """
    where = f"{source}: " if source else ""
    text = dotted if isinstance(dotted, str) else ""
    module_name, _, class_name = text.rpartition(".")
    if not module_name or not _is_dotted(text):
        raise PipelineError(
            f"{where}task {label!r}: class {dotted!r} is not a dotted path of Python names "
            f"like 'package.module.Class'"
        )
    allowed = allowed_task_modules()
    if not any(module_name == m or module_name.startswith(m + ".") for m in allowed):
        raise PipelineError(
            f"{where}task {label!r}: class {dotted!r} is not in an allowed task module "
            f"({', '.join(allowed)}); nothing was imported. Add its package to "
            f"{TASK_MODULES_ENV} or an {ENTRY_POINT_GROUP!r} entry point (docs/pipeline.md)"
        )
    return module_name, class_name
