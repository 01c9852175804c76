"""Tests of the results of an ADE20K experiment (150 classes): each step validated with a synthetic 151 x 151
confusion matrix through the writer training uses (results.append_results: the results file and its matrices
file) and described by results.write_description of a TrainManager bound to `TrainManager.dataset = "ade20k"`;
then the setup's groups (100-50: 1-100 / 101-150 / 1-150; 50-50: 1-50 / 51-150), background left out of every
mean (ADE20K's validation has no background pixel), the summary row, the plots and per-class tables of many
classes, and the comparison with the published ADE20K numbers (docs/paper_results_ade20k.csv)."""
import csv
import json
import logging
import math
import os

import gin
import numpy as np
import pytest

from conftest import ROOT
import datasets
import metrics
import results
from train_manager import TrainManager

N = 151  # ADE20K's 150 classes and background
ADE_BINDINGS = ['TrainManager.dataset = "ade20k"', "TrainManager.n_classes = 151"]
PAPER_ADE = os.path.join(ROOT, "docs", "paper_results_ade20k.csv")
MIB = ['TrainManager.test_name = "MIB_OVERLAPPED"', "TrainManager.interleave_ratio_old = 0",
       "TrainManager.mix_labels = False", 'TrainManager.method = "mib"',
       "TrainManager.train_encoder_incremental = True", "TrainManager.parameters_incremental_index = 10"]
OVERLAPPED_ONLY = [f'TrainManager.{name} = "overlapped"'  # JOINT.gin's protocols are VOC's sequential
                   for name in ("dataset_type_first_step", "dataset_type_helpers", "dataset_type_incremental")]


def _step_cm(rng, seen):
    """A step's confusion matrix [151, 151] as ADE20K's validation gives it: ground truth of the classes 1..seen
    only (background, ADE's "other", is void there: its row is empty), predictions among background and 1..seen.
    Background is predicted now and then: its IoU is 0, so a mean that counted it would be lower."""
    cm = np.zeros((N, N), np.int64)
    rows = np.arange(1, seen + 1)
    cm[1:seen + 1, :seen + 1] = rng.integers(0, 8, (seen, seen + 1)) * (rng.random((seen, seen + 1)) < 0.2)
    cm[rows, rows] += rng.integers(5, 200, seen)
    cm[1:seen + 1, 0] += rng.integers(1, 20, seen)  # pixels of every class predicted as background
    return cm


