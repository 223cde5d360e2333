"""Every built-in backbone × every built-in norm compiles as one graph, and the compiled step computes
what the eager one does; ``train.deterministic`` runs on strict deterministic kernels.

    .venv/bin/python -m pytest tests/train/test_compile_clean.py -q

Breadth (3 families × 12 norms × rescale) goes through ``aot_eager``: dynamo's full trace (a graph
break fails ``fullgraph=True``) and AOTAutograd's joint forward/backward graph, without inductor's code
generation, which costs ~1 min per model on 2 cores; one inductor compile of the paper's pair
(token_ln, i_ln) is the slow test.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from ablate.backbones import build_backbone
from ablate.norms import resolve_norm
from ablate.registry import NORMS
from ablate.spec import CellSpec
from ablate.train import Trainer

FAMILIES = ("swinir-tiny", "hat-tiny", "drct-tiny")
# small versions of the tiny presets: the trace is what is tested, not the size
SHRUNK = {"swinir-tiny": {"depths": [2], "embed_dim": 12, "num_heads": 2},
          "hat-tiny": {"depths": [2], "embed_dim": 12, "num_heads": 2, "window_size": 4, "num_feat": 8,
                       "squeeze_factor": 4},
          "drct-tiny": {"depths": [2], "embed_dim": 12, "num_heads": 2, "gc": 4}}
BUILTIN_NORMS = sorted(e.key for e in NORMS.entries() if e.source == "ablate")


def _variants() -> list[tuple[str, bool | None]]:
    out: list[tuple[str, bool | None]] = []
    for key in BUILTIN_NORMS:
        out.append((key, None))
        if resolve_norm(key).normalizer.sigma is not None and key != "i_ln":
            out.append((key, True))
    return out


def _model(family: str, norm: str, rescale: bool | None) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone({"name": family, **SHRUNK[family]}, resolve_norm(norm, rescale), scale=2).train()


def _loss_and_grads(model: torch.nn.Module, call: torch.nn.Module, x: torch.Tensor, gt: torch.Tensor
                    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    for p in model.parameters():
        p.grad = None
    loss = F.l1_loss(call(x), gt)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_every_builtin_norm_is_listed() -> None:
    assert {"token_ln", "i_ln", "global_ln", "batch_norm"} <= set(BUILTIN_NORMS) and len(BUILTIN_NORMS) >= 12


def _compiled_matches_eager(family: str, norm: str, rescale: bool | None, backend: str) -> None:
    x, gt = torch.rand(2, 3, 8, 12), torch.rand(2, 3, 16, 24)  # padded to the window inside
    torch._dynamo.reset()
    eager, compiled_model = _model(family, norm, rescale), _model(family, norm, rescale)
    compiled = torch.compile(compiled_model, fullgraph=True, backend=backend)
    loss_e, grads_e = _loss_and_grads(eager, eager, x, gt)
    loss_c, grads_c = _loss_and_grads(compiled_model, compiled, x, gt)
    where = f"{family} {norm} rescale={rescale}"
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6, msg=lambda m: f"{where}: {m}")
    assert len(grads_c) == len(grads_e), where
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge, rtol=1e-4, atol=1e-6, msg=lambda m: f"{where}: {m}")


@pytest.mark.slow
def test_every_norm_traces_as_one_graph() -> None:
    """Every built-in norm variant, in the family with both window kinds: dynamo's whole-model trace
    (backend ``eager``: a graph break fails ``fullgraph=True``) computes what eager does."""
    for norm, rescale in _variants():
        _compiled_matches_eager("swinir-tiny", norm, rescale, "eager")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("norm", ["token_ln", "i_ln"])
def test_every_family_compiles_forward_and_backward_as_one_graph(family: str, norm: str) -> None:
    """Each family (HAT's overlapping attention and channel attention, DRCT's dense blocks) with the
    paper's pair: one graph, and AOTAutograd's joint forward/backward graph, equal to eager."""
    _compiled_matches_eager(family, norm, None, "aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["token_ln", "i_ln"])
def test_inductor_compiles_the_training_step_and_matches_eager(norm: str) -> None:
    """The real compiler (inductor, C++ on the CPU): one graph, the same loss and gradients as eager."""
    torch._dynamo.reset()
    x, gt = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    eager, compiled_model = _model("swinir-tiny", norm, None), _model("swinir-tiny", norm, None)
    compiled = torch.compile(compiled_model, fullgraph=True)
    loss_e, grads_e = _loss_and_grads(eager, eager, x, gt)
    loss_c, grads_c = _loss_and_grads(compiled_model, compiled, x, gt)
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6)
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge, rtol=1e-4, atol=1e-6)


def test_evaluation_at_other_sizes_does_not_recompile() -> None:
    """Only the training step is compiled: evaluating other image sizes runs the plain model."""
    cfg = {"norm": "token_ln", "backbone": {"name": "swinir-tiny", **SHRUNK["swinir-tiny"]}, "task": "sr-x2",
           "seed": 0, "train": {"steps": 2, "batch_size": 2, "patch_size": 16, "compile": True, "val_size": 0,
                                "eval_every": 2, "lowprec_eval": False},
           "probes": {"every": 0}}
    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    # the compiler is aot_eager here (inductor's code generation takes minutes on 2 cores): what is
    # tested is which calls reach the compiled module
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
        trainer = Trainer(CellSpec.from_config(cfg))
    trainer.step(1)
    frames = counters["stats"]["unique_graphs"]
    trainer.evaluate(2)  # whole validation images of several sizes
    trainer.step(2)
    trainer.batches.close()
    assert trainer.step_model.compiled is not None, "train.compile fell back"
    assert counters["stats"]["unique_graphs"] == frames >= 1


@pytest.mark.parametrize("family", FAMILIES)
def test_deterministic_training_runs_on_strict_deterministic_kernels(family: str) -> None:
    """``train.deterministic`` turns on torch's strict mode (an op without a deterministic kernel raises);
    the built-in models train under it, and two runs give the same bits."""
    cfg = {"norm": "i_ln", "backbone": {"name": family, **SHRUNK[family]}, "task": "sr-x4", "seed": 0,
           "train": {"steps": 2, "batch_size": 2, "patch_size": 20, "deterministic": True, "val_size": 0,
                     "lowprec_eval": False, "eval_every": 100},  # LQ 5×5: padded to the window
           "probes": {"every": 0}}
    try:
        losses = []
        for _ in range(2):
            trainer = Trainer(CellSpec.from_config(cfg))
            assert torch.are_deterministic_algorithms_enabled()
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
            trainer.step(1)
            trainer.step(2)
            trainer.batches.close()
            losses.append(trainer.state.loss_sum.item())
        assert losses[0] == losses[1]
    finally:
        torch.use_deterministic_algorithms(False)
