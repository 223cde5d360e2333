"""Everything a cell needs to resume: ``TrainState`` and its checkpoint form.

    state = TrainState.build(model, spec, device)
    save_checkpoint(ckpt_dir, state.state_dict())
    state.load_state_dict(load_checkpoint(ckpt_dir))   # ends bit-for-bit where an uninterrupted run ends
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias, cast

import numpy as np
import torch
from torch import Tensor, nn

from ablate.errors import AblateError, SpecError
from ablate.spec import CellSpec

from ._reporter import Trace
from ._schedule import lr_lambda

# train.optimizer.name -> its class; the spec accepts exactly these names (tests/train/test_spec_names_match_trainer.py)
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}

# How one checkpoint key is read from a TrainState and put back into one.
_Entry: TypeAlias = "tuple[Callable[[TrainState], Any], Callable[[TrainState, Any], None]]"


def _attribute(name: str) -> _Entry:
    """A plain value (int, float, list, dict), saved as it is."""
    return (lambda s: getattr(s, name), lambda s, v: setattr(s, name, v))


def _stateful(name: str) -> _Entry:
    """A module, optimizer or scheduler, saved through its own ``state_dict``."""
    return (lambda s: getattr(s, name).state_dict(), lambda s, v: getattr(s, name).load_state_dict(v))


def _load_optimizer(state: TrainState, value: dict[str, Any]) -> None:
    # torch's load_state_dict takes the saved groups' fused/foreach flags along with their hyperparameters:
    # put back this device's implementation (a checkpoint from a CPU run or an older ablate may resume on CUDA)
    state.optimizer.load_state_dict(value)
    use_impl(state.optimizer, state.optimizer_impl)


def _load_ema(state: TrainState, value: dict[str, Any] | None) -> None:
    if state.ema is not None and value is not None:
        state.ema.load_state_dict(value)


def _load_scaler(state: TrainState, value: dict[str, Any]) -> None:
    if value:  # a disabled scaler (amp none or bf16) saves {}: nothing to restore
        state.scaler.load_state_dict(value)


def _load_loss_acc(state: TrainState, value: tuple[float, int]) -> None:
    state.loss_sum = torch.tensor(value[0], dtype=torch.float64, device=state.loss_sum.device)
    state.loss_n = value[1]


# What a checkpoint written before a key existed means by its absence (all of them were amp none or bf16).
_ADDED_LATER: dict[str, Any] = {"scaler": {}}

# The checkpoint's keys, each listed once: saving and restoring both walk this table, in this order.
_ENTRIES: dict[str, _Entry] = {
    "model": _stateful("model"),
    "ema": (lambda s: s.ema.state_dict() if s.ema is not None else None, _load_ema),
    "optimizer": (lambda s: s.optimizer.state_dict(), _load_optimizer),
    "scheduler": _stateful("scheduler"),
    "scaler": (lambda s: s.scaler.state_dict(), _load_scaler),  # fp16's loss scale and its growth count
    "rng": (lambda s: rng_state(), lambda s, v: set_rng_state(v)),
    "step": _attribute("step"),
    "history": _attribute("history"),
    "best_psnr": _attribute("best_psnr"),
    "last_trace": _attribute("last_trace"),
    # a float64 sum is exact as a Python float; reading it syncs the device, which a checkpoint may
    "loss_acc": (lambda s: (float(s.loss_sum), s.loss_n), _load_loss_acc),
    # for readers (which cell is this?); a resumed cell keeps its own spec's config
    "cell": (lambda s: s.cell, lambda s, v: None),
}


@dataclass
class TrainState:
    """The whole resumable state of a cell in training.

    ``loss_sum``/``loss_n`` accumulate the training loss since the last report; the sum stays on the
    device so that a training step never waits for the GPU to read it. ``history`` holds every point
    the cell reported, ``{"step": s, <metric>: v, "feat/<site>/<stat>": v}`` (step 0's reference PSNR
    and trace included), so a run resumed from a checkpoint can report again what it reported up to
    the checkpoint's step: points a crashed driver never wrote are not lost.
    """

    KEYS: ClassVar[tuple[str, ...]] = tuple(_ENTRIES)

    model: nn.Module
    ema: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_sum: Tensor
    cell: dict[str, Any]  # the cell config, written for readers of the checkpoint
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_psnr: float = float("-inf")
    last_trace: Trace = field(default_factory=dict)
    loss_n: int = 0
    # train.amp fp16's gradient scaler; disabled (a pass-through) otherwise
    scaler: torch.amp.GradScaler = field(default_factory=lambda: torch.amp.GradScaler("cpu", enabled=False))
    # how the optimizer steps: "fused" (one kernel per group, CUDA), "foreach" (multi-tensor) or "single"
    optimizer_impl: str = "single"
    # (EMA parameters, model parameters, EMA buffers, model buffers), listed once at the first update
    _ema_lists: tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]] | None = field(
        default=None, init=False, repr=False)

    @classmethod
    def build(cls, model: nn.Module, spec: CellSpec, device: torch.device, optimizer_impl: str | None = None
              ) -> TrainState:
        """The state at step 0: ``model`` (already on ``device``), its EMA copy, optimizer, schedule and
        gradient scaler. ``optimizer_impl`` (fused, foreach, single) overrides the device's choice
        (:func:`build_optimizer`)."""
        tr = spec.train
        ema = copy.deepcopy(model).eval().requires_grad_(False) if tr.ema > 0 else None
        if tr.optimizer.name not in OPTIMIZERS:  # a CellSpec built in code skips the YAML's validation
            raise SpecError("train.optimizer.name", f"one of {', '.join(OPTIMIZERS)}", tr.optimizer.name)
        optimizer, impl = build_optimizer(model, spec, device, optimizer_impl)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(tr.schedule, tr.steps))
        return cls(model, ema, optimizer, scheduler, torch.zeros((), dtype=torch.float64, device=device),
                   cell=spec.to_config(), scaler=torch.amp.GradScaler(device.type, enabled=tr.amp == "fp16"),
                   optimizer_impl=impl)

    @property
    def eval_model(self) -> nn.Module:
        """What validation measures: the EMA when there is one."""
        return self.ema if self.ema is not None else self.model

    def mean_loss(self) -> float:
        """The mean training loss since the last report (reads the device)."""
        return float(self.loss_sum) / max(self.loss_n, 1)

    def update_ema(self, decay: float) -> None:
        """EMA ← EMA + (1 − decay)·(model − EMA) for the parameters, EMA ← model for the buffers: two
        multi-tensor ops (on CUDA, a few kernels for all tensors instead of one or two per tensor)."""
        if self.ema is None:
            return
        if self._ema_lists is None:
            self._ema_lists = _ema_lists(self.ema, self.model)
        ema_p, model_p, ema_b, model_b = self._ema_lists
        with torch.no_grad():
            torch._foreach_lerp_(ema_p, model_p, 1.0 - decay)
            if ema_b:
                torch._foreach_copy_(ema_b, model_b)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain Python values only, so a checkpoint loads weights-only."""
        return {key: read(self) for key, (read, _) in _ENTRIES.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = {**_ADDED_LATER, **state}
        missing = [key for key in self.KEYS if key not in state]
        if missing:
            raise AblateError(f"checkpoint: missing {', '.join(missing)} (expected keys {', '.join(self.KEYS)})")
        for key, (_, write) in _ENTRIES.items():
            write(self, state[key])


def _ema_lists(ema: nn.Module, model: nn.Module) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
    """The tensors the EMA update pairs, matched by name: every parameter, and each persistent buffer
    (running statistics) the EMA copy has too. Non-persistent buffers (masks, indices, constants) are
    the copy's own since the deep copy; a buffer the model registers later is not the EMA's."""
    params = dict(model.named_parameters())
    ema_p = dict(ema.named_parameters())
    if ema_p.keys() != params.keys():
        raise AblateError("EMA: the model's parameters are not its EMA copy's (a parameter was added after "
                          "TrainState.build)")
    saved = model.state_dict(keep_vars=True).keys()
    buffers = {name: b for name, b in model.named_buffers() if name in saved}
    pairs = [(b, buffers[name]) for name, b in ema.named_buffers()
             if name in buffers and buffers[name].shape == b.shape]
    return (list(ema_p.values()), [params[n] for n in ema_p], [e for e, _ in pairs], [m for _, m in pairs])


OPTIMIZER_IMPLS = ("fused", "foreach", "single")


def build_optimizer(model: nn.Module, spec: CellSpec, device: torch.device, impl: str | None = None
                    ) -> tuple[torch.optim.Optimizer, str]:
    """``train.optimizer`` over ``model``'s parameters, and how it steps.

    On CUDA ``fused`` (Adam's whole update in a few kernels; with fp16 the gradient scaler hands it
    its inf check instead of reading it on the host); ``foreach`` (multi-tensor) where fused is
    unavailable and on the CPU. The math is Adam's either way: the implementations agree within float
    rounding (tests/train/test_optimizer.py). ``impl`` forces one of :data:`OPTIMIZER_IMPLS`.
    """
    tr = spec.train
    opt_cls = OPTIMIZERS[tr.optimizer.name]
    kwargs: dict[str, Any] = {"lr": tr.optimizer.lr, "betas": tr.optimizer.betas,
                              "weight_decay": tr.optimizer.weight_decay}
    if impl is not None and impl not in OPTIMIZER_IMPLS:
        raise ValueError(f"optimizer implementation {impl!r}: expected one of {', '.join(OPTIMIZER_IMPLS)}")
    *better, last = (impl,) if impl is not None else preferred_impls(device)
    for name in better:
        try:
            return opt_cls(model.parameters(), **kwargs, **_impl_flags(name)), name
        except RuntimeError:  # fused: no kernel for this device or a parameter's dtype
            continue
    return opt_cls(model.parameters(), **kwargs, **_impl_flags(last)), last


def preferred_impls(device: torch.device) -> tuple[str, ...]:
    """The optimizer implementations to try on ``device``, best first."""
    return ("fused", "foreach") if device.type == "cuda" else ("foreach",)


def _impl_flags(impl: str) -> dict[str, Any]:
    return {"fused": impl == "fused", "foreach": impl == "foreach"}


def use_impl(optimizer: torch.optim.Optimizer, impl: str) -> None:
    """Make ``optimizer`` step with ``impl`` again after ``load_state_dict`` (which takes the saved
    groups' flags), moving Adam's step counts where that implementation keeps them: on the parameter's
    device for fused (and capturable), on the CPU otherwise (those paths read them on the host)."""
    flags = _impl_flags(impl)
    for group in optimizer.param_groups:
        group.update(flags)
        for p in group["params"]:
            step = optimizer.state.get(p, {}).get("step")
            if isinstance(step, Tensor):
                on_device = impl == "fused" or group.get("capturable", False)
                where = p.device if on_device else torch.device("cpu")
                optimizer.state[p]["step"] = step.to(where, torch.float32)


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch, numpy, python, CUDA) as tensors and ints."""
    np_state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    _, keys, pos, has_gauss, gauss = np_state
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # numpy's own form is an ndarray, which a weights-only load refuses; a tensor of its words is not
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
