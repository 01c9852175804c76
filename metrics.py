"""Segmentation metrics of RECALL (the results file that prints them is results_file.py's).

Confusion matrix: rows = ground truth, columns = prediction, over the pixels whose label is one of the
evaluated classes. The numpy helpers keep the original's names and definitions:
  - class IoU = TP / (TP + FP + FN), None for a class not evaluated or without any pixel;
  - mIoU = mean of the non-None class IoUs (classes that occur, background included);
  - class accuracy = TP / (TP + FP) (the original's column-wise definition, i.e. precision), None likewise;
  - mean pixel accuracy = sum of TP / sum of column totals, over the evaluated classes.
Where the original would divide by zero (mIoU or pixel accuracy with no pixel at all) these return nan.

Every number of the results files and the summaries comes from here: step_results (a step's block, from its
matrix), class_groups (the paper's old / new / all groups), and the across-step numbers average_miou (PLOP's
"avg"), forgetting, gap (to JOINT), gathered by experiment_metrics; validation_scalars are TensorBoard's.

Any dataset (datasets.py): the groups follow the setup's first step (first_step_size: ADE20K's 100-50 gives old
1-100, new 101-150, all 1-150). On a dataset whose validation labels hold no background pixel
(background_in_validation: ADE20K, whose "other", 0, is void there) background's IoU counts only false positives, so it
is left out of every mean: MiB's and PLOP's ADE20K numbers are over the object classes.
"""

import math

import numpy as np
import tensorflow as tf

import datasets


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
    """Confusion matrix over the pixels where the boolean `mask` (same shape as labels) is True.

    The same integers as tf.math.confusion_matrix (tests/test_metrics.py), counted by tf.math.bincount over
    label * n + prediction: 9 ms instead of 55 for a validation of the embedded benchmark's 400 64x64 images, the
    whole validation 0.91x as long (benchmarks/bench_confusion_matrix.py). Ids outside [0, n_classes) are an error,
    as there."""
    labels = tf.boolean_mask(tf.cast(labels, tf.int32), mask)
    preds = tf.boolean_mask(tf.cast(preds, tf.int32), mask)
    ids = tf.concat([labels, preds], 0)
    with tf.control_dependencies([
            tf.debugging.assert_non_negative(ids, message="confusion matrix: a negative class id"),
            tf.debugging.assert_less(ids, n_classes, message=f"confusion matrix: a class id >= {n_classes}")]):
        counts = tf.math.bincount(labels * n_classes + preds, minlength=n_classes * n_classes,
                                  maxlength=n_classes * n_classes, dtype=tf.int64)
    return tf.reshape(counts, [n_classes, n_classes])


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


# ------------------------------------------------------------------ every number of one validated step


def step_results(confusion_matrix, old_classes, new_classes):
    """Every number of the original's results block of a step, from its confusion matrix (format_results_block in
    results_file.py prints these; results.parse_results_file reads them back, its class lists rounded to 0.001).

    Args:
      confusion_matrix: [n, n] counts, rows ground truth, columns prediction.
      old_classes: list of old class ids, or None / [] (a first step: no old / new groups).
      new_classes: list of the step's new class ids (a first step: all its classes, background included).

    Returns:
      dict: miou, mean_class_accuracy, mean_pixel_accuracy (floats), class_iou, class_accuracy (lists of n float or
      None), old_classes, new_classes (lists of int; old_classes None for a first step), old_miou, new_miou,
      old_accuracy, new_accuracy (floats, None for a first step): the keys of parse_results_file's blocks but step
      and loss.
    """
    cm = _as_matrix(confusion_matrix)
    new_classes = [int(c) for c in new_classes]
    old_classes = [int(c) for c in old_classes] if old_classes else None
    classes = new_classes if old_classes is None else old_classes + new_classes
    out = dict(miou=get_mean_iou(cm, classes), class_iou=get_classes_iou(cm, classes),
               mean_class_accuracy=get_mean_class_accuracy(cm, classes),
               mean_pixel_accuracy=get_mean_pixel_accuracy(cm, classes),
               class_accuracy=get_classes_accuracy(cm, classes), old_classes=old_classes, new_classes=new_classes,
               old_miou=None, new_miou=None, old_accuracy=None, new_accuracy=None)
    if old_classes:
        out["old_miou"], out["new_miou"] = get_mean_iou_old_and_new(cm, old_classes, new_classes)
        out["old_accuracy"], out["new_accuracy"] = get_mean_accuracy_old_and_new(cm, old_classes, new_classes)
    return out


