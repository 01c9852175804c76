"""Tests of metrics.py against hand-computed confusion matrices."""

import math

import numpy as np
import pytest
import tensorflow as tf

import metrics

# label 3 is not evaluated, 255 is void: pixels 7 and 8 are left out.
LABELS = np.array([[0, 0, 1, 1, 1], [2, 2, 3, 255, 0]], np.uint8)
PREDS = np.array([[0, 1, 1, 1, 2], [2, 0, 3, 1, 3]], np.int64)
# rows = ground truth, columns = prediction, by hand from the pairs
# (0,0) (0,1) (1,1) (1,1) (1,2) (2,2) (2,0) (0,3)
CM = np.array([[1, 1, 0, 1],
               [0, 2, 1, 0],
               [1, 0, 1, 0],
               [0, 0, 0, 0]])


def test_confusion_matrix_over_valid_pixels():
    cm = metrics.confusion_matrix(LABELS, PREDS, 4, [0, 1, 2])
    assert cm.dtype == tf.int64 and cm.shape == (4, 4)
    np.testing.assert_array_equal(cm.numpy(), CM)
    compiled = tf.function(lambda l, p: metrics.confusion_matrix(l, p, 4, [0, 1, 2]))
    np.testing.assert_array_equal(compiled(tf.constant(LABELS[None]), tf.constant(PREDS[None])).numpy(), CM)
    all4 = metrics.confusion_matrix(LABELS, PREDS, 4, [0, 1, 2, 3]).numpy()
    assert all4[3, 3] == 1 and all4.sum() == 9  # only void left out


def test_iou_and_means():
    iou = metrics.get_classes_iou(CM, [0, 1, 2])
    assert iou[3] is None  # not an evaluated class
    np.testing.assert_allclose(iou[:3], [1 / 4, 2 / 4, 1 / 3])
    assert metrics.get_mean_iou(CM, [0, 1, 2]) == pytest.approx((1 / 4 + 1 / 2 + 1 / 3) / 3)
    # class 3 has a false positive, so it occurs (IoU 0) once evaluated
    assert metrics.get_classes_iou(CM, [0, 1, 2, 3])[3] == 0.0
    old, new = metrics.get_mean_iou_old_and_new(CM, [0, 1], [2])
    assert (old, new) == (pytest.approx(3 / 8), pytest.approx(1 / 3))


def test_absent_class_is_none_and_not_averaged():
    cm = np.array([[3, 1, 0], [1, 2, 0], [0, 0, 0]])
    assert metrics.get_classes_iou(cm, [0, 1, 2]) == [pytest.approx(3 / 5), pytest.approx(2 / 4), None]
    assert metrics.get_mean_iou(cm, [0, 1, 2]) == pytest.approx((3 / 5 + 2 / 4) / 2)
    assert metrics.get_classes_accuracy(cm, [0, 1, 2])[2] is None
    assert math.isnan(metrics.get_mean_iou(cm, [2]))
    assert metrics.get_mean_class_accuracy(cm, [2]) == 0.0  # the original's value for "none"
    assert math.isnan(metrics.get_mean_pixel_accuracy(np.zeros((3, 3)), [0, 1]))


def test_accuracies_are_column_wise_as_the_original():
    acc = metrics.get_classes_accuracy(CM, [0, 1, 2])
    np.testing.assert_allclose(acc[:3], [1 / 2, 2 / 3, 1 / 2])
    assert acc[3] is None
    assert metrics.get_mean_class_accuracy(CM, [0, 1, 2]) == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert metrics.get_mean_pixel_accuracy(CM, [0, 1, 2]) == pytest.approx(4 / 7)
    old, new = metrics.get_mean_accuracy_old_and_new(CM, [0, 1], [2])
    assert (old, new) == (pytest.approx((1 / 2 + 2 / 3) / 2), pytest.approx(1 / 2))
    with pytest.raises(ValueError, match="square"):
        metrics.get_classes_iou(np.zeros((2, 3)), [0])


def test_confusion_matrix_equals_tensorflows_and_rejects_ids_out_of_range():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 21, (4, 16, 16)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.1] = 255
    preds = rng.integers(0, 21, labels.shape).astype(np.int32)
    mask = labels != 255
    expected = tf.math.confusion_matrix(labels[mask], preds[mask], num_classes=21, dtype=tf.int64).numpy()
    compiled = tf.function(lambda l, p, m: metrics.masked_confusion_matrix(l, p, m, 21))
    for cm in (metrics.masked_confusion_matrix(labels, preds, mask, 21), compiled(labels, preds, mask)):
        assert cm.dtype == tf.int64
        np.testing.assert_array_equal(cm.numpy(), expected)
    preds[0, 0, 0], labels[0, 0, 0] = 21, 0  # would land in row 1 if not checked
    with pytest.raises(tf.errors.InvalidArgumentError, match="class id >= 21"):
        metrics.masked_confusion_matrix(labels, preds, labels != 255, 21)
    preds[0, 0, 0] = -1
    with pytest.raises(tf.errors.InvalidArgumentError, match="negative"):
        metrics.masked_confusion_matrix(labels, preds, labels != 255, 21)
