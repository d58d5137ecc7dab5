"""How a probe is scored and how sure each score is (docs/method.md §3, §10).

- set IoU and balanced accuracy as torchmetrics Metrics with functional twins (``iou``,
  ``accuracy``);
- bootstrap intervals, paired comparisons and shuffled-mask nulls on per-image evidence
  (``bootstrap``), applied to a run's outcome by ``scores.Statistics`` (``conf/stats/``).
"""

from net2vec.statistics.accuracy import BalancedAccuracy, balanced_accuracy
from net2vec.statistics.iou import PerImageIoU, SetIoU, per_image_iou, set_iou

__all__ = [
    "SetIoU",
    "PerImageIoU",
    "set_iou",
    "per_image_iou",
    "BalancedAccuracy",
    "balanced_accuracy",
]
