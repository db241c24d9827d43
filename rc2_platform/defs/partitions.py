"""Partitions: tracts (dynamic, registered from the sky map step) and bands (static)."""

from __future__ import annotations

import dagster as dg

BANDS = ("g", "r", "i", "z", "y")

#: Tracts are added by the ``skymap`` asset from the survey's configured tracts.
tract_partitions = dg.DynamicPartitionsDefinition(name="tracts")
band_partitions = dg.StaticPartitionsDefinition(list(BANDS))
#: Keys look like ``g|9615`` (Dagster sorts the dimensions by name: band, then tract).
tract_band_partitions = dg.MultiPartitionsDefinition(
    {"band": band_partitions, "tract": tract_partitions}
)

#: Maps a tract × band partition to (or from) its tract.
to_tract = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="tract")


def tract_band_of(context: dg.AssetExecutionContext) -> tuple[int, str]:
    """The (tract, band) of the partition being materialized.

    A run launched with only ``dagster/partition: g|9615`` (no per-dimension tags: the
    GraphQL API, ``dagster job launch --tags``) gets the key as a plain string.
    """
    key = context.partition_key
    if not isinstance(key, dg.MultiPartitionKey):
        key = tract_band_partitions.get_partition_key_from_str(str(key))
    dims = key.keys_by_dimension
    return int(dims["tract"]), dims["band"]


def tract_range_keys(tract: int | str, bands: tuple[str, ...] = BANDS) -> tuple[str, str]:
    """First and last tract × band key of one tract: a partition range covering its bands."""
    return f"{bands[0]}|{tract}", f"{bands[-1]}|{tract}"
