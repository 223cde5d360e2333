"""``train.compile``: the training step's model, ``torch.compile``'d, or the model itself where that fails.

    model = StepModel(state.model, compile=True)
    loss = model.run(lambda m: forward_backward(m, lq, gt))     # m: the compiled module, or the plain one
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


class StepModel:
    """The model a training step calls: ``torch.compile(model)`` when asked, else ``model`` itself.

    Only the training step goes through the compiled module. It shares the plain model's parameters
    and buffers, so the checkpoint, the EMA and the optimizer see one model; the probes (which attach
    hooks) and the evaluation (other image sizes would recompile) call the plain model.

    ``torch.compile`` is lazy: where it cannot work (an unsupported Python, no C++ compiler for
    inductor, an operator it cannot lower) it raises at the first forward or backward, not when it is
    built. So the first step is tried compiled; if it raises, one warning line goes to stderr and that
    step is redone on the plain model (its buffers restored, its gradients cleared), as every step is
    from then on. Later errors propagate: once a compiled step has run, a failure is not the compiler's.
    """

    def __init__(self, model: nn.Module, compile: bool) -> None:
        self.model = model
        self.compiled: nn.Module | None = None
        self._untried = compile  # the first compiled step has not run yet
        if compile:
            try:
                # fullgraph: every built-in model traces as one graph (tests/train/test_compile_clean.py);
                # a graph break would split the step and is reported as a failure, not hidden
                self.compiled = torch.compile(model, fullgraph=True)  # type: ignore[assignment]
            except Exception as err:  # e.g. "torch.compile is not supported on Python 3.14+"
                self._fall_back(err)

    def run(self, step: Callable[[nn.Module], T]) -> T:
        """``step(model)`` with the compiled module (or the plain one): a forward and a backward pass."""
        if self.compiled is None:
            return step(self.model)
        if not self._untried:
            return step(self.compiled)
        buffers = [b.detach().clone() for b in self.model.buffers()]  # BatchNorm's running statistics
        try:
            return step(self.compiled)
        except Exception as err:
            self._fall_back(err)
            with torch.no_grad():
                for buf, saved in zip(self.model.buffers(), buffers):
                    buf.copy_(saved)
            for p in self.model.parameters():
                p.grad = None
            return step(self.model)
        finally:
            self._untried = False

    def _fall_back(self, err: Exception) -> None:
        self.compiled, self._untried = None, False
        lines = str(err).strip().splitlines()
        why = f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__
        print(f"warning: train.compile: torch.compile failed ({why}); training uncompiled", file=sys.stderr,
              flush=True)
