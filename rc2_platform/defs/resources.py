"""Dagster resources: the repository, the survey's bootstrap config, validation bounds."""

import os
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from rc2_platform.butler import Butler

if TYPE_CHECKING:  # the ingest package and astropy/scipy load when a step needs them
    from rc2_platform.ingest.bootstrap_config import BootstrapConfig
    from rc2_platform.validate.metrics import ValidationConfig

#: Defaults used by `dagster dev` in a checkout after `rc2 demo ./demo`.
DEFAULT_REPO = "demo/repo"
DEFAULT_BOOTSTRAP = "demo/survey/bootstrap.yaml"


class ButlerResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Gives assets and ops the data repository.

    ``repo`` is the repository folder (``butler.yaml``); ``registry_url`` is only needed
    to *create* a repository on a server registry. The registry password, if any, comes
    from ``RC2_DB_PASSWORD`` in the environment, never from this config.
    """

    repo: str = os.environ.get("RC2_REPO", DEFAULT_REPO)
    registry_url: str | None = os.environ.get("RC2_REGISTRY_URL")

    def open(self) -> Butler:
        """Open the repository, creating it first when it does not exist."""
        return Butler.create(self.repo, self.registry_url, exist_ok=True)

    @property
    def root(self) -> Path:
        """The repository folder, absolute."""
        return Path(self.repo).resolve()


class SurveyResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where the survey's data are: the ``bootstrap.yaml`` written by ``rc2 simulate``."""

    bootstrap_config: str = os.environ.get("RC2_BOOTSTRAP", DEFAULT_BOOTSTRAP)

    def load(self) -> "BootstrapConfig":
        """Read and validate the bootstrap config (absolute paths)."""
        from rc2_platform.ingest.bootstrap_config import load_bootstrap_config

        return load_bootstrap_config(self.bootstrap_config)


class ValidationResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The bounds of the validation asset checks on ``deepCoadd_forced_src``.

    Defaults are :class:`~rc2_platform.validate.ValidationConfig`'s (those of
    ``rc2 validate``); set them per deployment in the resource config.
    """

    bright_mag: float = 21.0
    depth_mag: float | None = None  # None: derived from the coadds' 5-sigma depth
    max_median_offset: float = 0.02
    max_scatter: float = 0.05
    max_astrometric_scatter_arcsec: float = 0.05
    min_completeness: float = 0.95

    def config(self) -> "ValidationConfig":
        """The validation config these bounds make."""
        from rc2_platform.validate.metrics import ValidationConfig

        return ValidationConfig(
            bright_mag=self.bright_mag,
            depth_mag=self.depth_mag,
            max_median_offset=self.max_median_offset,
            max_scatter=self.max_scatter,
            max_astrometric_scatter_arcsec=self.max_astrometric_scatter_arcsec,
            min_completeness=self.min_completeness,
        )
