"""Tests of the results as data: each validated step's confusion matrix kept beside the results file
(results.append_results, the matrices file), every number computed from it (metrics.py, checked against a numpy
reference), the summaries, results.load and the per-step CSVs read from it, and runs without it (text only)."""
import logging
import math
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import ROOT, TESTS
import metrics
import results
from test_results import _block, _experiment

N = 21
FIRST = list(range(20))  # 19-1: step 0 is background and classes 1..19, step 1 adds class 20


def _random_cm(rng, n, absent=()):
    """Random counts [n, n]; the classes `absent` have no pixel (row and column 0)."""
    cm = rng.integers(0, 50, (n, n)) * (rng.random((n, n)) < 0.4)
    cm[np.arange(n), np.arange(n)] += rng.integers(0, 200, n)
    for c in absent:
        cm[c, :] = 0
        cm[:, c] = 0
    return cm.astype(np.int64)


def _run(tmp_path, cms, config="DISJOINT", test_type="ADD_ONE_ONE_TIME", source="gan", losses=None):
    """An experiment of `config` whose steps are validated with the confusion matrices `cms` (results.append_results,
    as Training does). Returns its results file."""
    path = _experiment(tmp_path, config, test_type, source, "")
    os.remove(path)
    n0 = dict(results.TrainManager.TESTS)[test_type][0]
    for step, cm in enumerate(cms):
        old = None if step == 0 else list(range(n0 + step))
        new = list(range(n0 + 1)) if step == 0 else [n0 + step]
        loss = 0.5 + step if losses is None else losses[step]
        results.append_results(path, step, loss, cm, old, new)
    return path


# ------------------------------------------------------------------------------------- the matrices file


def test_matrices_round_trip_and_the_text_is_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    cms = [_random_cm(rng, N, absent=[20]), _random_cm(rng, N, absent=[7])]
    path = _run(tmp_path, cms, losses=[np.float32(0.1), 0.25])
    expected = (results.format_results_block(0, np.float32(0.1), cms[0], None, FIRST)
                + results.format_results_block(1, 0.25, cms[1], list(range(20)), [20]))
    with open(path, encoding="utf-8") as f:
        assert f.read() == expected  # the original's text, byte for byte
    data = results.matrices_path(path)
    assert data == os.path.splitext(path)[0] + ".matrices.npz"
    first, second = results.read_matrices(data)
    assert first["step"] == 0 and first["old_classes"] is None and first["new_classes"] == FIRST
    assert second["step"] == 1 and second["old_classes"] == list(range(20)) and second["new_classes"] == [20]
    for entry, cm in zip((first, second), cms):
        assert entry["confusion_matrix"].dtype == np.int64
        np.testing.assert_array_equal(entry["confusion_matrix"], cm)
    assert first["loss"] == float(np.float32(0.1)) and second["loss"] == 0.25
    with np.load(data) as archive:  # a plain .npz: numpy alone reads it
        assert archive["confusion_matrix"].shape == (2, N, N)
    # The same steps give the same bytes (no time stamps): a sweep writes what another one writes.
    again = tmp_path / "again.npz"
    results.write_matrices(str(again), [first, second])
    assert again.read_bytes() == open(data, "rb").read()
    with zipfile.ZipFile(data) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    # A step the results file holds is refused, and neither file changes.
    before = open(data, "rb").read()
    with pytest.raises(ValueError, match="already holds step 1"):
        results.append_results(path, 1, 0.5, cms[1], list(range(20)), [20])
    assert open(data, "rb").read() == before
    with pytest.raises(ValueError, match="square integer"):
        results.append_results(path, 2, 0.5, cms[1].astype(float), list(range(21)), [21])


