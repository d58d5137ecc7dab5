"""torchmetrics Metric subclasses and their functional twins (IoU for segmentation probes)."""

from net2vec.metrics.iou import PerImageIoU, SetIoU, per_image_iou, set_iou

from .accuracy import BalancedAccuracy, balanced_accuracy

__all__ = [
    "SetIoU",
    "PerImageIoU",
    "set_iou",
    "per_image_iou",
    "BalancedAccuracy",
    "balanced_accuracy",
]
