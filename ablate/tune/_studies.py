"""One Optuna study per variant of a search, in durable storage: what to try next, what stops, what each
variant has spent. Pure Optuna (no Ray), so ``ablate report`` can read the budgets too.

    studies = VariantStudies.open(storage_url(uri, state_dir), spec, bases)
    while (todo := studies.next()) is not None:    # (variant, trial number, sampled values)
        ...; studies.report(variant, number, step, value); studies.finish(variant, number, status, value)

Equal budgets: every variant gets ``search.num_samples`` trials that end with a result (finished,
pruned or diverged) from the same space, sampler seed and pruner rungs; a failed trial is asked again
(up to ``num_samples`` times per variant), so failures do not leave a variant with fewer results. The
storage survives the driver: a rerun opens the same studies, hands out again the trials a killed search
left running (same number, same values, so the same cell, resumed from its checkpoint and continued in its
MLflow run) and samples only what is still missing; a trial the search was killed in before drawing its
values is closed as failed (``ablate.unsampled``), not counted; a sampled configuration equal to an earlier
trial's is dropped and sampled again.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from ablate.status import CellStatus

if TYPE_CHECKING:
    import optuna

    from ablate.spec import CellSpec, ExperimentSpec, SearchParam, SearchSpec

# trial user attributes
_STATUS, _CELL, _STEPS, _WALL, _DUPLICATE = "ablate.status", "ablate.cell", "ablate.steps", "ablate.wall_s", \
    "ablate.duplicate"
_UNSAMPLED = "ablate.unsampled"  # a trial a killed search left before its values were drawn: never ran
_VARIANT = "ablate.variant"  # study user attribute: the variant's label
_DUPLICATE_TRIES = 20  # samples drawn before a duplicate configuration is accepted (a small discrete space)


def storage_url(tracking_uri: str, state_dir: Path) -> str:
    """Where the studies live: beside the MLflow SQLite file (``mlflow.db`` → ``mlflow.optuna.db``), else
    ``<state>/optuna.db``. Not in the MLflow database itself: both keep their schema version in an
    ``alembic_version`` table, and each would take the other's for its own."""
    if tracking_uri.startswith("sqlite:///") and ":memory:" not in tracking_uri:
        db = Path(unquote(urlparse(tracking_uri).path.removeprefix("/")) if not tracking_uri.startswith(
            "sqlite:////") else unquote(urlparse(tracking_uri).path))
        return f"sqlite:///{db.resolve().with_suffix('.optuna.db')}"
    return f"sqlite:///{Path(state_dir).resolve() / 'optuna.db'}"


