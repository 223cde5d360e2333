"""``check_backbone``: the contract every backbone keeps (built-in or plugin).

    from ablate.testing import check_backbone
    check_backbone("swinir-tiny", norm="i_ln", size=(13, 11))
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ablate.errors import AblateError
from ablate.norms import RESIDUAL_SITES, SITES, Normalizer, NormVariant, resolve_norm

# torch's own norm layers: a backbone that builds one directly bypasses the variant under study.
_TORCH_NORMS = tuple(getattr(nn, n) for n in ("LayerNorm", "GroupNorm", "LocalResponseNorm", "RMSNorm")
                     if hasattr(nn, n)) + (nn.modules.batchnorm._NormBase,)


@dataclasses.dataclass(frozen=True)
class _RecordingVariant(NormVariant):
    """A NormVariant that remembers every (site, layer) it built, to check how a backbone uses it."""

    calls: list[tuple[str, Normalizer]] = dataclasses.field(default_factory=list, compare=False, repr=False)

    def __call__(self, dim: int, site: str = "attn") -> Normalizer:
        layer = super().__call__(dim, site)
        self.calls.append((site, layer))
        return layer


def check_backbone(backbone: str | Mapping[str, Any] | Any, *, norm: str | Mapping[str, Any] = "i_ln",
                   rescale: bool | None = None, params: Mapping[str, Any] | None = None,
                   scales: Iterable[int] = (1, 2), size: tuple[int, int] = (13, 11), batch: int = 2,
                   seed: int = 0) -> nn.Module:
    """Build ``backbone`` with ``norm`` for each scale and check its contract; AssertionError if broken.

    ``backbone`` is a registry key, a ``{name: ..., param: ...}`` mapping or a ``Component``;
    ``params`` are merged into it (e.g. a smaller depth to keep a large preset fast). For each scale
    the model is built with ``ablate.backbones.build_backbone(spec, resolve_norm(norm, rescale), scale)``
    and must:

    - map a (batch, 3, h, w) input of any (here odd) size to (batch, 3, h·scale, w·scale), finite;
    - give every parameter a finite gradient (not all of them zero);
    - expose ``scale``, ``window_size``, ``embed_dim`` and ``final_norm``;
    - take every norm layer from the variant (no torch norm layers built directly), at known sites,
      with ``final_norm`` built for site ``final``, and apply each attn/ffn norm through
      ``norm.residual(x, branch)`` — otherwise a rescale (i-LN) would be silently skipped;
    - name ``probe_sites()`` shallow → deep, ending with ``final`` (the final norm), every site
      giving a (batch, L, embed_dim) token map of the full image;
    - give sample 0 the same output whatever the other samples are (with a per-sample norm: ``norm``
      itself, or token_ln when ``norm`` is batch-dependent).

    Returns the model built for the last scale. The global torch RNG state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):  # seeding below must not leak into the caller's RNG
        return _check_backbone(backbone, norm, rescale, params, scales, size, batch, seed)


