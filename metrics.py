"""Segmentation metrics of RECALL and the results-file blocks of the original.

Confusion matrix: rows = ground truth, columns = prediction, over the pixels whose label is one of the
evaluated classes. The numpy helpers keep the original's names and definitions:
  - class IoU = TP / (TP + FP + FN), None for a class not evaluated or without any pixel;
  - mIoU = mean of the non-None class IoUs (classes that occur, background included);
  - class accuracy = TP / (TP + FP) (the original's column-wise definition, i.e. precision), None likewise;
  - mean pixel accuracy = sum of TP / sum of column totals, over the evaluated classes.
Where the original would divide by zero (mIoU or pixel accuracy with no pixel at all) these return nan.
"""

import ast
import math
import os
import re

import numpy as np
import tensorflow as tf

import artifacts

_HEADER_LEFT = "#" * 33 + " VALIDATION RESULTS OF STEP "
_HEADER_RIGHT = "#" * 36
_HEADER_RE = re.compile(r"^#+ VALIDATION RESULTS OF STEP (\d+)#+$")
_GROUP_RE = re.compile(r"^(old|new) classes (miou|mean accuracy) (\[.*\])$")


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


def mean_iou_no_background(confusion_matrix, classes):
    """Mean IoU over the classes of `classes` except 0 (background). Returns float (nan if none)."""
    return get_mean_iou(confusion_matrix, [c for c in classes if int(c) != 0])


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


def _fmt_list(values):
    return str([None if v is None else "{:.3f}".format(v) for v in values])


def format_results_block(step, loss, cm, old_classes, new_classes):
    """The text the original appends to the results file after validating a step.

    Args:
      step: int, the step index.
      loss: mean validation loss (float or numpy scalar, printed with str()).
      cm: confusion matrix [n, n] (numpy or tensor).
      old_classes: list of old class ids (incremental steps) or None (first step).
      new_classes: list of the step's new class ids (first step: all its classes, background included).

    Returns:
      str, starting with an empty line and ending with a blank line, ready to append.
    """
    new_classes = [int(c) for c in new_classes]
    old_classes = None if old_classes is None else [int(c) for c in old_classes]
    classes = new_classes if old_classes is None else old_classes + new_classes
    cm = _as_matrix(cm)
    loss = loss.numpy() if hasattr(loss, "numpy") else loss
    lines = [
        "",
        f"{_HEADER_LEFT}{step}{_HEADER_RIGHT}",
        f"LOSS\n{loss}\n",
        f"mIoU\n{get_mean_iou(cm, classes)}\n",
        f"class_iou\n{_fmt_list(get_classes_iou(cm, classes))}\n",
        f"mean class accuracy\n{get_mean_class_accuracy(cm, classes)}\n",
        f"mean pixel accuracy\n{get_mean_pixel_accuracy(cm, classes)}\n",
        f"class accuracy\n{_fmt_list(get_classes_accuracy(cm, classes))}\n",
    ]
    if old_classes:
        old_miou, new_miou = get_mean_iou_old_and_new(cm, old_classes, new_classes)
        old_acc, new_acc = get_mean_accuracy_old_and_new(cm, old_classes, new_classes)
        lines += [f"old classes miou {old_classes}\n{old_miou}\n",
                  f"new classes miou {new_classes}\n{new_miou}\n",
                  f"old classes mean accuracy {old_classes}\n{old_acc}\n",
                  f"new classes mean accuracy {new_classes}\n{new_acc}\n"]
    return "\n".join(lines) + "\n"


def append_results_block(path, block):
    """Appends a block to a results file atomically (the whole file is rewritten under a temporary name).

    Args:
      path: the results file (created with its folder if missing).
      block: text from format_results_block.
    """
    old = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
    artifacts.write_text(path, old + block, fsync=True)


def _parse_list(text, where):
    try:
        values = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"{where}: expected a Python list, got {text!r}") from None
    if not isinstance(values, list):
        raise ValueError(f"{where}: expected a Python list, got {text!r}")
    return values


def _parse_float(text, where):
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: expected a number, got {text!r}") from None


_SCALARS = {"LOSS": "loss", "mIoU": "miou", "mean class accuracy": "mean_class_accuracy",
            "mean pixel accuracy": "mean_pixel_accuracy"}
_LISTS = {"class_iou": "class_iou", "class accuracy": "class_accuracy"}


def parse_results_file(path):
    """Reads every block of a results file (ours or the original's).

    Args:
      path: an `outputs/*.txt` results file.

    Returns:
      list of dicts in file order, each with: step (int), loss, miou, mean_class_accuracy,
      mean_pixel_accuracy (floats), class_iou, class_accuracy (lists of float or None), and
      old_classes, new_classes (lists of int or None), old_miou, new_miou, old_accuracy, new_accuracy
      (floats or None; None for a first step).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"results file not found: {path}")
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip() for line in f]
    blocks, block, i = [], None, 0
    while i < len(lines):
        line, key_where = lines[i], f"{path}: line {i + 1}"
        i += 1
        if not line:
            continue
        header = _HEADER_RE.match(line)
        if header:
            block = {"step": int(header.group(1)), "old_classes": None, "new_classes": None,
                     "old_miou": None, "new_miou": None, "old_accuracy": None, "new_accuracy": None}
            blocks.append(block)
            continue
        if block is None:
            raise ValueError(f"{key_where}: expected a 'VALIDATION RESULTS OF STEP' header, got {line!r}")
        group = _GROUP_RE.match(line)
        if not (line in _SCALARS or line in _LISTS or group):
            raise ValueError(f"{key_where}: unknown entry {line!r}")
        if i >= len(lines):
            raise ValueError(f"{key_where}: {line!r} has no value line")
        value, where = lines[i], f"{path}: line {i + 1}"
        i += 1
        if line in _SCALARS:
            block[_SCALARS[line]] = _parse_float(value, where)
        elif line in _LISTS:
            block[_LISTS[line]] = [None if v is None else float(v) for v in _parse_list(value, where)]
        else:
            which, metric = group.group(1), group.group(2)
            block[f"{which}_classes"] = [int(c) for c in _parse_list(group.group(3), key_where)]
            block[f"{which}_{'miou' if metric == 'miou' else 'accuracy'}"] = _parse_float(value, where)
    for b in blocks:
        missing = [k for k in list(_SCALARS.values()) + list(_LISTS.values()) if k not in b]
        if missing:
            raise ValueError(f"{path}: block of step {b['step']} lacks {missing}")
    return blocks
