"""Plot builders: pure functions, DataFrame in → ``plotly.graph_objects.Figure`` out (test them via ``fig.to_dict()``)."""
from .absence import absence_figure, absence_table, predictions_by_pattern_figure
from .offline import plotlyjs_source
from .robustness import (auc_summary, auc_table, per_mode_heatmap, per_mode_matrix, robustness_figure,
                         summarise_curves)
from .training import loss_columns, metric_columns, training_curves

__all__ = ["absence_figure", "absence_table", "predictions_by_pattern_figure", "auc_summary", "auc_table", "loss_columns", "metric_columns", "per_mode_heatmap", "per_mode_matrix",
           "plotlyjs_source", "robustness_figure", "summarise_curves", "training_curves"]

try:  # attention / attribution plots (optional module)
    from .interpret import *  # noqa: F401,F403
    from . import interpret as _interpret

    __all__ += list(getattr(_interpret, "__all__", []))
except ImportError:  # pragma: no cover - depends on the optional module being present
    pass
