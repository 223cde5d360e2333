"""Whole-image inference: one pass, overlapping tiles for images that do not fit, the ×8 self-ensemble.

    from ablate.evaluate import Restorer
    restore = Restorer(model, scale=2, device=torch.device("cuda"), dtype=torch.float16)
    out = restore(lq)               # (3, h, w) float in [0, 1] → (3, 2h, 2w) float32 in [0, 1], on the CPU
    restore.tiled_images            # images that had to be tiled (out of memory whole)

Tiles are ``tile`` × ``tile`` LQ pixels, neighbours sharing ``overlap`` pixels (the last tile of a row
or column is aligned to the border, so it may share more). Across each shared strip the outer quarter
on each side is dropped and the middle half cross-faded linearly, so no seam is left and a pixel is
taken from the tile where it has the most context. For a network whose every operation is local (per-token norms,
windowed attention, convolutions) a tile reproduces the whole-image output away from its borders; a
norm whose statistics span the whole image (Global LN, i-LN, BatchNorm with batch statistics) sees
only the tile, so its tiled result is not its whole-image result.

The self-ensemble (``self_ensemble=True``, the "+" rows of SwinIR/HAT) runs the 8 flips/rotations of
the input and averages the outputs mapped back; it composes with tiling (each pass may be tiled).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ablate.errors import AblateError

# tile sides tried, largest first, when a whole image does not fit (eval.tile: null)
AUTO_TILES = (512, 256, 128, 64)

Forward = Callable[[Tensor], Tensor]


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is the device (or the host) running out of memory."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Where the tiles of one axis start: every ``stride`` pixels, the last one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _fade(n: int, head: int, tail: int) -> Tensor:
    """(n,) weights of one tile along one axis: 1, except across the ``head`` pixels it shares with
    the previous tile and the ``tail`` it shares with the next. There the outer quarter is dropped (the
    pixels nearest the tile's edge saw the least context) and the middle half fades linearly, so two
    neighbours' weights add up to 1 across the strip."""
    w = torch.ones(n, dtype=torch.float32)
    if head:
        w[:head] = _ramp(head)
    if tail:
        w[n - tail:] = torch.minimum(w[n - tail:], _ramp(tail).flip(0))
    return w


def _ramp(n: int) -> Tensor:
    """0 over the first quarter of ``n`` pixels, then linear to 1 at three quarters (a floor of 1e-6
    keeps a weight sum from being 0 where tiles overlap three deep)."""
    centre = torch.arange(n, dtype=torch.float32) + 0.5
    return ((centre - n / 4) / (n / 2)).clamp(1e-6, 1.0)


def _axis_tiles(length: int, tile: int, overlap: int) -> list[tuple[int, int, int]]:
    """``(start, shared with the previous tile, shared with the next)`` for each tile of one axis."""
    size = min(tile, length)
    starts = tile_starts(length, size, max(1, size - overlap))
    out = []
    for i, s in enumerate(starts):
        before = starts[i - 1] + size - s if i else 0
        after = s + size - starts[i + 1] if i + 1 < len(starts) else 0
        out.append((s, before, after))
    return out


@torch.no_grad()
def tiled_forward(model: Forward, x: Tensor, tile: int, overlap: int, scale: int) -> Tensor:
    """``model`` on (B, C, h, w) in overlapping ``tile`` × ``tile`` pieces, cross-faded; (B, C', h·s, w·s)
    float32. Only one tile's activations are alive at a time."""
    h, w = x.shape[-2:]
    size_y, size_x = min(tile, h), min(tile, w)
    out: Tensor | None = None
    weight = torch.zeros(h * scale, w * scale, dtype=torch.float32, device=x.device)
    for y, up, down in _axis_tiles(h, tile, overlap):
        wy = _fade(size_y * scale, up * scale, down * scale).to(x.device)
        for x0, left, right in _axis_tiles(w, tile, overlap):
            piece = model(x[..., y:y + size_y, x0:x0 + size_x]).float()
            if out is None:
                out = torch.zeros(*piece.shape[:-2], h * scale, w * scale, dtype=torch.float32, device=x.device)
            wxy = wy[:, None] * _fade(size_x * scale, left * scale, right * scale).to(x.device)[None, :]
            rows, cols = slice(y * scale, (y + size_y) * scale), slice(x0 * scale, (x0 + size_x) * scale)
            out[..., rows, cols] += piece * wxy
            weight[rows, cols] += wxy
    assert out is not None
    return out / weight


def _transform(x: Tensor, k: int) -> Tensor:
    """The k-th of the 8 symmetries of the square: a horizontal flip when k ≥ 4, then k mod 4 quarter turns."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


def _untransform(y: Tensor, k: int) -> Tensor:
    y = torch.rot90(y, -(k % 4), dims=(-2, -1))
    return y.flip(-1) if k >= 4 else y


@torch.no_grad()
def ensemble_forward(forward: Forward, x: Tensor) -> Tensor:
    """The ×8 self-ensemble: the mean over the 8 flips/rotations g of g⁻¹(forward(g(x))), float32."""
    total: Tensor | None = None
    for k in range(8):
        y = _untransform(forward(_transform(x, k)).float(), k)
        total = y if total is None else total + y
    assert total is not None
    return total / 8


class Restorer:
    """A model as the evaluation protocol runs it: one LQ image in, the clamped float32 restoration out.

    ``model`` is called on (1, 3, h, w) batches of ``dtype`` on ``device`` (it is not moved or cast
    here). ``tile``: always tile with this LQ side; None: whole images, and on running out of memory
    the image is retried in tiles of :data:`AUTO_TILES` (largest that fits). ``tiled_images`` counts
    the images that were tiled. An automatic tile shares at most half its side with a neighbour.
    """

    def __init__(self, model: Forward, scale: int, device: torch.device, dtype: torch.dtype = torch.float32, *,
                 tile: int | None = None, overlap: int = 32, self_ensemble: bool = False) -> None:
        self.model, self.scale, self.device, self.dtype = model, scale, device, dtype
        self.tile, self.overlap, self.self_ensemble = tile, overlap, self_ensemble
        self.tiled_images = 0

    def __call__(self, lq: Tensor) -> Tensor:
        """(3, h, w) → (3, h·scale, w·scale) float32 in [0, 1] on the CPU.

        A low-precision overflow (inf/NaN) is scored as the garbage image it would save as, like the
        trainer's validation.
        """
        x = lq.unsqueeze(0).to(device=self.device, dtype=self.dtype)
        out = self._restore(x)
        return torch.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0).clamp_(0, 1).cpu()[0]

    def _restore(self, x: Tensor) -> Tensor:
        if self.tile is not None:
            self.tiled_images += max(x.shape[-2:]) > self.tile
            return self._pass(x, self.tile, self.overlap)
        try:
            return self._pass(x, None, 0)
        except RuntimeError as err:
            if not is_oom(err):
                raise
        # out of the except block: the failed pass' tensors (held by the traceback) are freed now
        for tile in (t for t in AUTO_TILES if t < max(x.shape[-2:])):
            _free(self.device)
            try:
                out = self._pass(x, tile, min(self.overlap, tile // 2))
            except RuntimeError as err:
                if not is_oom(err):
                    raise
                continue
            self.tiled_images += 1
            return out
        raise AblateError(f"out of memory on {self.device} even in {AUTO_TILES[-1]}-pixel tiles "
                          f"(image {x.shape[-2]}×{x.shape[-1]})")

    def _pass(self, x: Tensor, tile: int | None, overlap: int) -> Tensor:
        def one(t: Tensor) -> Tensor:
            if tile is None:
                return self.model(t).float()
            return tiled_forward(self.model, t, tile, overlap, self.scale)

        with torch.no_grad():
            return ensemble_forward(one, x) if self.self_ensemble else one(x)


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
