"""A minimal exposure: image, mask and variance planes, header and WCS."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from astropy.io import fits
    from astropy.wcs import WCS


def _empty_header() -> fits.Header:
    # astropy is imported on first use, not when the datastore is imported.
    from astropy.io import fits

    return fits.Header()


@dataclass
class Exposure:
    """An image with its mask and variance planes, FITS header and WCS.

    Parameters
    ----------
    image : numpy.ndarray
        2-d pixel values (float32 for calibrated images).
    mask : numpy.ndarray or None
        Integer bit mask of the same shape.
    variance : numpy.ndarray or None
        Per-pixel variance of the same shape.
    header : astropy.io.fits.Header or dict
        Metadata (the primary header when written to FITS).
    wcs : astropy.wcs.WCS or None
        Pixel-to-sky transform of ``image``.
    """

    image: np.ndarray
    mask: np.ndarray | None = None
    variance: np.ndarray | None = None
    header: fits.Header | dict[str, Any] = field(default_factory=_empty_header)
    wcs: WCS | None = None

    def __post_init__(self) -> None:
        for name in ("mask", "variance"):
            plane = getattr(self, name)
            if plane is not None and plane.shape != self.image.shape:
                from rc2_platform.errors import FormatterError

                raise FormatterError(
                    f"exposure {name} plane has shape {plane.shape} but the image has "
                    f"{self.image.shape}; give planes of the same shape"
                )

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the image plane."""
        return tuple(self.image.shape)
