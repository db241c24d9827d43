"""Warm-up imported by the local fork server (see ``_fork.DEFAULT_PRELOAD``).

Fills, once in the server, the caches every forked job would otherwise fill itself: the
packaged datastore configuration (YAML parsed and validated: ~20 ms, i.e. ~2 ms per
quantum of a 12-quantum job).
"""

from __future__ import annotations

from rc2_platform.datastore import load_datastore_config

load_datastore_config()
