"""``check_norm``: the contract every norm variant keeps (built-in or plugin).

    from ablate.testing import check_norm
    check_norm("rms_norm", rescale=True)
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from ablate.errors import SpecError
from ablate.norms import (
    RESIDUAL_SITES,
    SIGMA_SHAPES,
    SITES,
    Normalizer,
    NormVariant,
    resolve_norm,
)
from ablate.params import Param, check_params

NormLike = str | Mapping[str, Any] | NormVariant | type[Normalizer]


def check_norm(norm: NormLike, dim: int = 16, *, rescale: bool | None = None,
               params: Mapping[str, Any] | None = None, sites: Iterable[str] = SITES, batch: int = 3,
               size: tuple[int, int] = (5, 7), seed: int = 0) -> NormVariant | None:
    """Check a norm variant's contract on a random (batch, H·W, dim) token map; AssertionError if broken.

    ``norm`` is a registry key or ``{name: ..., param: ...}`` mapping (resolved with
    :func:`ablate.norms.resolve_norm`), a :class:`NormVariant`, or a :class:`Normalizer` subclass
    (built with ``params``). ``rescale`` overrides the variant's own flag; ``rescale=True`` on a
    normalizer that divides by no σ checks that the rescale is *refused* with a SpecError and returns
    None. For every site in ``sites`` the layer must:

    - keep the (B, L, C) shape and dtype and give finite outputs and gradients in float32 and bfloat16;
    - pass gradients to the input and to every parameter (through ``forward`` and ``residual``);
    - give sample 0 the same output whatever the other samples are, unless ``batch_dependent``;
    - give the same output in train and eval mode, unless ``train_eval_differ``;
    - compute ``residual(x, f) == x + gate(σ · f(norm(x)))`` with σ of the broadcast shape declared
      by its ``sigma`` (``SIGMA_SHAPES``), positive, finite and not detached — or ``x + gate(f(norm(x)))``
      without rescale.

    Returns the checked NormVariant. Any ``dim`` divisible by the normalizer's defaults works
    (16 suits group_norm's 4 groups); keep ``size`` small, the checks run on CPU. The global torch
    RNG state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):  # layer inits must not advance the caller's RNG
        return _check_norm(norm, dim, rescale, params, sites, batch, size, seed)


def _check_norm(norm: NormLike, dim: int, rescale: bool | None, params: Mapping[str, Any] | None,
                sites: Iterable[str], batch: int, size: tuple[int, int], seed: int) -> NormVariant | None:
    variant = _as_variant(norm, rescale, params, dim)
    if variant is None:
        return None
    name = variant.name
    classes = [variant.normalizer, *(cls for cls, _ in variant.sites.values())]
    for site in SITES:  # what a gate-only variant builds at the sites without a residual branch
        if site not in RESIDUAL_SITES and site not in variant.sites:
            classes.append(variant.normalizer.at_site(site, variant.params)[0])
    for cls in dict.fromkeys(classes):
        _check_class(cls, dim, name)
    gen = torch.Generator().manual_seed(seed)
    x = _token_map(batch, size, dim, gen)
    branch = _Branch(dim, gen)
    for site in sites:
        if site not in SITES:
            raise ValueError(f"check_norm: unknown site {site!r}; sites are {', '.join(SITES)}")
        layer = variant(dim, site)
        where = f"{name} at site {site!r} ({type(layer).__name__})"
        _check(isinstance(layer, Normalizer), f"{where}: the variant built a {type(layer).__name__}, "
               "not a Normalizer")
        expect_rescale = variant.rescale and site in RESIDUAL_SITES and site not in variant.sites
        _check(bool(layer.rescale) == expect_rescale,
               f"{where}: layer.rescale is {layer.rescale}, expected {expect_rescale} (rescale applies to "
               f"the residual sites {', '.join(RESIDUAL_SITES)} only)")
        _perturb(layer, gen)
        try:
            _check_layer(layer, x, branch, where, gen, residual_site=site in RESIDUAL_SITES)
        except AssertionError:
            raise
        except Exception as err:  # a crash inside the component is a broken contract too: say where
            raise AssertionError(f"{where}: raised {type(err).__name__}: {err}") from err
    return variant


# --- building the variant ---------------------------------------------------------------------

