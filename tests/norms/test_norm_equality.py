"""The built-in normalizers compute what they computed before they moved to torch's fused kernels.

    pytest tests/norms/test_norm_equality.py

``_reference.py`` is a frozen copy of the previous implementations. For every built-in norm × rescale
(where it has a σ) × a residual and a non-residual site (presets build other classes there), the
shipped layer and the reference, holding the same random γ, β (and α, gates, buffers), must give
the same output, σ, residual update and gradients with respect to the input and every parameter
(σ's own gradient included, through ``residual()``): within 1e-10 in float64 and 1e-5 relative in
float32. Batch norm runs in train mode, then in eval mode with running and with batch statistics,
and its running averages must agree too. Then: the same output dtypes under autocast and in a half
model, one graph under ``torch.compile(fullgraph=True)``, and no γ/β-gradient kernel of layer_norm.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import _reference
import pytest
import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from ablate.norms import Normalizer, NormPreset, resolve_norm
from ablate.registry import NORMS

BUILT_INS = sorted(k for k in NORMS.keys() if NORMS.entry(k).source == "ablate")
B, H, W, C = 3, 5, 6, 8
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def _variants() -> list[tuple[str, bool | None]]:
    out: list[tuple[str, bool | None]] = []
    for key in BUILT_INS:
        obj = NORMS.get(key)
        if isinstance(obj, NormPreset):  # a preset fixes its own rescale
            out.append((key, None))
        else:
            out += [(key, False)] + ([(key, True)] if obj.sigma is not None else [])
    return out


VARIANTS = _variants()


def _layer(key: str, rescale: bool | None, site: str, dtype: torch.dtype = torch.float32,
           params: dict[str, Any] | None = None) -> tuple[Normalizer, nn.Module]:
    """The shipped layer at ``site`` and the reference layer of the same class, same parameters and state."""
    spec: Any = {"name": key, **params} if params else key
    layer = resolve_norm(spec, rescale)(C, site)
    ref_cls = getattr(_reference, type(layer).__name__)
    # settings (eps, momentum, groups, eval_stats) from the layer; initial values of parameters (α, gates)
    # do not matter: the state dict copies the parameters themselves
    kwargs = {name: getattr(layer, name) for name in ref_cls.PARAMS
              if not isinstance(getattr(layer, name, None), Tensor | type(None))}
    ref = ref_cls(C, rescale=layer.rescale, **kwargs)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # off their init (γ = 1, β = 0, α = 0, gates 1e-4), so every path counts
        for p in layer.parameters():
            p.copy_(p + 0.5 * torch.randn(p.shape, generator=gen) + 0.3)
        for buf in layer.buffers():  # batch norm's running averages: not 0 and 1
            buf.copy_(buf + 0.3 * torch.rand(buf.shape, generator=gen) + 0.1)
    ref.load_state_dict(layer.state_dict())
    return layer.to(dtype), ref.to(dtype)


def _map(dtype: torch.dtype, seed: int = 0) -> Tensor:
    """(B, H·W, C) with uneven per-token, per-channel and per-sample scales and offsets."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, H * W, C, generator=g, dtype=torch.float64)
    x = x * torch.exp(0.7 * torch.randn(B, H * W, 1, generator=g, dtype=torch.float64))
    x = x * torch.exp(0.7 * torch.randn(1, 1, C, generator=g, dtype=torch.float64))
    x = x * torch.exp(torch.randn(B, 1, 1, generator=g, dtype=torch.float64))
    return (x + 2 * torch.randn(B, 1, C, generator=g, dtype=torch.float64)).to(dtype)


