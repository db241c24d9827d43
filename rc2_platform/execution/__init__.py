"""Quantum execution: executor, clustering, run reports and backends (no Dagster here)."""
