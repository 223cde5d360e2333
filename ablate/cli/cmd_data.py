"""``ablate data``: prepare image folders for fast training (``ablate data prepare``).

    ablate data prepare ~/data/DF2K_HR
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # ablate.data imports torch: only when the command runs
    from ablate.data import StoredImage


@click.group("data")
def command() -> None:
    """Prepare image folders for training.

    \b
        ablate data prepare ~/data/DF2K_HR        # decode once into ~/data/DF2K_HR/.ablate-prepared
    """


@command.command("prepare")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Where to write the store (default: FOLDER/.ablate-prepared, found automatically).")
@click.option("--tile", type=click.IntRange(min=16), default=480, show_default=True,
              help="Tile side in pixels: one tile is one contiguous read.")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Step between tile starts (default: the tile, no overlap; BasicSR's tile/2 stores "
                   "about 3× as much, for disk and page cache, and measured no faster).")
def prepare(folder: Path, out: Path | None, tile: int, stride: int | None) -> None:
    """Decode FOLDER's images once into a memory-mapped store that training samples patches from.

    \b
        ablate data prepare ~/data/DF2K_HR                       # then train with data.path: that folder
        ablate data prepare /ro/DIV2K_HR --out /scratch/div2k    # a read-only folder: data.prepared: /scratch/div2k

    The store is one uint8 file of tiles (the last tile of a row or column is aligned to the image
    border, so every pixel is kept) and an index with a fingerprint of FOLDER (names, sizes, mtimes).
    The folder dataset reads training patches from it — the same batches as from the images, without
    decoding — and every trial on a node shares it through the OS page cache. Validation images are
    still read from the files. After changing FOLDER, run this again: a stale store is reported in one
    warning line and not used.
    """
    from ablate.data import prepare_folder

    t0 = time.perf_counter()
    decoded = 0

    def progress(k: int, n: int, entry: StoredImage, n_tiles: int) -> None:
        nonlocal decoded
        h, w = entry.size
        decoded += h * w * 3
        tiles = f"{n_tiles} tile{'s' if n_tiles != 1 else ''}"
        click.echo(f"[{k + 1:>{len(str(n))}}/{n}] {entry.name}  {w}×{h}  {tiles}  {time.perf_counter() - t0:.1f} s")

    prepared = prepare_folder(folder, out, tile=tile, stride=stride, progress=progress)
    n = len(prepared.names)
    click.echo(f"prepared {n} image{'s' if n != 1 else ''}: {prepared.n_tiles} tiles of {prepared.tile}×{prepared.tile} "
               f"(stride {prepared.stride}), {_size(prepared.nbytes)} ({prepared.nbytes / decoded:.2f}× the decoded "
               f"images) in {prepared.root} ({time.perf_counter() - t0:.1f} s)")
    if out is None:
        click.echo(f"the folder dataset with path: {prepared.source} now reads it")
    else:
        click.echo(f"use it with data: {{name: folder, path: {prepared.source}, prepared: {prepared.root}}}")


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"