# ----------------------------------------------------- the paper's groups and the across-step numbers
# These take per-class IoU lists (class_iou of step_results or of a parsed results block: index = class id, None =
# not evaluated or no pixel), of any length: the number of classes is the list's.


def _mean_of(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(sum(values) / len(values)) if values else math.nan


def background_in_validation(dataset):
    """Whether background has ground-truth pixels in a dataset's validation (a name or datasets.Dataset): False
    when its validation_void holds 0 (ADE20K: MiB and PLOP score ADE20K over the object classes), and then every
    mean of this module that would count background is nan or leaves it out."""
    return 0 not in datasets.get(dataset).validation_void


def first_step_size(dataset, setup):
    """n0 of class_groups: the number of classes the first step of `setup` (a datasets.SETUPS name of `dataset`)
    learns, e.g. 100 for ADE20K's "100-50", 15 for VOC's "ADD_FIVE_ONE_TIME"."""
    return len(datasets.step_classes(dataset, setup, 0))


def class_groups(class_iou, n0, background_labelled=True):
    """mIoU of the setup's step groups, as the paper's tables (fractions; nan for an empty group).

    Args:
      class_iou: per-class IoU list of one step (None: not evaluated).
      n0: the number of classes of the first step (first_step_size; TrainManager.TESTS' structure[0]).
      background_labelled: False for a dataset whose validation has no background pixel (background_in_validation:
        ADE20K): "all with background" is then nan, MiB's and PLOP's ADE20K numbers being over the object
        classes. The other three never count background.

    Returns:
      (old: classes 1..n0, new: n0+1 .. the last class evaluated, all: 1 .. the last evaluated,
      all with background: 0 .. the last evaluated). E.g. ADE20K 100-50: 1-100, 101-150, 1-150, nan.
    """
    iou = list(class_iou)
    seen = [c for c, v in enumerate(iou) if v is not None]
    last = max(seen) if seen else 0
    return (_mean_of(iou[1:n0 + 1]), _mean_of(iou[n0 + 1:last + 1]), _mean_of(iou[1:last + 1]),
            _mean_of(iou[0:last + 1]) if background_labelled else math.nan)


def object_class_mean(values):
    """The mean of a per-class list (IoU or accuracy; None and nan left out) over the object classes, 1..: a
    number of a dataset whose validation has no background (background_in_validation); nan when none has one."""
    return _mean_of(list(values)[1:])


def average_miou(step_ious, background=False, background_labelled=True):
    """PLOP's "avg": the mean over steps of each step's mIoU over the classes seen (class_groups' all; with
    `background`, its all with background, the mIoU of PLOP's per-step CSV). nan when no step has a number.

    Args:
      step_ious: per-class IoU lists of every step, in step order.
      background_labelled: as class_groups' (False: the `background` mean is nan).
    """
    return _mean_of([class_groups(iou, 0, background_labelled)[3 if background else 2] for iou in step_ious])


def forgetting(step_ious):
    """Forgetting per class: the best IoU of the class before the last step minus its IoU at the last step
    (negative when the class improved). None for a class without an IoU before the last step or at it.

    Args:
      step_ious: per-class IoU lists of every step, in step order (lists may differ in length: a missing entry
        is None).

    Returns:
      list of float or None, one per class of the longest list.
    """
    if not step_ious:
        return []
    n = max(len(iou) for iou in step_ious)
    at = lambda iou, c: iou[c] if c < len(iou) else None
    out = []
    for c in range(n):
        earlier = [at(iou, c) for iou in step_ious[:-1] if at(iou, c) is not None]
        last = at(step_ious[-1], c)
        out.append(max(earlier) - last if earlier and last is not None else None)
    return out


def mean_forgetting(step_ious):
    """Mean of forgetting over the classes that have one, background excluded; nan when none has (one step)."""
    return _mean_of(forgetting(step_ious)[1:])


def gap(value, reference):
    """value - reference (the gap to JOINT), nan when either is missing or nan."""
    if value is None or reference is None or math.isnan(value) or math.isnan(reference):
        return math.nan
    return value - reference


# Every number results.load gives per experiment (besides iou_<c> and forgetting_<c> per class), in percent:
# name -> what it is. `python results.py --metric NAME` prints one of them (or iou_<c>, forgetting_<c>).
EXPERIMENT_METRICS = {
    "miou_old": "last step, mIoU of the first step's classes 1..N0",
    "miou_new": "last step, mIoU of the classes added after the first step",
    "miou_all": "last step, mIoU of every class seen, background excluded",
    "miou_all_bg": "last step, mIoU of every class seen, background included (nan without background labels: ADE20K)",
    "delta_vs_joint": "miou_all minus JOINT's (the gap to JOINT)",
    "miou_avg": "mean over steps of each step's miou_all (PLOP's avg, background excluded)",
    "miou_avg_bg": "mean over steps of each step's miou_all_bg (PLOP's avg from its per-step CSV; nan on ADE20K)",
    "forgetting": "mean over classes 1.. of the best IoU before the last step minus the last",
    "pixel_accuracy": "last step, mean pixel accuracy (the original's)",
    "class_accuracy": "last step, mean class accuracy (the original's, column-wise; ADE20K: object classes)",
}


def experiment_metrics(step_ious, n0, joint_iou=None, pixel_accuracy=math.nan, class_accuracy=math.nan,
                       background_labelled=True):
    """The EXPERIMENT_METRICS of one experiment, in percent, and per class its last IoU and forgetting.

    Args:
      step_ious: per-class IoU lists of every step, in step order.
      n0: the number of classes of the setup's first step (first_step_size).
      joint_iou: JOINT's per-class IoU list of its last step, or None (delta_vs_joint is then nan).
      pixel_accuracy, class_accuracy: the last step's (fractions), reported as they are.
      background_labelled: as class_groups' (False, ADE20K: miou_all_bg and miou_avg_bg are nan; the other
        means are over the object classes anyway).

    Returns:
      dict: EXPERIMENT_METRICS' names -> float (nan where not defined), and iou_<c>, forgetting_<c> per class.
    """
    pct = lambda v: math.nan if v is None else 100 * v
    old, new, all_, all_bg = class_groups(step_ious[-1], n0, background_labelled)
    out = dict(miou_old=pct(old), miou_new=pct(new), miou_all=pct(all_), miou_all_bg=pct(all_bg),
               delta_vs_joint=math.nan if joint_iou is None else gap(pct(all_), pct(class_groups(joint_iou, n0)[2])),
               miou_avg=pct(average_miou(step_ious)),
               miou_avg_bg=pct(average_miou(step_ious, background=True, background_labelled=background_labelled)),
               forgetting=pct(mean_forgetting(step_ious)), pixel_accuracy=pct(pixel_accuracy),
               class_accuracy=pct(class_accuracy))
    out.update({f"iou_{c}": pct(v) for c, v in enumerate(step_ious[-1])})
    out.update({f"forgetting_{c}": pct(v) for c, v in enumerate(forgetting(step_ious))})
    return out


def validation_scalars(confusion_matrix, classes, n0, names=None, background_labelled=True):
    """TensorBoard's numbers of a validated step (fractions): per-class IoU ("IoU/<id>_<name>") of the classes
    evaluated that occur and the mIoU of the setup's groups ("mIoU/old", "mIoU/new", "mIoU/all",
    "mIoU/all_with_background"; class_groups); groups without a number are left out.

    Args:
      confusion_matrix: [n, n] counts of the step.
      classes: the class ids evaluated at the step.
      n0: the number of classes of the setup's first step.
      names: class names by id (e.g. data_loader.VOC_CLASSES), or None: ids only.
      background_labelled: as class_groups' (False, ADE20K: no "mIoU/all_with_background").
    """
    iou = get_classes_iou(confusion_matrix, classes)
    out = {}
    for c, v in enumerate(iou):
        if v is not None:
            name = f"_{names[c]}" if names is not None and c < len(names) else ""
            out[f"IoU/{c:02d}{name}"] = v
    for group, v in zip(("old", "new", "all", "all_with_background"), class_groups(iou, n0, background_labelled)):
        if not math.isnan(v):
            out[f"mIoU/{group}"] = v
    return out