def _results(layer: nn.Module, x: Tensor) -> Iterator[tuple[str, Tensor]]:
    """Output, σ, residual update (the reference formula, frozen), and the gradients of a loss on all three."""
    g = torch.Generator().manual_seed(11)
    branch_w = torch.randn(C, C, generator=g, dtype=torch.float64).to(x.dtype) / C**0.5
    weights = [torch.randn(x.shape, generator=g, dtype=torch.float64).to(x.dtype) for _ in range(2)]
    xg = x.detach().clone().requires_grad_(True)
    y, sigma = layer.normalize(xg)  # type: ignore[operator]
    out = y @ branch_w
    residual = xg + layer.gate(out * sigma if sigma is not None else out)  # type: ignore[operator]
    loss = (y * weights[0]).sum() + (residual * weights[1]).sum()
    params = [(n, p) for n, p in layer.named_parameters()]
    grads = torch.autograd.grad(loss, [xg, *(p for _, p in params)], allow_unused=True)
    yield "y", y
    if sigma is not None:
        yield "sigma", sigma
    yield "residual", residual
    for (name, _), grad in zip([("x", xg), *params], grads):
        yield f"grad {name}", grad if grad is not None else torch.zeros(())
    for name, buf in layer.named_buffers():
        yield f"buffer {name}", buf


def _assert_equal(layer: nn.Module, ref: nn.Module, x: Tensor, where: str) -> None:
    tol = TOLERANCE[x.dtype]
    got, want = dict(_results(layer, x)), dict(_results(ref, x))
    assert got.keys() == want.keys(), f"{where}: {sorted(got)} != {sorted(want)}"
    for name, w in want.items():
        a = got[name]
        assert a.dtype == w.dtype and a.shape == w.shape, f"{where}, {name}: {a.dtype} {tuple(a.shape)} " \
                                                          f"!= {w.dtype} {tuple(w.shape)}"
        scale = float(w.detach().abs().max()) or 1.0
        diff = float((a.detach() - w.detach()).abs().max()) / scale
        assert diff <= tol, f"{where}, {name}: max |new − reference| = {diff:.3g} × max |reference| > {tol:g}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("site", ["attn", "embed"])