def search_key(spec: ExperimentSpec) -> str:
    """What a study's name is keyed by beside the variant: the search section and the base training
    (a changed space or budget is a new study, not a continuation of the old one)."""
    blob = json.dumps({"search": spec.to_config()["search"], "train": spec.to_config()["train"]}, sort_keys=True,
                      default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


def study_name(experiment: str, key: str, variant: str) -> str:
    return f"{experiment}/{key}/{variant}"


def rungs(search: SearchSpec, steps: int, eval_every: int) -> list[int]:
    """The steps at which the pruner compares a variant's trials (empty without a scheduler)."""
    if search.scheduler == "none":
        return []
    out, at = [], search.grace_period or max(eval_every, 1)
    while at < steps:
        out.append(at)
        at *= search.reduction_factor
    return out


def estimated_steps(search: SearchSpec, steps: int, eval_every: int) -> int:
    """Training steps one variant's study is expected to take: every trial to the first rung, then
    1/reduction_factor of them to each next one (successive halving); all of them without a scheduler."""
    points = [0, *rungs(search, steps, eval_every), steps]
    total = 0.0
    for k in range(len(points) - 1):
        total += (points[k + 1] - points[k]) / search.reduction_factor ** k
    return round(search.num_samples * total)


@dataclass
class _Variant:
    id: str  # the base cell's id
    label: str
    cell: dict[str, Any]  # the base cell's config: conditions on grid axes read it
    study: optuna.Study
    pending: list[int]  # trial numbers a killed search left running: handed out again first
    running: set[int]
    reasks: int = 0


class VariantStudies:
    """The studies of one search, one per variant (base cell), sharing one storage."""

    def __init__(self, search: SearchSpec, variants: list[_Variant], max_steps: int) -> None:
        self.search = search
        self.variants = {v.id: v for v in variants}
        self.max_steps = max_steps
        self.started: dict[tuple[str, int], float] = {}
        self.trials: dict[str, tuple[str, int]] = {}  # Ray trial id -> (variant, trial number)

    @classmethod
    def open(cls, url: str, spec: ExperimentSpec, bases: list[CellSpec], labels: dict[str, str] | None = None
             ) -> VariantStudies:
        """Create or load the studies of ``spec``'s search (``spec.search`` must be set)."""
        import optuna

        assert spec.search is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
        key = search_key(spec)
        variants = []
        for base in bases:
            study = optuna.create_study(
                storage=storage, study_name=study_name(spec.name, key, base.id), load_if_exists=True,
                direction="maximize" if spec.search.mode == "max" else "minimize",
                sampler=_sampler(spec.search, base.seed), pruner=_pruner(spec.search, base))
            label = (labels or {}).get(base.id, base.id)
            study.set_user_attr(_VARIANT, label)
            left = []
            for t in study.get_trials(deepcopy=False):
                if t.state != optuna.trial.TrialState.RUNNING:
                    continue
                if t.params:  # left running by a killed search: handed out again with its values
                    left.append(t.number)
                else:  # killed between asking for the trial and drawing its values: it never ran a cell
                    study._storage.set_trial_user_attr(t._trial_id, _UNSAMPLED, True)
                    study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            reasks = sum(1 for t in study.get_trials(deepcopy=False) if _failed(t))
            variants.append(_Variant(base.id, label, base.to_config(), study, left, set(), reasks))
        return cls(spec.search, variants, max(b.train.steps for b in bases))

    # what to run ------------------------------------------------------------------------------
    def counts(self, variant: str) -> dict[str, int]:
        """Trials of ``variant`` by state: complete (a result), failed, running (here or left running)."""
        v = self.variants[variant]
        trials = v.study.get_trials(deepcopy=False)
        return {"complete": sum(1 for t in trials if _has_result(t)), "failed": sum(1 for t in trials if _failed(t)),
                "running": len(v.running) + len(v.pending)}

    def _wants(self, variant: str) -> bool:
        v = self.variants[variant]
        if v.pending:  # left running by a killed search: already part of the budget
            return True
        c = self.counts(variant)
        return c["complete"] + c["running"] < self.search.num_samples and v.reasks <= self.search.num_samples

    def next(self) -> tuple[str, int, dict[str, Any]] | None:
        """The next trial to start: (variant, trial number, sampled values by axis), from the variant with
        the fewest trials started or done (so all studies advance together); None when none wants one now."""
        wanting = [v for v in self.variants if self._wants(v)]
        if not wanting:
            return None
        # trials a killed search left running go first (the search continues where it stopped), then the
        # variant with the fewest trials started or done
        variant = min(wanting, key=lambda v: (not self.variants[v].pending,
                                              sum(self.counts(v)[k] for k in ("complete", "running")),
                                              list(self.variants).index(v)))
        v = self.variants[variant]
        if v.pending:  # a trial a killed search left running: the same values, so the same cell resumes
            number = v.pending.pop(0)
            params = dict(v.study.trials[number].params)
        else:
            number, params = self._ask(v)
        v.running.add(number)
        self.started[(variant, number)] = time.time()
        return variant, number, params

    def finished(self) -> bool:
        """Nothing runs and no variant wants another trial."""
        return not any(v.running or v.pending for v in self.variants.values()) and \
            not any(self._wants(v) for v in self.variants)

    def _ask(self, v: _Variant) -> tuple[int, dict[str, Any]]:
        import optuna

        seen = {_params_key(t.params) for t in v.study.get_trials(deepcopy=False)
                if t.params and not t.user_attrs.get(_DUPLICATE)}
        for _ in range(_DUPLICATE_TRIES):
            trial = v.study.ask()
            params = _suggest(trial, self.search.space, v.cell)
            if _params_key(params) not in seen:
                break
            trial.set_user_attr(_DUPLICATE, True)
            v.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return trial.number, params

    # what happened ----------------------------------------------------------------------------
    def report(self, variant: str, number: int, step: int, value: float) -> bool:
        """An intermediate value of a running trial; True when the variant's pruner stops it."""
        import optuna

        v = self.variants[variant]
        trial = optuna.trial.Trial(v.study, v.study._storage.get_trial_id_from_study_id_trial_number(
            v.study._study_id, number))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a resumed trial reports its steps again: Optuna keeps the first
            trial.report(value, step)
        trial.set_user_attr(_STEPS, step)
        return self.search.scheduler != "none" and trial.should_prune()

    def finish(self, variant: str, number: int, status: CellStatus, value: float | None, cell_id: str = "",
               steps: int | None = None) -> None:
        """Record how a trial ended (once; later calls are ignored). Finished: its value; pruned or diverged:
        a result without one; failed: asked again."""
        import optuna

        v = self.variants[variant]
        if number not in v.running:
            return
        v.running.discard(number)
        frozen = v.study.trials[number]
        if frozen.state != optuna.trial.TrialState.RUNNING:
            return
        tid = frozen._trial_id
        storage = v.study._storage
        storage.set_trial_user_attr(tid, _STATUS, str(status.value))
        storage.set_trial_user_attr(tid, _CELL, cell_id)
        if steps is not None:
            storage.set_trial_user_attr(tid, _STEPS, int(steps))
        began = self.started.pop((variant, number), None)
        wall = frozen.user_attrs.get(_WALL, 0.0) + (time.time() - began if began else 0.0)
        storage.set_trial_user_attr(tid, _WALL, wall)
        if status is CellStatus.FINISHED and value is not None:
            v.study.tell(number, value)
        elif status in (CellStatus.PRUNED, CellStatus.DIVERGED):
            v.study.tell(number, state=optuna.trial.TrialState.PRUNED)
        elif status is CellStatus.KILLED:  # the search stops: left running, handed out again by the next one
            return
        else:
            v.reasks += 1
            v.study.tell(number, state=optuna.trial.TrialState.FAIL)

    def best(self, variant: str) -> tuple[dict[str, Any], float] | None:
        """The variant's best finished trial: (its values, its metric), or None."""
        try:
            best = self.variants[variant].study.best_trial
        except ValueError:
            return None
        return dict(best.params), float(best.value) if best.value is not None else float("nan")


def _has_result(t: Any) -> bool:
    import optuna

    return bool(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))


