"""What each band partition of an output asset shows: its band's figures and a table."""

from typing import Any

import dagster as dg

from rc2_platform.execution.run_state import QuantumState
from rc2_platform.execution.stages import Ledger

__all__ = ["partition_metadata"]

#: States shown in the assets' metadata.
_SHOWN = (QuantumState.SUCCEEDED, QuantumState.FAILED, QuantumState.BLOCKED)

_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("band", "string"),
        *(dg.TableColumn(f"quanta {st.value}", "int") for st in _SHOWN),
        dg.TableColumn("datasets", "int"),
        dg.TableColumn("expected", "int"),
        dg.TableColumn("rows", "int"),
    ]
)


def _table(summary: dict[str, dict[str, Any]], name: str) -> dg.TableMetadataValue:
    """Every band of the tract (``*``: quanta and datasets spanning bands) as a table."""
    records = [
        dg.TableRecord(
            {
                "band": band,
                **{f"quanta {st.value}": int(s[st.value]) for st in _SHOWN},
                "datasets": int(s["datasets"].get(name, 0)),
                "expected": int(s["expected"].get(name, 0)),
                "rows": int(s["rows"].get(name, 0)),
            }
        )
        for band, s in sorted(summary.items())
    ]
    return dg.MetadataValue.table(records, schema=_TABLE_SCHEMA)


def partition_metadata(
    ledger: Ledger, summary: dict[str, dict[str, Any]], name: str, band: str
) -> dict[str, Any]:
    """What one band partition of one output asset shows: its own band's figures."""
    own = summary.get(band) or {"datasets": {}, "rows": {}, "failures": []}
    meta: dict[str, Any] = {
        "RUN": ledger.output_run,
        "datasets": dg.MetadataValue.int(int(own["datasets"].get(name, 0))),
        "per band": _table(summary, name),
    }
    for st in _SHOWN:
        meta[f"quanta {st.value}"] = dg.MetadataValue.int(int(own.get(st.value, 0)))
    if name in own["rows"]:
        meta["rows"] = dg.MetadataValue.int(int(own["rows"][name]))
    return meta
