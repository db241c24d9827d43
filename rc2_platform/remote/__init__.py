"""The remote butler client: a repository served over HTTP, with the butler's read API.

Public API::

    from rc2_platform.remote import RemoteButler, open_butler, is_url
    butler = RemoteButler("http://127.0.0.1:8080/rc2", token=...)   # token default: $RC2_TOKEN

:func:`open_butler` opens a local folder or a URL alike (what the CLI's REPO argument
does). The client imports no web framework; :mod:`rc2_platform.remote.wire` is the
format it shares with :mod:`rc2_platform.server`. See ``docs/remote-butler.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rc2_platform.remote.butler import RemoteButler, RemoteRegistry

if TYPE_CHECKING:
    from rc2_platform.butler import Butler


def is_url(repo: str | Path) -> bool:
    """Whether a REPO argument names a server (``http://`` or ``https://``)."""
    return isinstance(repo, str) and repo.lower().startswith(("http://", "https://"))


def open_butler(repo: str | Path, **kwargs: Any) -> Butler | RemoteButler:
    """Open a repository folder (:class:`Butler`) or a repository URL (:class:`RemoteButler`)."""
    if is_url(repo):
        return RemoteButler(str(repo), **kwargs)
    from rc2_platform.butler import Butler

    return Butler(repo, **kwargs)


__all__ = ["RemoteButler", "RemoteRegistry", "is_url", "open_butler"]