def test_a_matrix_left_by_a_killed_run_is_replaced(tmp_path):
    """The matrix is stored before the text: a kill in between leaves a matrix of a step the results file does not
    hold; validating the step again replaces it (never two entries of a step)."""
    rng = np.random.default_rng(1)
    cms = [_random_cm(rng, N, absent=[20]), _random_cm(rng, N)]
    path = _run(tmp_path, cms[:1])
    data = results.matrices_path(path)
    stale = dict(results.read_matrices(data)[0], step=1, confusion_matrix=cms[0], old_classes=FIRST, new_classes=[20])
    results.write_matrices(data, results.read_matrices(data) + [stale])
    results.append_results(path, 1, 0.5, cms[1], FIRST, [20])
    entries = results.read_matrices(data)
    assert [e["step"] for e in entries] == [0, 1]
    np.testing.assert_array_equal(entries[1]["confusion_matrix"], cms[1])
    other = tmp_path / "other.txt"  # a matrices file of another size is not this experiment's
    results.write_matrices(results.matrices_path(str(other)), [dict(entries[0], confusion_matrix=np.eye(3, dtype=int),
                                                                    new_classes=[0, 1, 2])])
    with pytest.raises(ValueError, match=r"other\.matrices\.npz: holds \(3, 3\) matrices"):
        results.append_results(str(other), 0, 0.5, cms[0], None, FIRST)


def test_bad_matrices_files_are_named_errors(tmp_path):
    cm = np.eye(3, dtype=np.int64)[None]
    good = dict(step=np.array([0]), loss=np.array([0.5]), confusion_matrix=cm,
                old_classes=np.array([[-1, -1, -1]]), new_classes=np.array([[0, 1, 2]]))
    path = str(tmp_path / "r.matrices.npz")
    twice = dict(step=np.array([0, 0]), loss=np.array([0.5, 0.5]), confusion_matrix=np.concatenate([cm, cm]),
                 old_classes=np.array([[-1] * 3] * 2), new_classes=np.array([[0, 1, 2]] * 2))
    cases = [(twice, "step 0 appears twice"),
             ({k: v for k, v in good.items() if k != "loss"}, r"lacks the arrays \['loss'\]"),
             (dict(good, new_classes=np.array([[0, -1, 2]])), "padded with -1 at the end"),
             (dict(good, new_classes=np.array([[0, 3, -1]])), r"class ids in \[0, 3\)"),
             (dict(good, new_classes=np.array([[-1, -1, -1]])), "no new class"),
             (dict(good, confusion_matrix=-cm), "negative counts"),
             (dict(good, confusion_matrix=cm.astype(np.float64)), "confusion_matrix is float64"),
             (dict(good, confusion_matrix=np.ones((1, 3, 2), np.int64)), r"expected \[steps, n, n\]")]
    for arrays, message in cases:
        np.savez(path, **arrays)
        with pytest.raises(ValueError, match=r"r\.matrices\.npz: .*" + message):
            results.read_matrices(path)
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=r"r\.matrices\.npz: not a matrices file"):
        results.read_matrices(path)
    with pytest.raises(FileNotFoundError, match="nothere"):
        results.read_matrices(str(tmp_path / "nothere.matrices.npz"))


# ----------------------------------------------------------------------------- metrics against numpy