def _iou(cm):
    """Per-class IoU by numpy, nan where a class has no pixel (ground truth or predicted)."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def _ade_experiment(base, config, setup, source, rng, *bindings):
    """Runs the validation side of an ADE20K experiment: a manager of `config` bound to ADE20K, a synthetic matrix
    per step appended as training appends it (old classes: background and every class seen; new: the step's), the
    description written last (Training.train). Returns (results file, [the steps' matrices])."""
    gin.clear_config()
    gin.parse_config_files_and_bindings([os.path.join(ROOT, "config", config + ".gin")],
                                        [f'TrainManager.base_folder_path = "{base}"'] + ADE_BINDINGS + list(bindings))
    m = TrainManager(setup, source)
    gin.clear_config()
    path = m.get_validation_file_path()
    cms, seen = [], 0
    for step in range(len(m.test_structure)):
        added = datasets.step_classes("ade20k", setup, step)
        old, new = (None, [0] + added) if step == 0 else (list(range(seen + 1)), added)
        seen += len(added)
        cms.append(_step_cm(rng, seen))
        results.append_results(path, step, 0.25 + step, cms[-1], old, new)
    results.write_description(m)
    return path, cms


def _mean(values):
    return 100 * float(np.nanmean(values))


@pytest.fixture(scope="module")
def ade_outputs(tmp_path_factory):
    """A folder of ADE20K runs: RECALL (gan) and MiB on 100-50, RECALL on 50-50, JOINT. Returns (outputs, {name:
    (results file, matrices)})."""
    base = tmp_path_factory.mktemp("ade")
    rng = np.random.default_rng(26)
    runs = {"recall_100-50": _ade_experiment(base, "OVERLAPPED", "100-50", "gan", rng),
            "mib_100-50": _ade_experiment(base, "OVERLAPPED", "100-50", "gan", rng, *MIB),
            "recall_50-50": _ade_experiment(base, "OVERLAPPED", "50-50", "gan", rng),
            "joint": _ade_experiment(base, "JOINT", "JOINT", None, rng, *OVERLAPPED_ONLY)}
    return str(base / "outputs"), runs


def test_the_description_names_the_dataset_and_the_matrices_hold_151_classes(ade_outputs):
    outputs, runs = ade_outputs
    path, cms = runs["recall_100-50"]
    with open(results.description_path(path)) as f:
        doc = json.load(f)
    assert doc["dataset"] == "ade20k" and doc["test_type"] == "100-50" and doc["n_classes"] == N
    entries = results.read_matrices(results.matrices_path(path))
    assert [e["confusion_matrix"].shape for e in entries] == [(N, N)] * 2
    np.testing.assert_array_equal(entries[1]["confusion_matrix"], cms[1])
    assert entries[1]["new_classes"] == list(range(101, 151)) and entries[1]["old_classes"] == list(range(101))
    experiments = {os.path.basename(e["path"]): e for e in results.read_experiments(outputs)}
    e = experiments[os.path.basename(path)]
    assert (e["dataset"], e["setup"], e["structure"], e["read_from"]) == ("ade20k", "100-50", [100, 50], "matrices")
    assert experiments[os.path.basename(runs["recall_50-50"][0])]["setup"] == "50-50"  # not VOC's "50-50-50"


@pytest.mark.parametrize("run, setup, groups", [
    ("recall_100-50", "100-50", [(1, 100), (101, 150), (1, 150)]),
    ("recall_50-50", "50-50", [(1, 50), (51, 150), (1, 150)]),
])
def test_group_mious_follow_the_setup_and_leave_background_out(ade_outputs, run, setup, groups):
    outputs, runs = ade_outputs
    path, cms = runs[run]
    iou = _iou(cms[-1])
    assert not metrics.background_in_validation("ade20k") and metrics.background_in_validation("voc")
    assert iou[0] == 0.0  # background: predicted, never labelled
    expected = [_mean(iou[a:b + 1]) for a, b in groups]
    with_background = _mean(iou[0:151])
    assert with_background < expected[2] - 0.1  # counting background would show
    row = next(r for r in results.load(outputs) if r["results_file"] == os.path.basename(path))
    assert [row["miou_old"], row["miou_new"], row["miou_all"]] == pytest.approx(expected, abs=1e-9)
    assert math.isnan(row["miou_all_bg"]) and math.isnan(row["miou_avg_bg"])
    block = next(e for e in results.read_experiments(outputs) if e["path"] == path)["blocks"][-1]
    assert list(results.group_mious(block, dataset="ade20k", setup=setup)[:3]) == pytest.approx(expected, abs=1e-9)
    assert math.isnan(results.group_mious(block, dataset="ade20k", setup=setup)[3])
    # per step: each step's groups over the classes seen then (50-50's step 1: 1-50 / 51-100 / 1-100)
    steps = [r for r in results.load(outputs, per_step=True) if r["results_file"] == os.path.basename(path)]
    n0 = groups[0][1]
    seen = np.cumsum([len(classes) for _, classes in sorted(datasets.setups("ade20k")[setup].items())])
    assert len(steps) == len(cms) == len(seen)
    for r, cm, last in zip(steps, cms, seen):
        step_iou = _iou(cm)
        assert r["miou_all"] == pytest.approx(_mean(step_iou[1:last + 1]), abs=1e-9)
        assert r["miou_old"] == pytest.approx(_mean(step_iou[1:n0 + 1]), abs=1e-9)
        assert (math.isnan(r["miou_new"]) if last == n0 else
                r["miou_new"] == pytest.approx(_mean(step_iou[n0 + 1:last + 1]), abs=1e-9))
        assert math.isnan(r["miou_all_bg"])
    assert row["miou_avg"] == pytest.approx(np.mean([r["miou_all"] for r in steps]), abs=1e-9)
    with pytest.raises(ValueError, match=r"setup '19-1' is none of ade20k's"):
        results.group_mious(block, dataset="ade20k", setup="19-1")


def test_the_summary_row_of_an_ade_run(ade_outputs):
    outputs, runs = ade_outputs
    rows = {os.path.basename(r["results_file"]): r for r in results.load(outputs)}
    summary = {r["config"] + r["setup"]: r for r in results.summarize(outputs)}
    recall, joint = summary["OVERLAPPED100-50"], summary["JOINTjoint"]
    path, cms = runs["recall_100-50"]
    iou, joint_iou = _iou(cms[-1]), _iou(runs["joint"][1][-1])
    assert recall["delta_vs_joint"] == pytest.approx(_mean(iou[1:]) - _mean(joint_iou[1:]), abs=1e-9)
    assert joint["miou_all"] == pytest.approx(_mean(joint_iou[1:]), abs=1e-9)
    forgetting = _iou(cms[0])[1:101] - iou[1:101]  # the first step's classes, learnt at step 0
    assert recall["forgetting"] == pytest.approx(100 * np.mean(forgetting), abs=1e-9)
    precision = np.diag(cms[-1]) / cms[-1].sum(0).clip(min=1)
    row = rows[os.path.basename(path)]
    assert row["class_accuracy"] == pytest.approx(100 * np.mean(precision[1:]), abs=1e-9)  # object classes
    assert summary["MIB_OVERLAPPED100-50"]["method"] == "MiB" and row["dataset"] == "ade20k"
    with open(os.path.join(outputs, "summary.csv")) as f:
        table = {r["config"] + r["setup"]: r for r in csv.DictReader(f)}
    assert table["OVERLAPPED100-50"]["miou_old"] == f"{recall['miou_old']:.1f}"
    assert table["OVERLAPPED100-50"]["miou_all_bg"] == ""  # nan: not defined without background labels
    tex = open(os.path.join(outputs, "summary.tex")).read()
    assert "\\multicolumn{3}{c}{100-50} & \\multicolumn{3}{c}{50-50}" in tex
    joint_line = next(line for line in tex.splitlines() if line.startswith("JOINT &"))
    assert joint_line.split(" & ")[1:4] == [f"{_mean(joint_iou[a:b + 1]):.1f}" for a, b in
                                            [(1, 100), (101, 150), (1, 150)]]
    readme = open(os.path.join(outputs, "method_setup_table.md")).read().splitlines()
    assert readme[0] == "| method | 100-50 | 50-50 |"


def test_plots_and_tables_of_150_classes(ade_outputs):
    outputs, runs = ade_outputs
    import matplotlib.image  # pylint: disable=import-outside-toplevel
    assert results.per_class_kind("ade20k") == "sorted bars" and results.per_class_kind("voc") == "lines"
    results.summarize(outputs)
    experiments = results.read_experiments(outputs)
    folder = os.path.join(outputs, "plots_again")
    written = results.plot(experiments, folder)
    assert sorted(os.path.basename(p) for p in written) == ["class_iou_100-50.png", "class_iou_50-50.png",
                                                            "miou_100-50.png", "miou_50-50.png"]
    bars = matplotlib.image.imread(os.path.join(folder, "class_iou_100-50.png"))
    assert bars.shape[0] > 1000 and bars.shape[0] > bars.shape[1]  # a row per class: tall, two runs wide
    single = matplotlib.image.imread(os.path.join(folder, "class_iou_50-50.png"))
    assert single.shape[1] < bars.shape[1]  # a column per run
    assert os.path.exists(os.path.join(outputs, "plots", "class_iou_100-50.png"))  # summarize wrote them too
    # the per-class table: grouped by step, each step's mean, background left out
    text = open(os.path.join(outputs, "per_class_100-50.md")).read()
    assert "Background is left out" in text
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header, rows = lines[0].split(" | "), [line.strip("| ").split(" | ") for line in lines[1:]]
    assert header[:3] == ["| step", "class", "name"] and header[-1] == "JOINT |" and len(header) == 3 + 2 + 1
    classes = [int(r[1]) for r in rows if r[1]]
    assert classes == list(range(1, 151))  # no background, class order within each step
    assert rows[0][:3] == ["0", "1", "wall"] and rows[100][2] == "**mean of step 0 (1-100)**"
    assert rows[-1][2] == "**mean of step 1 (101-150)**"
    column = header.index(results.plot_lines(experiments)[runs["recall_100-50"][0]][0])
    iou = _iou(runs["recall_100-50"][1][-1])
    assert rows[100][column] == f"**{_mean(iou[1:101]):.1f}**" and rows[-1][column] == f"**{_mean(iou[101:]):.1f}**"
    assert rows[4][column] == f"{100 * iou[5]:.1f}"
    assert not results.per_class_tables([e for e in experiments if e["dataset"] != "ade20k"])


def test_the_published_ade_numbers_beside_the_runs(ade_outputs, tmp_path):
    outputs, runs = ade_outputs
    rows = results.read_paper_results(PAPER_ADE)
    assert {r["dataset"] for r in rows} == {"ade20k"} and {r["protocol"] for r in rows} == {"overlapped"}
    assert {r["test_type"] for r in rows} == {"100-50", "100-10", "50-50", "100-5"}
    for r in rows:
        assert "zhangchbin/RCIL/blob/e6a34d6d033a54d1efee952516afe86fe3d76bbb/README.md" in r["source"]
    published = {(r["method"], r["test_type"]): r["miou_all"] for r in rows}
    assert published[("MiB", "100-50")] == 32.8 and published[("PLOP", "100-5")] == 28.7
    results.summarize(outputs, paper=PAPER_ADE)
    with open(os.path.join(outputs, "paper_comparison.csv")) as f:
        (mib,) = list(csv.DictReader(f))  # RECALL and JOINT have no published ADE20K row
    ours = next(r for r in results.load(outputs) if r["method"] == "MiB")["miou_all"]
    assert (mib["method"], mib["setup"], mib["paper_all"], mib["paper_old"]) == ("MiB", "100-50", "32.8", "")
    assert mib["diff_all"] == f"{ours - 32.8:.1f}"
    # A run is set beside rows of its own dataset only: VOC's joint row is not ADE20K's JOINT's.
    paper = tmp_path / "paper.csv"
    paper.write_text("method,replay_source,test_type,setup,protocol,miou_old,miou_new,miou_all,source,dataset\n"
                     "joint,none,ADD_ONE_ONE_TIME,19-1,disjoint,80,50,78,T1,\n"
                     "joint,none,50-50,50-50,overlapped,40,30,35,T2,ade20k\n")
    comparison = results.paper_comparison(results.read_experiments(outputs), results.read_paper_results(str(paper)))
    (joint,) = [c for c in comparison if c["method"] == "joint"]
    joint_iou = _iou(runs["joint"][1][-1])
    assert joint["setup"] == "50-50" and joint["source"] == "T2"
    assert [joint["miou_old"], joint["miou_new"], joint["miou_all"]] == pytest.approx(
        [_mean(joint_iou[1:51]), _mean(joint_iou[51:]), _mean(joint_iou[1:])], abs=1e-9)


@pytest.mark.parametrize("body, message", [
    ("MiB,none,100-50,100-50,disjoint,,,30,T1,ade20k", r"line 2: unknown protocol 'disjoint' for ade20k; expected "
                                                       r"one of \['overlapped'\]"),
    ("MiB,none,50-50,50-50-50,overlapped,,,30,T1,ade20k", r"line 2: setup '50-50-50' is not 50-50's; expected '50-50'"),
    ("MiB,none,100-50,100-50,overlapped,,,30,T1,", r"line 2: unknown test_type '100-50'; expected one of "
                                                    r"\['ADD_ONE_ONE_TIME'"),
    ("MiB,none,15-5,15-5,overlapped,,,30,T1,ade20k", r"line 2: unknown test_type '15-5' of ade20k"),
    ("MiB,none,100-50,100-50,overlapped,,,30,T1,cityscapes", r"line 2: unknown dataset 'cityscapes'"),
])
def test_bad_ade_paper_rows_are_named_errors(tmp_path, body, message):
    path = tmp_path / "paper.csv"
    path.write_text("method,replay_source,test_type,setup,protocol,miou_old,miou_new,miou_all,source,dataset\n"
                    + body + "\n")
    with pytest.raises(ValueError, match=r"paper\.csv: " + message):
        results.read_paper_results(str(path))


def test_the_dataset_from_the_operative_config_when_the_description_lacks_it(tmp_path, caplog):
    """A description without `dataset` (written before the binding) takes the `.gin`'s TrainManager.dataset;
    without either it is VOC's, whose setups have no "100-50": skipped, with a warning naming the setup."""
    caplog.set_level(logging.WARNING)
    path, _ = _ade_experiment(tmp_path, "OVERLAPPED", "100-50", "gan", np.random.default_rng(1))
    with open(results.description_path(path)) as f:
        doc = json.load(f)
    del doc["dataset"]
    with open(results.description_path(path), "w") as f:
        json.dump(doc, f)
    with open(results.gin_path(path), "w") as f:
        f.write('TrainManager.dataset = "ade20k"\nTrainManager.dataset_type_incremental = "overlapped"\n')
    outputs = str(tmp_path / "outputs")
    (e,) = results.read_experiments(outputs)
    assert (e["dataset"], e["setup"], e["protocol"]) == ("ade20k", "100-50", "overlapped")
    os.remove(results.gin_path(path))
    assert results.read_experiments(outputs) == []
    assert "test_type '100-50' is none of voc's setups" in caplog.text
    with open(results.gin_path(path), "w") as f:
        f.write('TrainManager.dataset = "cityscapes"\n')
    assert results.read_experiments(outputs) == []
    assert "dataset 'cityscapes'; expected one of" in caplog.text
