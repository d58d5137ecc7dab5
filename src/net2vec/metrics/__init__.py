"""torchmetrics Metric subclasses and their functional twins (IoU for segmentation probes)."""
from .accuracy import BalancedAccuracy, balanced_accuracy
from net2vec.metrics.iou import PerImageIoU, SetIoU, per_image_iou, set_iou

__all__ = ["SetIoU", "PerImageIoU", "set_iou", "per_image_iou", "BalancedAccuracy", "balanced_accuracy"]