def _as_variant(norm: NormLike, rescale: bool | None, params: Mapping[str, Any] | None,
                dim: int) -> NormVariant | None:
    if isinstance(norm, type) and issubclass(norm, Normalizer):
        cls = norm
        if rescale and cls.sigma is None:
            _check_refused(lambda: cls(dim, rescale=True), cls.__name__)
            return None
        checked = check_params(cls.__name__, cls.PARAMS, dict(params or {}), "params", defaults=False)
        return NormVariant(cls.__name__, cls, bool(rescale), checked, {})
    if isinstance(norm, NormVariant):
        if params:
            raise ValueError("check_norm: params apply to a registry key or Normalizer class, not a NormVariant")
        if rescale is None or rescale == norm.rescale:
            return norm
        if rescale and norm.normalizer.sigma is None:
            _check_refused(lambda: norm.normalizer(dim, rescale=True), norm.name)
            return None
        return dataclasses.replace(norm, rescale=rescale)
    if isinstance(norm, str | Mapping):
        spec: str | dict[str, Any]
        if isinstance(norm, str):
            spec = {"name": norm, **params} if params else norm
        else:
            spec = {**norm, **(params or {})}
        plain = resolve_norm(spec)
        if rescale and not plain.rescale and plain.normalizer.sigma is None:
            _check_refused(lambda: resolve_norm(spec, rescale=True), plain.name)
            _check_refused(lambda: plain.normalizer(dim, rescale=True), plain.name)
            return None
        return resolve_norm(spec, rescale=rescale)
    raise TypeError(f"check_norm: expected a registry key, a mapping, a NormVariant or a Normalizer "
                    f"subclass, got {norm!r}")


def _check_refused(build: Callable[[], object], name: str) -> None:
    """Rescale on a normalizer without σ must fail early, as a SpecError that says why."""
    try:
        build()
    except SpecError as err:
        _check("rescale" in str(err), f"{name}: rescale was refused, but the SpecError does not name "
               f"'rescale': {err}")
        return
    raise AssertionError(f"{name}: declares sigma=None (divides by no σ) yet accepted rescale=True; "
                         "it must raise SpecError")


def _check_class(cls: type[Normalizer], dim: int, name: str) -> None:
    where = f"{name} ({cls.__name__})"
    _check(isinstance(cls, type) and issubclass(cls, Normalizer), f"{where}: not a Normalizer subclass")
    _check(cls.sigma is None or cls.sigma in SIGMA_SHAPES,
           f"{where}: sigma = {cls.sigma!r}, expected None or one of {', '.join(SIGMA_SHAPES)}")
    for attr in ("batch_dependent", "train_eval_differ"):
        _check(isinstance(getattr(cls, attr), bool), f"{where}: {attr} must be a bool")
    _check(isinstance(cls.PARAMS, dict), f"{where}: PARAMS must be a dict name -> ablate.params.Param")
    defaults: dict[str, Any] = {}
    for key, decl in cls.PARAMS.items():
        _check(isinstance(decl, Param), f"{where}: PARAMS[{key!r}] must be an ablate.params.Param, got {decl!r}")
        defaults[key] = decl.default
    try:  # the declared defaults must pass the declared validation and be accepted by the constructor
        cls(dim, **check_params(cls.__name__, cls.PARAMS, defaults, f"{cls.__name__}.PARAMS"))
    except Exception as err:
        raise AssertionError(f"{where}: cannot be built with its declared parameter defaults "
                             f"{defaults}: {type(err).__name__}: {err}") from err
    if cls.sigma is None:
        _check_refused(lambda: cls(dim, rescale=True), where)


# --- inputs -----------------------------------------------------------------------------------

def _token_map(batch: int, size: tuple[int, int], dim: int, gen: torch.Generator) -> Tensor:
    """A (B, H·W, C) map whose tokens, channels and samples differ in scale and offset.

    Uneven scales make per-token, per-channel and per-sample statistics all differ, so a normalizer
    that reduces over the wrong axes changes the outputs the checks compare.
    """
    n = size[0] * size[1]
    x = torch.randn(batch, n, dim, generator=gen)
    token_scale = torch.exp(0.5 * torch.randn(batch, n, 1, generator=gen))
    channel_scale = torch.exp(0.5 * torch.randn(1, 1, dim, generator=gen))
    sample_scale = torch.exp(torch.randn(batch, 1, 1, generator=gen))
    offset = torch.randn(batch, 1, dim, generator=gen)
    return x * token_scale * channel_scale * sample_scale + offset