def _failed(t: Any) -> bool:
    """A trial that ran and failed (not a dropped duplicate, nor one killed before its values were drawn)."""
    import optuna

    return bool(t.state == optuna.trial.TrialState.FAIL and not t.user_attrs.get(_DUPLICATE)
                and not t.user_attrs.get(_UNSAMPLED))


def _params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _sampler(search: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    """TPE with the same seed for every variant; a few random trials first (a third of the budget, 2–10),
    and running trials count as their worst (constant liar), so concurrent trials spread out."""
    import optuna

    startup = min(10, max(2, search.num_samples // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def _pruner(search: SearchSpec, base: CellSpec) -> optuna.pruners.BasePruner:
    """Successive halving (ASHA) or Hyperband, over training steps, within this variant's study only."""
    import optuna

    grace = search.grace_period or max(base.train.eval_every, 1)
    if search.scheduler == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=grace, reduction_factor=search.reduction_factor)
    if search.scheduler == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=grace, max_resource=base.train.steps,
                                              reduction_factor=search.reduction_factor)
    return optuna.pruners.NopPruner()


def _suggest(trial: optuna.Trial, space: dict[str, SearchParam], cell: dict[str, Any]) -> dict[str, Any]:
    """Sample every dimension whose condition holds, in file order (a condition may read an earlier one)."""
    out: dict[str, Any] = {}
    for key, dim in space.items():
        if not all(_holds(axis, want, out, cell) for axis, want in dim.when):
            continue
        if dim.type == "choice":
            out[key] = trial.suggest_categorical(key, list(dim.values))
        elif dim.type == "int":
            out[key] = trial.suggest_int(key, int(dim.low or 0), int(dim.high or 0))
        else:
            out[key] = trial.suggest_float(key, float(dim.low or 0), float(dim.high or 0),
                                           log=dim.type == "loguniform")
    return out


def _holds(axis: str, want: Any, sampled: dict[str, Any], cell: dict[str, Any]) -> bool:
    if axis in sampled:
        return bool(sampled[axis] == want)
    node: Any = cell
    for part in axis.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):  # a component with parameters: its name decides
        node = node.get("name")
    return bool(node == want)


# budgets -------------------------------------------------------------------------------------
@dataclass
class VariantBudget:
    """What one variant's study spent."""

    variant: str  # its label
    study: str
    finished: int = 0
    pruned: int = 0
    diverged: int = 0
    failed: int = 0
    running: int = 0
    steps: int = 0  # training steps of every trial
    wall_s: float = 0.0  # summed trial time (slot-seconds)


def read_budgets(url: str, experiment: str) -> list[VariantBudget]:
    """Per variant, the latest search of ``experiment`` in the study storage at ``url`` (empty when none)."""
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return []  # no search ever ran here: optuna is not even imported (ablate report, dashboard of a grid)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    summaries = [s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
                 if s.study_name.startswith(experiment + "/")]
    if not summaries:
        return []
    latest = max(summaries, key=lambda s: s.datetime_start or 0)  # type: ignore[arg-type, return-value]
    key = latest.study_name.split("/")[-2]
    out = []
    for s in summaries:
        if s.study_name.split("/")[-2] != key:
            continue
        budget = VariantBudget(str(s.user_attrs.get(_VARIANT, s.study_name.split("/")[-1])), s.study_name)
        for t in optuna.load_study(study_name=s.study_name, storage=storage).get_trials(deepcopy=False):
            if t.user_attrs.get(_DUPLICATE) or t.user_attrs.get(_UNSAMPLED):  # neither ran a cell
                continue
            status = t.user_attrs.get(_STATUS, "running")
            field_ = {"finished": "finished", "pruned": "pruned", "diverged": "diverged", "failed": "failed"}.get(status, "running")
            setattr(budget, field_, getattr(budget, field_) + 1)
            budget.steps += int(t.user_attrs.get(_STEPS, 0))
            budget.wall_s += float(t.user_attrs.get(_WALL, 0.0))
        out.append(budget)
    return sorted(out, key=lambda b: b.study)