def _reference_iou(cm, classes):
    """Per-class IoU by numpy: nan where not evaluated or no pixel."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    evaluated = np.isin(np.arange(len(cm)), classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(evaluated & (union > 0), tp / union, np.nan)


def _none_to_nan(values):
    return np.array([np.nan if v is None else v for v in values], np.float64)


@pytest.mark.parametrize("n", [5, 21, 31])
def test_step_numbers_against_numpy(n):
    rng = np.random.default_rng(n)
    for trial in range(20):
        absent = rng.choice(n, size=rng.integers(0, n // 2), replace=False)
        cm = _random_cm(rng, n, absent)
        split = int(rng.integers(1, n))
        old, new = (None, list(range(n))) if trial % 3 == 0 else (list(range(split)), list(range(split, n)))
        classes = new if old is None else old + new
        r = metrics.step_results(cm, old, new)
        iou = _reference_iou(cm, classes)
        mean = lambda values: np.nanmean(values) if np.any(~np.isnan(values)) else np.nan
        np.testing.assert_allclose(_none_to_nan(r["class_iou"]), iou, rtol=1e-12)
        assert r["miou"] == pytest.approx(mean(iou), nan_ok=True, rel=1e-12)
        precision = np.diag(cm) / np.where(cm.sum(0) > 0, cm.sum(0), np.nan)
        np.testing.assert_allclose(_none_to_nan(r["class_accuracy"]), precision, rtol=1e-12)
        assert r["mean_pixel_accuracy"] == pytest.approx(np.trace(cm) / cm.sum(), rel=1e-12)
        if old is not None:
            assert r["old_miou"] == pytest.approx(mean(iou[:split]), nan_ok=True, rel=1e-12)
            assert r["new_miou"] == pytest.approx(mean(iou[split:]), nan_ok=True, rel=1e-12)
        else:
            assert r["old_classes"] is None and r["old_miou"] is None
        # the paper's groups of any number of classes: old 1..n0, new n0+1..last evaluated, all, all with bg
        n0 = int(rng.integers(1, n))
        seen = np.flatnonzero(~np.isnan(iou))
        last = seen.max() if len(seen) else 0
        expected = (mean(iou[1:n0 + 1]), mean(iou[n0 + 1:last + 1]), mean(iou[1:last + 1]), mean(iou[:last + 1]))
        np.testing.assert_allclose(metrics.class_groups(r["class_iou"], n0), expected, rtol=1e-12)
        np.testing.assert_allclose(results.group_mious({"class_iou": r["class_iou"]}, n0), 100 * np.array(expected),
                                   rtol=1e-12)


def test_across_step_numbers_against_numpy():
    """avg mIoU over steps, forgetting per class (best earlier IoU minus the last) and the gap to JOINT, on random
    runs whose classes come in steps and go missing from some (absent: no IoU)."""
    rng = np.random.default_rng(7)
    for n, structure in ((21, (15, 1, 1, 1, 1, 1)), (31, (10, 10, 10)), (21, (20,))):
        seen_after = np.cumsum(structure)
        ious = []
        for step, seen in enumerate(seen_after):
            classes = list(range(seen + 1))
            absent = rng.choice(seen + 1, size=2, replace=False) if step % 2 else []
            ious.append(_reference_iou(_random_cm(rng, n, absent), classes))
        lists = [[None if np.isnan(v) else float(v) for v in iou] for iou in ious]
        ref = np.array(ious)
        all_per_step = [np.nanmean(iou[1:]) for iou in ref]
        assert metrics.average_miou(lists) == pytest.approx(np.mean(all_per_step), rel=1e-12)
        assert metrics.average_miou(lists, background=True) == pytest.approx(
            np.mean([np.nanmean(iou) for iou in ref]), rel=1e-12)
        expected = np.full(n, np.nan)
        for c in range(n):
            earlier = ref[:-1, c][~np.isnan(ref[:-1, c])]
            if earlier.size:
                expected[c] = earlier.max() - ref[-1, c]
        np.testing.assert_allclose(_none_to_nan(metrics.forgetting(lists)), expected, rtol=1e-12)
        numbers = metrics.experiment_metrics(lists, structure[0], joint_iou=lists[0])
        if len(ref) > 1:
            assert numbers["forgetting"] == pytest.approx(100 * np.nanmean(expected[1:]), rel=1e-12)
            for c in range(1, structure[0] + 1):  # a first-step class has forgetting once it is evaluated again
                assert numbers[f"forgetting_{c}"] == pytest.approx(100 * expected[c], nan_ok=True, rel=1e-12)
        else:
            assert math.isnan(numbers["forgetting"])  # JOINT: one step, nothing to forget
        assert numbers["miou_avg"] == pytest.approx(100 * np.mean(all_per_step), rel=1e-12)
        assert numbers["delta_vs_joint"] == pytest.approx(100 * (all_per_step[-1] - all_per_step[0]), abs=1e-9)
        assert numbers[f"iou_{n - 1}"] == pytest.approx(100 * ref[-1][n - 1], nan_ok=True)
    assert math.isnan(metrics.gap(0.5, math.nan)) and math.isnan(metrics.gap(None, 0.5))


def test_tensorboard_scalars():
    rng = np.random.default_rng(3)
    cm = _random_cm(rng, N, absent=[4])
    classes = list(range(17))
    scalars = metrics.validation_scalars(cm, classes, 15, names=[f"c{c}" for c in range(N)])
    iou = _reference_iou(cm, classes)
    assert {k for k in scalars if k.startswith("IoU/")} == {f"IoU/{c:02d}_c{c}" for c in range(17) if c != 4}
    assert scalars["IoU/16_c16"] == pytest.approx(iou[16])
    assert scalars["mIoU/old"] == pytest.approx(np.nanmean(iou[1:16]))
    assert scalars["mIoU/new"] == pytest.approx(iou[16])
    assert scalars["mIoU/all_with_background"] == pytest.approx(np.nanmean(iou))
    assert "mIoU/new" not in metrics.validation_scalars(cm, list(range(16)), 15)  # no new class yet


# ----------------------------------------------------------------------------------- summaries from data


def test_summary_and_load_from_matrices(tmp_path):
    rng = np.random.default_rng(11)
    joint_cm = _random_cm(rng, N)
    joint = _experiment(tmp_path, "JOINT", "JOINT", None, "")
    os.remove(joint)
    results.append_results(joint, 0, 0.5, joint_cm, None, list(range(N)))
    cms = [_random_cm(rng, N, absent=[20]), _random_cm(rng, N, absent=[3])]
    path = _run(tmp_path, cms)
    outputs = str(tmp_path / "outputs")
    rows = {r["config"]: r for r in results.summarize(outputs)}
    ious = [metrics.get_classes_iou(cm, range(c)) for cm, c in zip(cms, (20, 21))]
    expected = metrics.experiment_metrics(ious, 19, metrics.get_classes_iou(joint_cm, range(N)))
    for column in ("miou_old", "miou_new", "miou_all", "miou_all_bg", "delta_vs_joint", "miou_avg", "forgetting"):
        assert rows["DISJOINT"][column] == pytest.approx(expected[column], abs=1e-12), column  # unrounded: matrices
    assert math.isnan(rows["JOINT"]["forgetting"]) and rows["JOINT"]["miou_avg"] == pytest.approx(
        rows["JOINT"]["miou_all"])
    with open(tmp_path / "outputs" / "summary.csv") as f:
        header = f.readline().strip().split(",")
    assert header == results.COLUMNS and header[-2:] == ["miou_avg", "forgetting"]
    # load(): a row per experiment with every number; per step, one per validated step
    loaded = {r["config"]: r for r in results.load(outputs)}
    assert loaded["DISJOINT"]["read_from"] == "matrices" and loaded["DISJOINT"]["steps"] == 2
    assert loaded["DISJOINT"]["miou_avg_bg"] == pytest.approx(expected["miou_avg_bg"])
    assert loaded["DISJOINT"]["forgetting_3"] == pytest.approx(expected["forgetting_3"], nan_ok=True)
    assert math.isnan(loaded["DISJOINT"]["forgetting_20"])  # learnt at the last step
    steps = [r for r in results.load(outputs, per_step=True) if r["config"] == "DISJOINT"]
    assert [r["step"] for r in steps] == [0, 1] and math.isnan(steps[0]["iou_20"])
    assert steps[1]["iou_5"] == pytest.approx(100 * ious[1][5]) and steps[1]["loss"] == 1.5
    # the per-step CSV in PLOP's layout: step, per-class IoU ("x": not evaluated), mIoU
    csv_path = tmp_path / "outputs" / "per_step" / (os.path.splitext(os.path.basename(path))[0] + ".csv")
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 2
    first = lines[0].split(",")
    assert len(first) == 1 + N + 1 and first[0] == "0" and first[21] == "x"
    assert float(first[1]) == ious[0][0] and float(first[-1]) == metrics.get_mean_iou(cms[0], range(20))


def test_an_old_results_folder_text_only_still_summarises(tmp_path):
    """A run from before matrices files (or the original's): its numbers come from the text, as they did."""
    text = _block(0, [0.9] + [0.7] * 19 + [None]) + _block(1, [0.8] + [0.5] * 18 + [0.99, 0.25], FIRST, [20])
    path = _experiment(tmp_path, "DISJOINT", "ADD_ONE_ONE_TIME", "gan", text)
    (row,) = results.summarize(str(tmp_path / "outputs"))
    iou = [results.parse_results_file(path)[k]["class_iou"] for k in (0, 1)]
    assert row["miou_all"] == pytest.approx(100 * sum(iou[1][1:]) / 20)
    assert row["miou_avg"] == pytest.approx(100 * (sum(iou[0][1:20]) / 19 + sum(iou[1][1:]) / 20) / 2)
    forgetting = [iou[0][c] - iou[1][c] for c in range(1, 20)]
    assert row["forgetting"] == pytest.approx(100 * sum(forgetting) / 19)
    assert min(forgetting) < 0 < max(forgetting)  # class 19 improved: negative forgetting, averaged as it is
    (loaded,) = results.load(str(tmp_path / "outputs"))
    assert loaded["read_from"] == "text" and loaded["forgetting_19"] == pytest.approx(100 * forgetting[-1])
    lines = (tmp_path / "outputs" / "per_step" / "DISJOINT (T0_P1.0.0.2_gan).csv").read_text().splitlines()
    assert lines[0] == ",".join(["0"] + [repr(v) for v in iou[0][:20]] + ["x", repr(results.parse_results_file(
        path)[0]["miou"])])


def test_a_bad_matrices_file_is_named_and_skipped_never_shifts_a_class(tmp_path, caplog):
    """A matrices file that cannot stand for its results file is named in a warning and the run is read from its
    text: unreadable bytes, a matrix of another number of classes, classes shifted by one, a missing step."""
    caplog.set_level(logging.WARNING)
    rng = np.random.default_rng(5)
    cms = [_random_cm(rng, N, absent=[20]), _random_cm(rng, N)]
    path = _run(tmp_path, cms)
    outputs = str(tmp_path / "outputs")
    data = results.matrices_path(path)
    entries = results.read_matrices(data)
    (from_matrices,) = results.load(outputs)
    assert from_matrices["read_from"] == "matrices"
    text_rows = []
    shifted = np.roll(np.roll(cms[1], 1, axis=0), 1, axis=1)
    wider = lambda cm: np.pad(cm, ((1, 0), (1, 0)))
    bad = {"not a matrices file": None,
           "a 22-class matrix": [dict(e, confusion_matrix=wider(e["confusion_matrix"])) for e in entries],
           "do not give the block of step 1": [entries[0], dict(entries[1], confusion_matrix=shifted)],
           "no matrix of the step(s) [1]": entries[:1]}
    for case, content in bad.items():
        caplog.clear()
        if content is None:
            with open(data, "wb") as f:
                f.write(os.urandom(300))
        else:
            results.write_matrices(data, content)
        (row,) = results.load(outputs)
        assert row["read_from"] == "text", case
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(data in w and case in w for w in warnings), (case, warnings)
        text_rows.append(row)
    # every fallback gives the text's numbers: the classes where they were
    text_iou = results.parse_results_file(path)[1]["class_iou"]
    for row in text_rows:
        assert row["iou_5"] == pytest.approx(100 * text_iou[5])
        assert row["miou_all"] == pytest.approx(100 * sum(text_iou[1:]) / 20)
        assert abs(row["miou_all"] - from_matrices["miou_all"]) < 0.06  # the text's 3 decimals
    assert len(results.summarize(outputs)) == 1  # the experiment stays in the summary


def test_metric_command_line(tmp_path):
    rng = np.random.default_rng(2)
    _run(tmp_path, [_random_cm(rng, N, absent=[20]), _random_cm(rng, N)])
    outputs = str(tmp_path / "outputs")
    table = results.metric_table(results.load(outputs), "forgetting")
    assert table.splitlines()[0] == "| config | setup | replay_source | variant | parameters | forgetting |"
    with pytest.raises(ValueError, match="'forgeting': no run has it"):
        results.metric_table(results.load(outputs), "forgeting")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "results.py"), "--outputs", outputs, "--metric",
                           "miou_avg"], cwd=TESTS, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = results.load(outputs)
    assert f"| DISJOINT | 19-1 | gan | ? | 1.0.0.2 | {row['miou_avg']:.1f} |" in done.stdout
    assert not (tmp_path / "outputs" / "summary.csv").exists()  # --metric only reads
    done = subprocess.run([sys.executable, os.path.join(ROOT, "results.py"), "--outputs", outputs, "--metric",
                           "iou_99"], cwd=TESTS, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "iou_99" in done.stderr and "Traceback" not in done.stderr
