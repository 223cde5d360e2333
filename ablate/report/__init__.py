"""Tables, plots and dashboards from an experiment's MLflow runs.

    from ablate.report import build_dashboard, ablation_table, eval_table
    build_dashboard(None, "quickstart", None, "dashboard.html")   # default spec, default store
    print(ablation_table("quickstart").to_markdown())
    print(eval_table("quickstart").to_latex())                    # after `ablate eval`: the paper's table

The only subpackage that imports matplotlib, plotly and jinja2 (each where it draws: ``ablate
report`` imports none of them). MLflow is read through :mod:`ablate.track` (:class:`ablate.track.RunStore`).
"""

from __future__ import annotations

from ablate.lazy import lazy_exports

# Attributes load on first use (PEP 562): ``ablate.report._cellplot`` is imported by the sweep for
# one plot per cell and should not pay for jinja2 and the dashboard's figures.
_EXPORTS = {
    "ablation_table": "._table", "build_dashboard": "._dashboard", "render_dashboard": "._dashboard",
    "DashboardSpec": "._spec", "FilterSpec": "._spec", "PlotSpec": "._spec", "TableSpec": "._spec",
    "load_dashboard_spec": "._spec", "parse_dashboard_spec": "._spec", "AblationTable": "._table",
    "divergence_plot": "._cellplot", "table": "._text", "EvalTable": "._eval", "eval_table": "._eval",
    "signal_summary": "._signal", "budget_text": "._budget",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
