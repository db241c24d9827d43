"""``rc2 simulate PRESET DIR``: write a synthetic survey and its bootstrap.yaml."""

from __future__ import annotations

from pathlib import Path

import click

from rc2_platform.cli.common import emit_rows, format_option, handles_errors
from rc2_platform.cli.progress import progress_bar
from rc2_platform.errors import ConfigError


def _parse_tracts(values: tuple[str, ...]) -> list[int] | None:
    if not values:
        return None
    tracts = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                tracts.append(int(part))
            except ValueError:
                raise ConfigError(f"--tracts: {part!r} is not a tract number") from None
    return tracts


@click.command("simulate")
@click.argument("preset")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Every number of the survey follows from the preset and this seed.",
)
@click.option(
    "--tracts",
    multiple=True,
    metavar="IDS",
    help="Only visits aimed at these tracts (repeat or comma-separate).",
)
@click.option(
    "--scale",
    type=click.FloatRange(min=0.0, min_open=True, max=1.0),
    default=None,
    help="Scale every visit count by this factor (at least 1 visit per band).",
)
@click.option(
    "--max-detectors",
    type=click.IntRange(min=1),
    default=None,
    help="Read out only the first N detectors of the preset.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes writing raws (and a pixel preset's calibrations).",
)
@click.option(
    "--inject-faults",
    is_flag=True,
    help="Write the seed's failures into the raws (pixel presets): a detector with no "
    "stars, a pointing error, a visit with bad seeing (listed in DIRECTORY/faults.yaml).",
)
@click.option("--overwrite", is_flag=True, help="Replace the contents of a non-empty DIRECTORY.")
@format_option
@handles_errors
def simulate_command(
    preset: str,
    directory: Path,
    seed: int,
    tracts: tuple[str, ...],
    scale: float | None,
    max_detectors: int | None,
    workers: int,
    inject_faults: bool,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Write the synthetic survey PRESET (tiny, rc2, rc2-pixels, or a preset YAML) into
    DIRECTORY.

    tiny: 6 detectors, 4 patches, real pixels (seconds). rc2: three tracts at full scale,
    header-only raws. rc2-pixels: tract 9615 of rc2 with real pixels binned 16x16
    (~5,200 raws and 2,900 calibrations; use --workers 2). DIRECTORY receives raw/,
    calib/, refcat/, masks/, truth.fits and bootstrap.yaml (the input of `rc2 bootstrap`).

    --inject-faults (or a `faults:` section in a preset YAML) makes chosen raws fail the
    real tasks: see docs/simulate.md, "Injected faults".
    """
    from rc2_platform.simulate import simulate

    with progress_bar(enabled=not as_json) as progress:
        result = simulate(
            preset,
            directory,
            seed=seed,
            tracts=_parse_tracts(tracts),
            scale=scale,
            max_detectors=max_detectors,
            workers=workers,
            overwrite=overwrite,
            progress=progress,
            inject_faults=inject_faults,
        )
    summary = result.summary()
    rows = [{"item": k, "value": v} for k, v in summary.items()]
    rows.append({"item": "bootstrap", "value": str(result.bootstrap)})
    emit_rows(rows, ["item", "value"], as_json=as_json, title=f"simulated {result.preset}")
