from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from ablate.errors import SpecError
from ablate.params import Param

from ._info import RESIDUAL_SITES


class Normalizer(nn.Module):
    """Base class of every norm variant: normalizes a token map ``x`` of shape (B, L, C).

    The L tokens are always the *full* H×W feature map of each image (backbones normalize before
    any window partition), so "per sample" statistics really cover the whole image.

    Subclasses implement :meth:`normalize`, returning ``(y, sigma)`` where ``sigma`` is the scale the
    map was divided by (broadcastable to ``x``; see ``SIGMA_SHAPES``) or None when it divides by
    nothing. Variants that re-weight the residual branch (LayerScale, ReZero) override :meth:`gate`.
    """

    sigma: ClassVar[str | None] = None  # a key of SIGMA_SHAPES, or None: `rescale` is then refused
    batch_dependent: ClassVar[bool] = False  # output for one sample depends on the rest of the batch
    train_eval_differ: ClassVar[bool] = False  # eval mode computes something other than train mode
    # accepted constructor parameters (keyword arguments of __init__, same defaults)
    PARAMS: ClassVar[dict[str, Param]] = {}
    # how the class computes, in a few words (e.g. "layer_norm(C) no affine, y*γ+β"): recorded on each
    # run as provenance, since a faster path that keeps the numerics keeps the cell's id
    kernel: ClassVar[str] = "custom"

    def __init__(self, dim: int, *, rescale: bool = False) -> None:
        super().__init__()
        if rescale and self.sigma is None:
            raise SpecError("rescale", f"false for {type(self).__name__}, which divides by no σ", rescale)
        self.dim = dim
        self.rescale = rescale

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.normalize(x)[0]

    def gate(self, out: Tensor) -> Tensor:
        """Re-weight a residual branch's output (identity unless LayerScale/ReZero-like)."""
        return out

    @classmethod
    def at_site(cls, site: str, params: Mapping[str, Any]) -> tuple[type[Normalizer], Mapping[str, Any]]:
        """The class and params to build at ``site``. Variants whose effect is a residual gate
        (LayerScale, ReZero) build their plain counterpart at the embed/final sites, which wrap no
        branch: a gate there would be a parameter no gradient ever reaches."""
        return cls, params

    def residual(self, x: Tensor, branch: Callable[[Tensor], Tensor]) -> Tensor:
        """The pre-norm residual update ``x + gate(σ · branch(norm(x)))`` (σ only with rescale).

        σ is *not* detached: gradients flow through the statistic, as in i-LN.
        """
        y, sigma = self.normalize(x)
        out = branch(y)
        if self.rescale:
            assert sigma is not None
            out = out * sigma
        return x + self.gate(out)

    def extra_repr(self) -> str:
        return f"{self.dim}, rescale={self.rescale}"


@dataclass(frozen=True)
class NormVariant:
    """A resolved norm variant: call it with ``(dim, site)`` to get a fresh norm layer.

    Backbones resolve the variant once and hand it down; blocks never look at its name.
    """

    name: str
    normalizer: type[Normalizer]
    rescale: bool
    params: Mapping[str, Any]
    sites: Mapping[str, tuple[type[Normalizer], Mapping[str, Any]]]

    def __call__(self, dim: int, site: str = "attn") -> Normalizer:
        if site in self.sites:
            cls, params = self.sites[site]
            return cls(dim, **params)
        residual = site in RESIDUAL_SITES
        cls, params = (self.normalizer, self.params) if residual else self.normalizer.at_site(site, self.params)
        return cls(dim, rescale=self.rescale and residual, **params)

    @property
    def batch_dependent(self) -> bool:
        return self.normalizer.batch_dependent or any(c.batch_dependent for c, _ in self.sites.values())

    @property
    def train_eval_differ(self) -> bool:
        return self.normalizer.train_eval_differ or any(c.train_eval_differ for c, _ in self.sites.values())

    def describe(self) -> dict[str, Any]:
        """A plain, loggable description."""
        return {
            "name": self.name,
            "normalizer": self.normalizer.__name__,
            "rescale": self.rescale,
            **{f"param.{k}": v for k, v in self.params.items()},
            **{f"site.{s}": c.__name__ for s, (c, _) in self.sites.items()},
        }