class _Branch:
    """A fixed random linear map standing in for an attention/FFN branch."""

    def __init__(self, dim: int, gen: torch.Generator) -> None:
        self.weight = torch.randn(dim, dim, generator=gen) / dim**0.5
        self.bias = 0.1 * torch.randn(dim, generator=gen)

    def __call__(self, y: Tensor) -> Tensor:
        return y @ self.weight.to(y.dtype) + self.bias.to(y.dtype)


def _perturb(layer: Normalizer, gen: torch.Generator) -> None:
    """Move parameters off their init (γ = 1, β = 0, α = 0 …) so no gradient path hides behind a zero."""
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen).to(p.dtype))


# --- the checks on one layer ------------------------------------------------------------------

def _check(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def _close(a: Tensor, b: Tensor, rtol: float = 1e-5, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def _maxdiff(a: Tensor, b: Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max()) if a.shape == b.shape else float("nan")


def _check_layer(layer: Normalizer, x: Tensor, branch: _Branch, where: str, gen: torch.Generator, *,
                 residual_site: bool) -> None:
    cls = type(layer)
    layer.train()
    _check_outputs(layer, x, branch, where, torch.float32)
    _check_grads(layer, x, branch, where, residual_site)
    if layer.rescale:
        _check_sigma(layer, x, branch, where)
    else:
        with torch.no_grad():
            y, _ = layer.normalize(x)
            want = x + layer.gate(branch(y))
            got = layer.residual(x, branch)
        _check(_close(got, want), f"{where}: residual(x, f) != x + gate(f(norm(x))) without rescale "
               f"(max diff {_maxdiff(got, want):.3g})")
    if not cls.batch_dependent:
        _check_batch_independent(layer, x, branch, where, gen)
    if not cls.train_eval_differ:
        _check_train_eval(layer, x, branch, where)
    _check_outputs(copy.deepcopy(layer).to(torch.bfloat16), x, branch, where, torch.bfloat16)


def _check_outputs(layer: Normalizer, x: Tensor, branch: _Branch, where: str, dtype: torch.dtype) -> None:
    xd = x.detach().to(dtype).requires_grad_(True)
    label = str(dtype).replace("torch.", "")
    outs = []
    for what, fn in (("norm(x)", lambda: layer(xd)), ("residual(x, f)", lambda: layer.residual(xd, branch))):
        t = fn()
        _check(isinstance(t, Tensor), f"{where}: {what} returned {type(t).__name__}, expected a Tensor")
        _check(t.shape == x.shape, f"{where}: {what} has shape {tuple(t.shape)} for a (B, L, C) input of "
               f"shape {tuple(x.shape)}; the shape must be kept")
        _check(t.dtype == dtype, f"{where}: {what} returned {t.dtype} for a {label} input")
        _check(bool(torch.isfinite(t).all()), f"{where}: {what} is not finite in {label}")
        outs.append(t)
    (outs[0].float().sum() + outs[1].float().sum()).backward()
    _check(xd.grad is not None and bool(torch.isfinite(xd.grad).all()),
           f"{where}: the input gradient is missing or not finite in {label}")


def _check_grads(layer: Normalizer, x: Tensor, branch: _Branch, where: str, residual_site: bool) -> None:
    layer.zero_grad(set_to_none=True)
    xg = x.detach().clone().requires_grad_(True)
    # random upstream weights: sum(LN(x)) has an exactly zero input gradient, a weighted sum does not
    gen = torch.Generator().manual_seed(1)
    w1, w2 = torch.randn(x.shape, generator=gen), torch.randn(x.shape, generator=gen)
    out = layer(xg)
    # through norm(x) alone: the residual's identity path would hide a normalizer cut off from x
    (g_norm,) = torch.autograd.grad((out * w1).sum(), xg, retain_graph=True, allow_unused=True)
    _check(g_norm is not None and bool(g_norm.abs().sum() > 0), f"{where}: no gradient reaches the input "
           "through norm(x)")
    assert g_norm is not None
    _check(bool(torch.isfinite(g_norm).all()), f"{where}: the input gradient is not finite")
    params = [(n, p) for n, p in layer.named_parameters() if p.requires_grad]
    if params and not residual_site:  # embed/final sites wrap no branch: backbones only call forward()
        grads = torch.autograd.grad((out * w1).sum(), [p for _, p in params], retain_graph=True,
                                    allow_unused=True)
        unused = [n for (n, _), g in zip(params, grads) if g is None]
        _check(not unused, f"{where}: parameter(s) {', '.join(map(repr, unused))} get no gradient through "
               "forward(), the only call at a site without a residual branch; override Normalizer.at_site "
               "to build a plain normalizer there (as LayerScale and ReZero do)")
    loss = (out * w1).sum() + (layer.residual(xg, branch) * w2).sum()
    loss.backward()
    for pname, p in layer.named_parameters():
        if not p.requires_grad:
            continue
        _check(p.grad is not None, f"{where}: parameter {pname!r} gets no gradient through forward() or "
               "residual()")
        assert p.grad is not None
        _check(bool(torch.isfinite(p.grad).all()), f"{where}: the gradient of parameter {pname!r} is not finite")
        _check(bool(p.grad.abs().sum() > 0), f"{where}: the gradient of parameter {pname!r} is exactly zero")
    layer.zero_grad(set_to_none=True)


def _sigma_shape(kind: str, x: Tensor) -> tuple[int, int, int]:
    b, n, c = x.shape
    return {"token": (b, n, 1), "channel": (1, 1, c), "sample": (b, 1, 1), "sample_channel": (b, 1, c)}[kind]


def _check_sigma(layer: Normalizer, x: Tensor, branch: _Branch, where: str) -> None:
    cls = type(layer)
    _check(cls.sigma is not None, f"{where}: rescale is on but the class declares sigma=None")
    assert cls.sigma is not None
    xg = x.detach().clone().requires_grad_(True)
    y, sigma = layer.normalize(xg)
    _check(sigma is not None, f"{where}: rescale is on but normalize() returned σ = None")
    assert sigma is not None
    want = _sigma_shape(cls.sigma, x)
    got = (1,) * (3 - sigma.dim()) + tuple(sigma.shape) if sigma.dim() <= 3 else tuple(sigma.shape)
    _check(got == want, f"{where}: σ has shape {tuple(sigma.shape)}, but sigma={cls.sigma!r} declares "
           f"{SIGMA_SHAPES[cls.sigma]} = {want} for x of shape {tuple(x.shape)}")
    _check(bool(torch.isfinite(sigma).all() and (sigma > 0).all()), f"{where}: σ is not finite and positive")
    _check(sigma.requires_grad, f"{where}: σ is detached; i-LN's rescale needs gradients through σ")
    # the residual must multiply the branch by exactly this σ …
    res = layer.residual(xg, branch)
    expected = xg + layer.gate(branch(y) * sigma)
    _check(_close(res, expected), f"{where}: residual(x, f) != x + gate(σ · f(norm(x))) "
           f"(max diff {_maxdiff(res, expected):.3g})")
    # … and let the gradient flow through it: detaching σ must change the input gradient
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    (g_live,) = torch.autograd.grad((res * w).sum(), xg, retain_graph=True)
    detached = xg + layer.gate(branch(y) * sigma.detach())
    (g_det,) = torch.autograd.grad((detached * w).sum(), xg)
    rel = float((g_live - g_det).norm() / g_live.norm().clamp_min(1e-30))
    _check(rel > 1e-4, f"{where}: the input gradient of residual() is the same with σ detached "
           f"(relative difference {rel:.2g}); gradients must flow through σ")


def _check_batch_independent(layer: Normalizer, x: Tensor, branch: _Branch, where: str,
                             gen: torch.Generator) -> None:
    other = x.clone()
    other[1:] = 3.0 * torch.randn(other[1:].shape, generator=gen) - 1.0
    for mode in ("train", "eval"):
        layer.train(mode == "train")
        with torch.no_grad():
            a, b = layer(x)[0], layer(other)[0]
            ra, rb = layer.residual(x, branch)[0], layer.residual(other, branch)[0]
        _check(_close(a, b) and _close(ra, rb),
               f"{where}: declares batch_dependent=False, but in {mode} mode the output for sample 0 "
               f"changes when the other samples change (max diff {max(_maxdiff(a, b), _maxdiff(ra, rb)):.3g})")
    layer.train()


def _check_train_eval(layer: Normalizer, x: Tensor, branch: _Branch, where: str) -> None:
    outs = []
    for mode in (True, False):
        layer.train(mode)
        with torch.no_grad():
            outs.append((layer(x), layer.residual(x, branch)))
    layer.train()
    (a, ra), (b, rb) = outs
    _check(_close(a, b) and _close(ra, rb),
           f"{where}: declares train_eval_differ=False, but train-mode and eval-mode outputs differ "
           f"(max diff {max(_maxdiff(a, b), _maxdiff(ra, rb)):.3g})")
