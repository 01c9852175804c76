"""Tests of metrics.py against hand-computed confusion matrices and the original's results-file text."""

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
    assert metrics.mean_iou_no_background(CM, [0, 1, 2]) == pytest.approx((1 / 2 + 1 / 3) / 2)
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


EXPECTED_INCREMENTAL = (
    "\n"
    "################################# VALIDATION RESULTS OF STEP 1####################################\n"
    "LOSS\n0.5\n\n"
    "mIoU\n0.3611111111111111\n\n"
    "class_iou\n['0.250', '0.500', '0.333', None]\n\n"
    "mean class accuracy\n0.5555555555555555\n\n"
    "mean pixel accuracy\n0.5714285714285714\n\n"
    "class accuracy\n['0.500', '0.667', '0.500', None]\n\n"
    "old classes miou [0, 1]\n0.375\n\n"
    "new classes miou [2]\n0.3333333333333333\n\n"
    "old classes mean accuracy [0, 1]\n0.5833333333333333\n\n"
    "new classes mean accuracy [2]\n0.5\n\n")


def test_format_is_the_original_text():
    assert metrics.format_results_block(1, 0.5, CM, [0, 1], [2]) == EXPECTED_INCREMENTAL
    first = metrics.format_results_block(0, np.float32(1.25), tf.constant(CM), None, [0, 1, 2])
    assert first == EXPECTED_INCREMENTAL.split("old classes")[0].replace("STEP 1#", "STEP 0#") \
        .replace("LOSS\n0.5", "LOSS\n1.25")
    assert "old classes" not in metrics.format_results_block(0, 1.0, CM, [], [0, 1, 2])


def test_format_parse_round_trip(tmp_path):
    path = str(tmp_path / "outputs" / "run (T1_P1.0.0.1).txt")
    metrics.append_results_block(path, metrics.format_results_block(0, 0.75, CM, None, [0, 1, 2]))
    metrics.append_results_block(path, metrics.format_results_block(1, 0.5, CM, [0, 1], [2]))
    empty = np.zeros((4, 4))
    metrics.append_results_block(path, metrics.format_results_block(2, float("nan"), empty, [0, 1, 2], [3]))
    first, second, third = metrics.parse_results_file(path)
    assert first["step"] == 0 and first["loss"] == 0.75
    assert first["miou"] == metrics.get_mean_iou(CM, [0, 1, 2])
    assert first["class_iou"] == [0.25, 0.5, 0.333, None]
    assert first["class_accuracy"] == [0.5, 0.667, 0.5, None]
    assert first["mean_pixel_accuracy"] == metrics.get_mean_pixel_accuracy(CM, [0, 1, 2])
    assert first["old_classes"] is None and first["old_miou"] is None
    assert second["step"] == 1 and second["old_classes"] == [0, 1] and second["new_classes"] == [2]
    assert second["old_miou"] == 0.375 and second["new_accuracy"] == 0.5
    assert second["old_accuracy"] == metrics.get_mean_class_accuracy(CM, [0, 1])
    assert third["step"] == 2 and math.isnan(third["loss"]) and math.isnan(third["miou"])
    assert third["class_iou"] == [None] * 4 and third["new_classes"] == [3]


def test_parse_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.txt"):
        metrics.parse_results_file(str(tmp_path / "nothere.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text(EXPECTED_INCREMENTAL.replace("mIoU\n0.36", "mIoU\nzero.36"))
    with pytest.raises(ValueError, match=r"bad\.txt: line 7: expected a number"):
        metrics.parse_results_file(str(bad))
    bad.write_text(EXPECTED_INCREMENTAL.replace("old classes miou [0, 1]", "old classes miou [0, 1"))
    with pytest.raises(ValueError, match="unknown entry"):
        metrics.parse_results_file(str(bad))
    bad.write_text(EXPECTED_INCREMENTAL.replace("class_iou\n['0.250'", "class_iou\n{'0.250'"))
    with pytest.raises(ValueError, match="line 10: expected a Python list"):
        metrics.parse_results_file(str(bad))
    bad.write_text("LOSS\n0.5\n")
    with pytest.raises(ValueError, match="header"):
        metrics.parse_results_file(str(bad))
    bad.write_text(EXPECTED_INCREMENTAL.replace("mean pixel accuracy", "mean pixel acc"))
    with pytest.raises(ValueError, match=r"line 15: unknown entry 'mean pixel acc'"):
        metrics.parse_results_file(str(bad))
    bad.write_text(EXPECTED_INCREMENTAL.split("mIoU")[0])
    with pytest.raises(ValueError, match=r"block of step 1 lacks \['miou'"):
        metrics.parse_results_file(str(bad))
