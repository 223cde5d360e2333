"""Ray Tune's side of a search: a searcher over every variant's Optuna study and a scheduler that stops a
trial when its own variant's pruner says so (see :mod:`._search`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from ablate.status import CellStatus

from ._trial import CELL, FINAL, STATUS, STEP

if TYPE_CHECKING:
    from ._studies import VariantStudies


class StudySearcher(Searcher):  # type: ignore[misc]
    """Ray Tune's searcher over every variant's study: a trial's config is ``{"base": <variant's cell id>,
    <axis>: <value>, …}``; a trial that failed is asked again; FINISHED once every study has its trials."""

    def __init__(self, studies: VariantStudies, metric: str, mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self.studies = studies

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any],
                              **spec: Any) -> bool:
        return True  # the studies carry their own metric and direction

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        todo = self.studies.next()
        if todo is None:
            # Tune's documented end-of-search sentinel is the string FINISHED, though typed as a dict
            return Searcher.FINISHED if self.studies.finished() else None  # type: ignore[return-value]
        variant, number, params = todo
        self.studies.trials[trial_id] = (variant, number)
        return {"base": variant, **params}

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        record_end(self.studies, trial_id, result or {}, error, self.metric)


class StudyPruner(FIFOScheduler):  # type: ignore[misc]
    """First come, first served, stopping a trial when its variant's Optuna pruner says so (its rungs hold
    that variant's trials only)."""

    def __init__(self, studies: VariantStudies, metric: str) -> None:
        super().__init__()
        self.studies = studies
        self.steer_by = metric

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        where = self.studies.trials.get(trial.trial_id)
        if where is not None and result.get(FINAL):
            # told here, before the callbacks end the cell's MLflow run: a driver killed in between
            # leaves a trial its study has, not one it would run again into a second run
            record_end(self.studies, trial.trial_id, result, False, self.steer_by)
            return str(TrialScheduler.CONTINUE)
        if where is None or STEP not in result or self.steer_by not in result:
            return str(TrialScheduler.CONTINUE)
        variant, number = where
        if number not in self.studies.variants[variant].running:
            return str(TrialScheduler.CONTINUE)
        if self.studies.report(variant, number, int(result[STEP]), float(result[self.steer_by])):
            self.studies.finish(variant, number, CellStatus.PRUNED, None, cell_id=str(result.get(CELL, "")),
                                steps=int(result[STEP]))
            return str(TrialScheduler.STOP)
        return str(TrialScheduler.CONTINUE)


def record_end(studies: VariantStudies, trial_id: str, result: dict[str, Any], error: bool, metric: str | None
               ) -> None:
    """Tell a trial's study how it ended (once: later calls change nothing)."""
    if trial_id not in studies.trials:
        return
    variant, number = studies.trials[trial_id]
    if error:
        status = CellStatus.FAILED
    elif result.get(FINAL):
        status = CellStatus(result.get(STATUS, CellStatus.FAILED))
    else:  # stopped by the pruner before its final report
        status = CellStatus.PRUNED
    value = result.get(metric) if metric else None
    studies.finish(variant, number, status, float(value) if isinstance(value, (int, float)) else None,
                   cell_id=str(result.get(CELL, "")), steps=result.get(STEP))
