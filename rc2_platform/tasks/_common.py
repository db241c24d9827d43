"""Dimensions and storage class names shared by the RC2 task modules."""

from __future__ import annotations

#: Storage class names (see ``rc2_platform/config/storage_classes.yaml``).
EXPOSURE = "Exposure"
SOURCE_CATALOG = "SourceCatalog"
SKY_MAP = "SkyMap"
OBJECT_MASK = "Region"
REFCAT_SHARD = "SimpleCatalog"

#: Dimensions of data sets and quanta.
EXPOSURE_DETECTOR = ("instrument", "exposure", "detector")
VISIT_DETECTOR = ("instrument", "visit", "detector")
PATCH = ("skymap", "tract", "patch")
PATCH_BAND = ("skymap", "tract", "patch", "band")
VISIT_PATCH = ("instrument", "skymap", "tract", "patch", "visit")
SKYMAP = ("skymap",)

#: Name of the reference catalog dataset type when no pipeline override is given
#: (the PS1 catalog of the seed; ``DRP-RC2.yaml`` sets it from its ``refcat`` parameter).
DEFAULT_REFCAT = "ps1_pv3_3pi_20170110"

#: Message of the ``run`` methods that the science issue (6) has not filled in yet.
NOT_YET = "{} is declared (connections, config) but its science is not implemented yet (issue 6)"