@pytest.mark.parametrize(("key", "rescale"), VARIANTS, ids=str)
def test_every_built_in_norm_equals_its_previous_implementation(key: str, rescale: bool | None, site: str,
                                                               dtype: torch.dtype) -> None:
    layer, ref = _layer(key, rescale, site, dtype)
    modes = ["train"] if not type(layer).train_eval_differ else ["train", "eval"]
    for mode in modes:
        layer.train(mode == "train"), ref.train(mode == "train")
        for seed in (0, 1):  # a second step: batch norm's running averages move on from the first
            _assert_equal(layer, ref, _map(dtype, seed), f"{key} rescale={rescale} at {site}, {mode}, seed {seed}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("rescale", [False, True])
def test_batch_norm_with_batch_statistics_in_eval_equals_its_previous_implementation(
        rescale: bool, dtype: torch.dtype) -> None:
    layer, ref = _layer("batch_norm", rescale, "attn", dtype, params={"eval_stats": "batch"})
    layer.eval(), ref.eval()
    _assert_equal(layer, ref, _map(dtype), f"batch_norm eval_stats=batch rescale={rescale}")


@pytest.mark.parametrize("rescale", [False, True])
def test_batch_norm_on_a_single_row_equals_its_previous_implementation(rescale: bool) -> None:
    # B·H·W = 1: torch's batch_norm cannot update the running averages from one value (n − 1 = 0)
    layer, ref = _layer("batch_norm", rescale, "attn", torch.float64)
    _assert_equal(layer, ref, _map(torch.float64)[:1, :1], f"batch_norm rescale={rescale}, one row")


# --- dtypes: float32 statistics, today's output dtypes ------------------------------------------------


def _dtypes(layer: nn.Module, x: Tensor, autocast: torch.dtype | None) -> tuple[torch.dtype, ...]:
    x = x.detach().requires_grad_(True)
    with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
        y, sigma = layer.normalize(x)  # type: ignore[operator]
    assert torch.isfinite(y).all()
    (gx,) = torch.autograd.grad(y.float().sum() + (sigma.float().sum() if sigma is not None else 0), x)
    return y.dtype, (sigma.dtype if sigma is not None else y.dtype), gx.dtype


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize(("key", "rescale"), VARIANTS, ids=str)
def test_output_dtypes_under_autocast_and_in_a_half_model_are_unchanged(key: str, rescale: bool | None,
                                                                       low: torch.dtype) -> None:
    layer, ref = _layer(key, rescale, "attn")
    for x_dtype in (low, torch.float32):  # the residual stream in low precision, or promoted
        x = _map(torch.float32).to(x_dtype)
        assert _dtypes(layer, x, low) == _dtypes(ref, x, low), f"{key} under {low} autocast, {x_dtype} input"
    half, half_ref = copy.deepcopy(layer).to(low), copy.deepcopy(ref).to(low)
    x = _map(torch.float32).to(low)
    assert _dtypes(half, x, None) == _dtypes(half_ref, x, None), f"{key} as a {low} model"


# --- compile: one graph ------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "rescale"), VARIANTS, ids=str)
def test_every_built_in_norm_compiles_into_one_graph_and_matches_eager(key: str, rescale: bool | None) -> None:
    torch._dynamo.reset()
    layer, _ = _layer(key, rescale, "attn")
    layer.train(False)  # eval: batch norm would update its running averages twice
    x = _map(torch.float32).requires_grad_(True)

    def step(x: Tensor) -> Tensor:
        return layer.residual(x, lambda y: y * 2.0)

    # aot_eager traces the backward too (σ's autograd node included), without a C++ compiler's time
    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    for fn in (compiled, step):
        out = fn(x)
        (gx,) = torch.autograd.grad((out * out).sum(), x)
        if fn is compiled:
            got = (out.detach(), gx)
    torch.testing.assert_close(got[0], out.detach())
    torch.testing.assert_close(got[1], gx)


# --- the kernels ---------------------------------------------------------------------------------------


class _Ops(TorchDispatchMode):
    """Records every dispatched aten operator with its arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.calls.append((func.overloadpacket.__name__, args))
        return func(*args, **(kwargs or {}))


def _residual_step_ops(key: str, rescale: bool | None) -> list[tuple[str, tuple[Any, ...]]]:
    layer, _ = _layer(key, rescale, "attn")
    x = _map(torch.float32).requires_grad_(True)
    w = torch.ones(C)
    with _Ops() as ops:
        layer.residual(x, lambda y: y * w).sum().backward()
    return ops.calls


@pytest.mark.parametrize(("key", "rescale"), VARIANTS, ids=str)
def test_no_layer_norm_computes_its_affine_gradient(key: str, rescale: bool | None) -> None:
    """The γ/β-gradient kernel of torch's layer_norm is pathological for small C on a GPU (issue 17)."""
    for name, args in _residual_step_ops(key, rescale):
        if name == "native_layer_norm":
            assert args[2] is None and args[3] is None, f"{key}: layer_norm called with γ/β"
        if name == "native_layer_norm_backward":
            assert list(args[7][1:]) == [False, False], f"{key}: layer_norm's γ/β gradient computed"


def test_i_ln_dispatches_few_more_operators_than_token_ln() -> None:
    """i-LN's residual step costs token LN's plus σ (the rescale σ · f(y), σ = 1/rstd and its gradient):
    3 aten operators more forward+backward as measured (torch 2.13), where the hand-written node added 34.
    The issue's target is i-LN ≤ 1.10 × token LN over a whole model; this keeps the norms' share small."""
    counts = {key: len(_residual_step_ops(key, None)) for key in ("token_ln", "i_ln")}
    assert counts["i_ln"] <= counts["token_ln"] + 4, counts


def test_every_built_in_names_its_kernel() -> None:
    classes = {NORMS.get(key) for key in BUILT_INS if not isinstance(NORMS.get(key), NormPreset)}
    kernels: dict[str, Callable[..., Any]] = {}
    for cls in classes:
        assert cls.kernel and cls.kernel != Normalizer.kernel, f"{cls.__name__} does not say how it computes"
        kernels[cls.kernel] = cls
    assert len(kernels) == len(classes), "two built-ins name the same kernel"
