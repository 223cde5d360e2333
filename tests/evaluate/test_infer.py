"""Whole-image inference: overlapping tiles agree with one pass, the ×8 self-ensemble, the OOM fallback."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from ablate.errors import AblateError
from ablate.evaluate import Restorer, ensemble_forward, is_oom, tile_starts, tiled_forward

CPU = torch.device("cpu")


def _model(norm: str = "token_ln") -> nn.Module:
    from ablate.backbones import build_backbone
    from ablate.norms import resolve_norm

    torch.manual_seed(0)
    spec = {"name": "swinir-tiny", "embed_dim": 16, "depths": [2, 2], "num_heads": 2, "window_size": 4}
    return build_backbone(spec, resolve_norm(norm), 2).eval()


def _coffee() -> tuple[Tensor, Tensor]:
    """The whole scikit-image coffee picture as an SR ×2 test pair (LQ 200×300)."""
    from ablate.data import eval_pairs

    _, lq, gt = next(iter(eval_pairs({"name": "skimage", "val": ["coffee"]}, "sr-x2", seed=0)))
    return lq, gt


def test_tile_starts_cover_the_axis() -> None:
    assert tile_starts(100, 128, 96) == [0]
    assert tile_starts(300, 128, 96) == [0, 96, 172]
    for length in (64, 65, 127, 300, 301):
        starts = tile_starts(length, 64, 48)
        assert starts[0] == 0 and starts[-1] + 64 == max(length, 64)
        assert all(b - a <= 48 for a, b in zip(starts, starts[1:]))


def test_tiled_and_whole_agree_within_a_hundredth_of_a_db() -> None:
    from ablate.metrics import psnr

    model = _model()
    lq, gt = _coffee()
    whole = Restorer(model, 2, CPU)(lq)
    tiles = Restorer(model, 2, CPU, tile=96, overlap=32)
    tiled = tiles(lq)
    assert tiles.tiled_images == 1 and tiled.shape == whole.shape == gt.shape
    p_whole = psnr(whole, gt, crop_border=2, y_channel=True)
    p_tiled = psnr(tiled, gt, crop_border=2, y_channel=True)
    assert abs(p_whole - p_tiled) < 0.01
    # a per-token network reproduces the whole image away from tile borders: only float noise remains
    assert (whole - tiled).abs().max() < 1e-4


def test_a_tile_without_overlap_leaves_seams() -> None:
    """The overlap is what makes tiles agree: abutting tiles differ near their borders."""
    model = _model()
    lq, _ = _coffee()
    lq = lq[:, :96, :96]
    with torch.no_grad():
        whole = model(lq[None])
    assert (tiled_forward(model, lq[None], 48, 0, 2) - whole).abs().max() > 1e-3
    assert (tiled_forward(model, lq[None], 64, 32, 2) - whole).abs().max() < 1e-4


def test_self_ensemble_is_the_mean_of_the_eight_transformed_passes() -> None:
    model = _model()
    lq, _ = _coffee()
    x = lq[None, :, :40, :56]
    with torch.no_grad():
        passes = []
        for flip in (False, True):
            for k in range(4):
                t = x.flip(-1) if flip else x
                y = model(torch.rot90(t, k, dims=(-2, -1)))
                y = torch.rot90(y, -k, dims=(-2, -1))
                passes.append(y.flip(-1) if flip else y)
    expected = torch.stack(passes).mean(0)
    got = ensemble_forward(model, x)
    assert torch.allclose(got, expected, atol=1e-6)
    assert (got - passes[0]).abs().max() > 1e-4  # not just the plain pass
    restored = Restorer(model, 2, CPU, self_ensemble=True)(x[0])
    assert torch.allclose(restored, expected[0].clamp(0, 1), atol=1e-6)


class _Small:
    """A model that runs out of memory on inputs with more than ``limit`` pixels."""

    def __init__(self, model: nn.Module, limit: int, error: type[Exception] = RuntimeError) -> None:
        self.model, self.limit, self.error, self.calls = model, limit, error, []

    def __call__(self, x: Tensor) -> Tensor:
        self.calls.append(tuple(x.shape[-2:]))
        if x.shape[-2] * x.shape[-1] > self.limit:
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model(x)


def test_out_of_memory_falls_back_to_tiles() -> None:
    model = _model()
    lq, _ = _coffee()
    lq = lq[:, :150, :200]
    small = _Small(model, 128 * 128)
    restore = Restorer(small, 2, CPU, overlap=16)
    out = restore(lq)
    assert restore.tiled_images == 1
    assert small.calls[0] == (150, 200) and max(h * w for h, w in small.calls[1:]) <= 128 * 128
    expected = tiled_forward(model, lq[None], 128, 16, 2).clamp(0, 1)[0]
    assert torch.allclose(out, expected, atol=1e-6)
    # torch's own OOM type is recognized too; another error is not swallowed
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    assert not is_oom(RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        Restorer(lambda x: (_ for _ in ()).throw(RuntimeError("shape mismatch")), 2, CPU)(lq)


def test_out_of_memory_even_in_the_smallest_tiles_is_one_line() -> None:
    restore = Restorer(_Small(_model(), 16), 2, CPU)
    with pytest.raises(AblateError, match="out of memory on cpu even in 64-pixel tiles"):
        restore(torch.rand(3, 100, 120))


def test_low_precision_overflow_scores_as_garbage_not_nan() -> None:
    restore = Restorer(lambda x: torch.full((1, 3, 8, 8), float("inf"), dtype=x.dtype), 2, CPU, torch.float16)
    out = restore(torch.rand(3, 4, 4))
    assert out.dtype == torch.float32 and torch.isfinite(out).all() and out.max() == 1.0