def _check_backbone(backbone: Any, norm: str | Mapping[str, Any], rescale: bool | None,
                    params: Mapping[str, Any] | None, scales: Iterable[int], size: tuple[int, int], batch: int,
                    seed: int) -> nn.Module:
    from ablate.backbones import build_backbone

    spec = _spec(backbone, params)
    label = spec if isinstance(spec, str) else spec.get("name", spec)
    h, w = size
    if batch < 2:
        raise ValueError("check_backbone: batch must be ≥ 2 to check per-sample independence")
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, h, w, generator=gen)
    other = x.clone()
    other[1:] = torch.rand(other[1:].shape, generator=gen)
    scales = tuple(scales)
    if not scales:
        raise ValueError("check_backbone: scales must not be empty")
    model: nn.Module | None = None
    base = resolve_norm(norm, rescale)
    for scale in scales:
        variant = _RecordingVariant(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
        torch.manual_seed(seed)
        model = build_backbone(spec, variant, scale)
        where = f"backbone {label!r} (scale {scale}, norm {variant.name})"
        last = scale == scales[-1] and not variant.batch_dependent
        with _located(where):
            _check_model(model, variant, x, other if last else None, scale, size, where)
    assert model is not None
    if base.batch_dependent:  # independence needs a per-sample norm: check it once with token_ln
        torch.manual_seed(seed)
        per_sample = build_backbone(spec, resolve_norm("token_ln"), scales[-1]).eval()
        where = f"backbone {label!r} (scale {scales[-1]}, norm token_ln)"
        with _located(where):
            with torch.no_grad():
                out_eval = per_sample(x)
            _check_independent(per_sample, other, out_eval, where)
    return model


def _check_model(model: nn.Module, variant: _RecordingVariant, x: Tensor, other: Tensor | None, scale: int,
                 size: tuple[int, int], where: str) -> None:
    _check_attributes(model, scale, where)
    residual_layers = _check_norm_layers(model, variant, where)
    calls = _count_residual_calls(residual_layers)
    model.train()
    try:
        out = model(x)
    finally:
        _uninstall(residual_layers)
    _check_image(out, x, scale, where)
    for name, (site, _) in residual_layers.items():
        _check(calls[name] > 0, f"{where}: the {site!r} norm {name!r} is never applied through "
               "norm.residual(x, branch); a rescale (i-LN) would be silently skipped there")
    _check_grads(model, out, _residual_only_params(model, variant), where)
    out_eval = _check_probe_sites(model, x, size, where)
    if other is not None:
        _check_independent(model, other, out_eval, where)


@contextlib.contextmanager
def _located(where: str) -> Iterator[None]:
    """A crash inside the model is a broken contract too: re-raise it as an AssertionError saying where."""
    try:
        yield
    except (AssertionError, AblateError):
        raise
    except Exception as err:
        raise AssertionError(f"{where}: raised {type(err).__name__}: {err}") from err


def _spec(backbone: Any, params: Mapping[str, Any] | None) -> str | dict[str, Any]:
    if isinstance(backbone, str):
        return {"name": backbone, **params} if params else backbone
    if isinstance(backbone, Mapping):
        return {**backbone, **(params or {})}
    if hasattr(backbone, "name") and hasattr(backbone, "kwargs"):  # an ablate.spec.Component
        return {"name": backbone.name, **backbone.kwargs, **(params or {})}
    raise TypeError(f"check_backbone: expected a backbone key, a mapping or a Component, got {backbone!r}")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def _check_attributes(model: nn.Module, scale: int, where: str) -> None:
    _check(isinstance(model, nn.Module), f"{where}: build_backbone returned {type(model).__name__}, "
           "not an nn.Module")
    _check(getattr(model, "scale", None) == scale, f"{where}: model.scale is {getattr(model, 'scale', None)!r}")
    for attr in ("window_size", "embed_dim"):
        value = getattr(model, attr, None)
        _check(isinstance(value, int) and value > 0, f"{where}: model.{attr} must be a positive int, "
               f"got {value!r}")
    _check(isinstance(getattr(model, "final_norm", None), Normalizer),
           f"{where}: model.final_norm must be the Normalizer built for site 'final'")


def _check_norm_layers(model: nn.Module, variant: _RecordingVariant,
                       where: str) -> dict[str, tuple[str, Normalizer]]:
    """Every norm layer comes from the variant; return the residual-site ones by module name."""
    names = {id(m): n for n, m in model.named_modules()}
    built = {id(layer): site for site, layer in variant.calls}
    bad_sites = sorted({site for site, _ in variant.calls if site not in SITES})
    _check(not bad_sites, f"{where}: built norms for unknown sites {bad_sites}; sites are {', '.join(SITES)}")
    for name, module in model.named_modules():
        _check(not isinstance(module, _TORCH_NORMS),
               f"{where}: {name!r} is a torch {type(module).__name__}; every norm must come from the norm "
               "variant handed to build_backbone")
        if isinstance(module, Normalizer):
            _check(id(module) in built, f"{where}: {name!r} is a {type(module).__name__} built directly, not "
                   "by the norm variant handed to build_backbone")
    final = model.final_norm  # type: ignore[attr-defined]
    _check(built.get(id(final)) == "final", f"{where}: model.final_norm was built for site "
           f"{built.get(id(final))!r}, expected 'final'")
    used = {site for site, layer in variant.calls if id(layer) in names}
    _check(any(s in used for s in RESIDUAL_SITES),
           f"{where}: no norm was built for a residual site ({', '.join(RESIDUAL_SITES)})")
    return {names[id(layer)]: (site, layer) for site, layer in variant.calls
            if site in RESIDUAL_SITES and id(layer) in names}


def _count_residual_calls(layers: dict[str, tuple[str, Normalizer]]) -> dict[str, int]:
    calls = dict.fromkeys(layers, 0)
    for name, (_, layer) in layers.items():
        inner = layer.residual

        def counted(x: Tensor, branch: Any, _inner: Any = inner, _name: str = name) -> Tensor:
            calls[_name] += 1
            return _inner(x, branch)

        layer.residual = counted  # type: ignore[method-assign]
    return calls


def _uninstall(layers: dict[str, tuple[str, Normalizer]]) -> None:
    for _, layer in layers.values():
        layer.__dict__.pop("residual", None)


def _check_image(out: Any, x: Tensor, scale: int, where: str) -> None:
    b, c, h, w = x.shape
    want = (b, c, h * scale, w * scale)
    _check(isinstance(out, Tensor), f"{where}: forward returned {type(out).__name__}, expected a Tensor")
    _check(tuple(out.shape) == want, f"{where}: forward maps an input of shape {tuple(x.shape)} to "
           f"{tuple(out.shape)}, expected {want}")
    _check(bool(torch.isfinite(out).all()), f"{where}: the output is not finite")


def _residual_only_params(model: nn.Module, variant: _RecordingVariant) -> set[str]:
    """Parameters of embed/final norm layers that only ``residual()`` uses (a residual gate).

    Those sites have no residual branch, so such a parameter never gets a gradient — a defect of the
    norm variant (``check_norm`` reports it: override ``Normalizer.at_site``), not of the backbone.
    Found by running each such layer on its own.
    """
    names = {id(m): n for n, m in model.named_modules()}
    excused: set[str] = set()
    for site, layer in variant.calls:
        if site in RESIDUAL_SITES or id(layer) not in names:
            continue
        params = [(n, p) for n, p in layer.named_parameters() if p.requires_grad]
        if not params:
            continue
        mode = layer.training
        layer.eval()  # no running-statistics update
        out = layer(torch.randn(1, 4, layer.dim))
        layer.train(mode)
        grads = torch.autograd.grad(out.sum(), [p for _, p in params], allow_unused=True)
        excused |= {f"{names[id(layer)]}.{n}" for (n, _), g in zip(params, grads) if g is None}
    return excused


def _check_grads(model: nn.Module, out: Tensor, excused: set[str], where: str) -> None:
    model.zero_grad(set_to_none=True)
    # random upstream weights, so no parameter's gradient cancels by symmetry
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weight).sum().backward()
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad and name not in excused]
    missing = [name for name, p in named if p.grad is None]
    _check(not missing, f"{where}: no gradient reaches {len(missing)} parameter(s): {_few(missing)}")
    # one vectorized norm per parameter: inf/nan make it non-finite, an all-zero gradient makes it 0
    norms = torch.stack(torch._foreach_norm([p.grad.float() for _, p in named]))  # type: ignore[union-attr]
    bad = [name for (name, _), n in zip(named, norms.tolist()) if not math.isfinite(n)]
    zero = [name for (name, _), n in zip(named, norms.tolist()) if n == 0.0]
    _check(not bad, f"{where}: non-finite gradients in {_few(bad)}")
    # A single all-zero gradient can be legitimate at init (a squeeze-excitation ReLU with few
    # channels is often dead for a given input, as in HAT's channel attention); all of them is not.
    _check(len(zero) < len(named), f"{where}: every parameter's gradient is exactly zero")
    model.zero_grad(set_to_none=True)


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" … (+{len(names) - n})" if len(names) > n else "")


