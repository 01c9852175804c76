"""Segmentation metrics of RECALL (the results file that prints them is results.py's).

Confusion matrix: rows = ground truth, columns = prediction, over the pixels whose label is one of the
evaluated classes. The numpy helpers keep the original's names and definitions:
  - class IoU = TP / (TP + FP + FN), None for a class not evaluated or without any pixel;
  - mIoU = mean of the non-None class IoUs (classes that occur, background included);
  - class accuracy = TP / (TP + FP) (the original's column-wise definition, i.e. precision), None likewise;
  - mean pixel accuracy = sum of TP / sum of column totals, over the evaluated classes.
Where the original would divide by zero (mIoU or pixel accuracy with no pixel at all) these return nan.
"""

import math

import numpy as np
import tensorflow as tf


def confusion_matrix(labels, preds, n_classes, valid_classes):
    """Confusion matrix over the pixels whose label is in `valid_classes`.

    Args:
      labels: integer tensor [...] of ground-truth ids (uint8/int32/int64, 255 = void).
      preds: integer tensor of the same shape, predicted ids in [0, n_classes).
      n_classes: size of the matrix.
      valid_classes: list of class ids whose pixels are counted (void and unseen classes left out).

    Returns:
      int64 tensor [n_classes, n_classes], rows ground truth, columns prediction.
    """
    labels = tf.cast(labels, tf.int64)
    classes = tf.constant(list(valid_classes), tf.int64)
    mask = tf.reduce_any(tf.equal(labels[..., None], classes), axis=-1)
    return masked_confusion_matrix(labels, preds, mask, n_classes)


def masked_confusion_matrix(labels, preds, mask, n_classes):
    """Confusion matrix over the pixels where the boolean `mask` (same shape as labels) is True."""
    labels = tf.boolean_mask(tf.cast(labels, tf.int64), mask)
    preds = tf.boolean_mask(tf.cast(preds, tf.int64), mask)
    return tf.math.confusion_matrix(labels, preds, num_classes=n_classes, dtype=tf.int64)


def _as_matrix(cm):
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square [n, n], got shape {cm.shape}")
    return cm.astype(np.float64)


def _ratio_per_class(tp, total, classes):
    classes = set(int(c) for c in classes)
    return [float(tp[i] / total[i]) if i in classes and total[i] > 0 else None for i in range(len(tp))]


def get_classes_iou(confusion_matrix, classes):
    """Per-class IoU. Returns a list of n floats (None where not in `classes` or no pixel)."""
    cm = _as_matrix(confusion_matrix)
    tp = np.diag(cm)
    return _ratio_per_class(tp, cm.sum(axis=0) + cm.sum(axis=1) - tp, classes)


def get_classes_accuracy(confusion_matrix, classes):
    """Per-class accuracy TP / (TP + FP) as the original. Returns a list of n floats or None."""
    cm = _as_matrix(confusion_matrix)
    return _ratio_per_class(np.diag(cm), cm.sum(axis=0), classes)


def _mean(values, empty):
    values = [v for v in values if v is not None]
    return float(sum(values) / len(values)) if values else empty


def get_mean_iou(confusion_matrix, classes):
    """Mean IoU over the classes of `classes` that occur. Returns float (nan if none occurs)."""
    return _mean(get_classes_iou(confusion_matrix, classes), math.nan)


def get_mean_class_accuracy(confusion_matrix, classes):
    """Mean of the per-class accuracies that exist. Returns float (0.0 if none, as the original)."""
    return _mean(get_classes_accuracy(confusion_matrix, classes), 0.0)


def get_mean_pixel_accuracy(confusion_matrix, classes):
    """Sum of TP over sum of column totals, over `classes`. Returns float (nan when no pixel)."""
    cm = _as_matrix(confusion_matrix)
    idx = [int(c) for c in classes if 0 <= int(c) < cm.shape[0]]
    correct, total = np.diag(cm)[idx].sum(), cm.sum(axis=0)[idx].sum()
    return float(correct / total) if total > 0 else math.nan


def get_mean_iou_old_and_new(confusion_matrix, old_classes, new_classes):
    """Returns (mIoU of old_classes, mIoU of new_classes)."""
    return get_mean_iou(confusion_matrix, old_classes), get_mean_iou(confusion_matrix, new_classes)


def get_mean_accuracy_old_and_new(confusion_matrix, old_classes, new_classes):
    """Returns (mean class accuracy of old_classes, of new_classes)."""
    return (get_mean_class_accuracy(confusion_matrix, old_classes),
            get_mean_class_accuracy(confusion_matrix, new_classes))
