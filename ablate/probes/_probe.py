from __future__ import annotations

import math

import torch
from torch import Tensor, nn

STATS = ("msq", "maxabs", "entropy", "top1")


@torch.no_grad()
def feature_stats(x: Tensor) -> dict[str, float]:
    """Statistics of one site's output, a (B, L, C) token map (channels last).

    - ``msq``: mean of x² over everything (the paper's feature magnitude).
    - ``maxabs``: max |x|.
    - ``entropy``: channel entropy in nats. Per-channel energy ``e_c = mean_{b,l} x_c²``,
      ``p_c = e_c / Σ e``, ``H = −Σ p_c ln p_c``; at most ln C (uniform energy), 0 when one channel
      holds it all.
    - ``top1``: the largest channel's share of the energy, ``max_c p_c`` (1/C … 1).
    Computed in float64 so huge (diverged) magnitudes do not overflow.
    """
    x = x.detach().to(torch.float64)
    if x.dim() != 3:
        raise ValueError(f"probe sites must output (B, L, C) token maps, got shape {tuple(x.shape)}")
    sq = x * x
    energy = sq.mean(dim=(0, 1))  # (C,)
    total = energy.sum()
    msq = float(sq.mean())
    maxabs = float(x.abs().max())
    if not math.isfinite(float(total)) or float(total) <= 0:
        entropy = float("nan") if not math.isfinite(float(total)) else 0.0
        top1 = float("nan") if not math.isfinite(float(total)) else 0.0
    else:
        p = energy / total
        entropy = float(-(p * torch.log(p.clamp_min(1e-300))).sum()) + 0.0  # no -0.0
        top1 = float(p.max())
    return {"msq": msq, "maxabs": maxabs, "entropy": entropy, "top1": top1}


@torch.no_grad()
def beta_alignment(final_norm: nn.Module, final_input: Tensor) -> float:
    """Pearson correlation between the final norm's β and its input's per-channel mean magnitude.

    A trained per-token-LN model's final β tends to re-inject per-channel magnitudes the norm
    discarded, so β ends up aligned with those magnitudes. NaN when undefined.
    """
    bias = getattr(final_norm, "bias", None)
    if not isinstance(bias, Tensor) or bias.numel() != final_input.shape[-1]:
        return float("nan")
    mag = final_input.detach().to(torch.float64).abs().mean(dim=(0, 1))
    b = bias.detach().to(torch.float64)
    mag, b = mag - mag.mean(), b - b.mean()
    denom = float(mag.norm() * b.norm())
    return float((mag * b).sum()) / denom if denom > 0 else float("nan")


class Probe:
    """Measures every probe site of ``model`` on a fixed batch ``lq``.

    The model must expose ``probe_sites() -> {name: module}`` (block outputs, then ``final``) and may
    expose ``final_norm``. Measuring runs the model in eval mode under ``no_grad`` and restores the
    previous mode; hooks exist only during :meth:`measure`.
    """

    def __init__(self, model: nn.Module, lq: Tensor) -> None:
        self.model = model
        self.lq = lq
        self.sites: dict[str, nn.Module] = model.probe_sites()  # type: ignore[operator]

    @torch.no_grad()
    def measure(self) -> dict[str, dict[str, float]]:
        outputs: dict[str, dict[str, float]] = {}
        final_in: list[Tensor] = []
        handles = []
        for name, module in self.sites.items():
            def hook(_m: nn.Module, inputs: tuple[Tensor, ...], out: Tensor, name: str = name) -> None:
                outputs[name] = feature_stats(out)

            handles.append(module.register_forward_hook(hook))
        final_norm = getattr(self.model, "final_norm", None)
        if isinstance(final_norm, nn.Module):
            handles.append(final_norm.register_forward_hook(lambda _m, inp, _o: final_in.append(inp[0])))
        was_training = self.model.training
        self.model.eval()
        try:
            device = next(self.model.parameters()).device
            self.model(self.lq.to(device))
        finally:
            for h in handles:
                h.remove()
            self.model.train(was_training)
        if final_in and isinstance(final_norm, nn.Module):
            outputs.setdefault("final", {})["beta_corr"] = beta_alignment(final_norm, final_in[0])
        return outputs

    @staticmethod
    def deepest(trace: dict[str, dict[str, float]]) -> str:
        """The deepest block site (the last one before ``final``)."""
        blocks = [s for s in trace if s != "final"]
        return blocks[-1] if blocks else "final"

    @staticmethod
    def max_msq(trace: dict[str, dict[str, float]]) -> float:
        vals = [v["msq"] for v in trace.values() if "msq" in v]
        if any(math.isnan(v) for v in vals):
            return float("nan")
        return max(vals) if vals else float("nan")