def _check_probe_sites(model: nn.Module, x: Tensor, size: tuple[int, int], where: str) -> Tensor:
    """Check the probe sites on an eval-mode forward of ``x``; return that forward's output."""
    probe_sites = getattr(model, "probe_sites", None)
    _check(callable(probe_sites), f"{where}: the model has no probe_sites() method")
    sites = probe_sites()  # type: ignore[misc]
    _check(isinstance(sites, Mapping) and len(sites) > 0, f"{where}: probe_sites() must return a non-empty "
           f"mapping name -> module, got {sites!r}")
    names = list(sites)
    _check(names[-1] == "final", f"{where}: probe_sites() must end with 'final', ends with {names[-1]!r}")
    _check(sites["final"] is model.final_norm, f"{where}: probe site 'final' must be model.final_norm")  # type: ignore[attr-defined]
    seen: dict[str, Any] = {}
    handles = []
    for name, module in sites.items():
        _check(isinstance(module, nn.Module), f"{where}: probe site {name!r} is a {type(module).__name__}, "
               "not an nn.Module")

        def hook(_m: nn.Module, _inp: Any, output: Any, _name: str = name) -> None:
            seen[_name] = output

        handles.append(module.register_forward_hook(hook))
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train()
    never = [n for n in names if n not in seen]
    _check(not never, f"{where}: probe site(s) never ran in forward: {_few(never)}")
    dim = model.embed_dim  # type: ignore[attr-defined]
    lengths = set()
    for name in names:
        site_out = seen[name]
        _check(isinstance(site_out, Tensor) and site_out.dim() == 3 and site_out.shape[0] == x.shape[0]
               and site_out.shape[2] == dim,
               f"{where}: probe site {name!r} outputs {_shape(site_out)}, expected a (B={x.shape[0]}, L, "
               f"C={dim}) token map")
        lengths.add(site_out.shape[1])
    _check(len(lengths) == 1 and min(lengths) >= size[0] * size[1],
           f"{where}: probe sites must all output the full image's token map (L ≥ {size[0]}·{size[1]}, the "
           f"same at every site), got L = {sorted(lengths)}")
    return out


def _shape(out: Any) -> str:
    return f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else f"a {type(out).__name__}"


def _check_independent(model: nn.Module, other: Tensor, out: Tensor, where: str) -> None:
    """``out`` is the eval-mode output for a batch that differs from ``other`` in samples 1… only."""
    model.eval()
    with torch.no_grad():
        a, b = out[0], model(other)[0]
    model.train()
    diff = float((a - b).abs().max())
    _check(diff <= 1e-5 * max(1.0, float(a.abs().max())),
           f"{where}: the output for sample 0 changes (max diff {diff:.3g}) when the other samples of the "
           "batch change, with a per-sample norm")
