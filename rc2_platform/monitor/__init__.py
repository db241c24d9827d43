"""Monitoring of executed RUNs: per-band output summaries and the checks an operator reads.

:mod:`~rc2_platform.monitor.outputs` attributes a graph's quanta and output datasets to
bands and counts them; :mod:`~rc2_platform.monitor.checks` turns those counts and the
validation against the repository's ``truth_catalog`` into named pass/fail outcomes per
tract × band (what the Dagster asset checks on ``deepCoadd_forced_src`` show). Nothing
here imports Dagster.
"""
