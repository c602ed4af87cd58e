"""Evaluation: metrics (:mod:`handcast.eval.metrics`), prediction / ground-truth files and the
function behind ``handcast evaluate`` (:mod:`handcast.eval.evaluate`)."""

from handcast.eval import metrics
from handcast.eval.evaluate import (
    GroundTruth,
    Predictions,
    evaluate,
    evaluate_files,
    format_table,
    read_ground_truth,
    read_predictions,
    write_ground_truth,
    write_predictions,
)

__all__ = [
    "metrics", "GroundTruth", "Predictions", "evaluate", "evaluate_files", "format_table",
    "read_ground_truth", "read_predictions", "write_ground_truth", "write_predictions",
]
