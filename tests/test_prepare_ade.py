"""Tests of prepare_data.py on ADE20K-layout folders: a generated one (ade_folder.py) and small hand-made ones."""

import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

import datasets
import paths
import prepare_data
from ade_folder import make_ade_folder, split_dirs, write_example
from test_prepare_data import read_records

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ADE20K's class groups (MiB's and PLOP's 100-50, 100-10, 50-50, 100-5 and the joint 150), written out by hand.
FIRST_GROUPS = ["1-50", "1-100", "1-150"]
INCREMENTAL_GROUPS = (["101-150", "51-100"] + [f"{a}-{a + 9}" for a in range(101, 150, 10)]
                      + [f"{a}-{a + 4}" for a in range(101, 150, 5)])
EXPECTED_FILES = sorted([f"training_first_step/train_overlapped_{g}.tfrecord" for g in FIRST_GROUPS]
                        + [f"training_incremental/train_overlapped_{g}.tfrecord" for g in INCREMENTAL_GROUPS]
                        + [f"validation/val_{k}.tfrecord" for k in range(1, 151)])


def read_split(out_dir, rel):
    with open(paths.split_list(os.path.join(out_dir, rel))) as f:
        return f.read().split()


def annotations(root, split):
    """{id: label uint8 [H, W]} of every annotation of a split ("training" or "validation")."""
    folder = split_dirs(root, split)[1]
    return {n[:-4]: np.asarray(Image.open(os.path.join(folder, n))) for n in sorted(os.listdir(folder))}


def _group(rel):
    first, _, last = rel.rsplit("_", 1)[1][:-len(".tfrecord")].partition("-")
    return set(range(int(first), int(last or first) + 1))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    parent = str(tmp_path_factory.mktemp("ade"))
    root = make_ade_folder(parent, per_class=1, seed=3)
    out = str(tmp_path_factory.mktemp("data"))
    summary = prepare_data.prepare(parent, out, workers=2, dataset="ade20k")  # the parent of ADEChallengeData2016
    return root, out, summary


def test_the_generated_folder_is_deterministic_and_covers_every_class(tmp_path):
    a, b = make_ade_folder(str(tmp_path / "a"), per_class=1), make_ade_folder(str(tmp_path / "b"), per_class=1)
    for split in ("training", "validation"):
        labels, again = annotations(a, split), annotations(b, split)
        assert list(labels) == list(again) and all(np.array_equal(labels[i], again[i]) for i in labels)
        assert set(np.unique(np.concatenate([v.ravel() for v in labels.values()]))) == set(range(151))
        assert all((v == 0).any() for v in labels.values())
        assert sorted(os.listdir(split_dirs(a, split)[0])) == [i + ".jpg" for i in labels]


def test_every_file_of_the_overlapped_protocol_and_nothing_else(prepared):
    root, out, summary = prepared
    found = sorted(os.path.relpath(os.path.join(d, n), out) for d, _, names in os.walk(out) for n in names)
    assert [f for f in found if not f.startswith("splits/")] == EXPECTED_FILES
    assert sorted(f for f in found if f.startswith("splits/")) == sorted(
        "splits/" + os.path.basename(f)[:-len(".tfrecord")] + ".txt" for f in EXPECTED_FILES)
    assert summary["n_train"] == summary["n_val"] == 150 and summary["bad"] == []
    assert summary["label_dirs"] == {"train": split_dirs(root, "training")[1], "val": split_dirs(root, "validation")[1]}
    for path, n in summary["files"].items():
        assert n > 0 and paths.expected_records(path) == n, path


def test_files_hold_the_images_of_their_classes(prepared):
    root, out, _ = prepared
    train = {i: set(np.unique(v).tolist()) - {0} for i, v in annotations(root, "training").items()}
    val = {i: set(np.unique(v).tolist()) - {0} for i, v in annotations(root, "validation").items()}
    for rel in EXPECTED_FILES:
        if rel.startswith("validation/"):
            k = int(rel[len("validation/val_"):-len(".tfrecord")])
            expected = [i for i, c in val.items() if min(c) == k]  # grouped by lowest class
        else:
            expected = [i for i, c in train.items() if c & _group(rel)]  # overlapped: any class of the group
        assert read_split(out, rel) == sorted(expected), rel
    assert len(read_split(out, "training_first_step/train_overlapped_1-150.tfrecord")) == 150


def test_training_labels_keep_other_as_background_validation_labels_make_it_void(prepared):
    root, out, _ = prepared
    train, val = annotations(root, "training"), annotations(root, "validation")
    ids = read_split(out, "training_first_step/train_overlapped_1-150.tfrecord")
    records = read_records(os.path.join(out, "training_first_step/train_overlapped_1-150.tfrecord"))
    assert all(np.array_equal(label, train[i]) for i, (_, label) in zip(ids, records))  # 0 kept as 0
    rel = "training_incremental/train_overlapped_101-150.tfrecord"
    for i, (_, label) in zip(read_split(out, rel), read_records(os.path.join(out, rel))):
        assert np.array_equal(label, np.where(train[i] > 100, train[i], 0)), i
    checked = 0
    for k in (1, 75, 150):
        rel = f"validation/val_{k}.tfrecord"
        for i, (_, label) in zip(read_split(out, rel), read_records(os.path.join(out, rel))):
            assert (val[i] == 0).any() and np.array_equal(label, np.where(val[i] == 0, 255, val[i])), i
            checked += 1
    assert checked >= 3


def test_rerun_skips_complete_files_and_remakes_a_broken_one(prepared, tmp_path):
    root, out, summary = prepared
    again = prepare_data.prepare(root, out, workers=2, dataset="ade20k")
    assert again["written"] == [] and sorted(again["skipped"]) == sorted(summary["files"])
    broken = os.path.join(out, "validation", "val_7.tfrecord")
    with open(broken, "r+b") as f:
        f.truncate(os.path.getsize(broken) - 3)
    third = prepare_data.prepare(root, out, workers=1, dataset="ade20k")
    assert third["written"] == [broken] and paths.expected_records(broken) == len(read_records(broken))


def _small(tmp_path, val=None):
    """A hand-made ADEChallengeData2016 folder: 4x6 labels drawn column by column ({id: classes})."""
    root = str(tmp_path / "ADEChallengeData2016")
    train = {"ADE_train_1": [1, 60], "ADE_train_2": [101], "ADE_train_3": [0, 150]}
    val = val or {"ADE_val_1": [0, 3, 120], "ADE_val_2": [150, 0], "ADE_val_3": [0], "ADE_val_4": [120, 7]}
    for split, examples in (("training", train), ("validation", val)):
        for image_id, classes in examples.items():
            label = np.zeros((4, 6), np.uint8)
            label[:, :len(classes)] = classes
            write_example(root, split, image_id, label)
    return root


def test_validation_grouped_by_lowest_class_on_a_hand_made_folder(tmp_path):
    root = _small(tmp_path)
    out = str(tmp_path / "data")
    summary = prepare_data.prepare(root, out, workers=1, dataset="ade20k")
    files = {os.path.relpath(p, out): n for p, n in summary["files"].items()}
    assert len(files) == 3 + 17 + 150
    assert read_split(out, "validation/val_3.tfrecord") == ["ADE_val_1"]  # highest would be val_120
    assert read_split(out, "validation/val_7.tfrecord") == ["ADE_val_4"]
    assert read_split(out, "validation/val_150.tfrecord") == ["ADE_val_2"]
    assert sum(n for f, n in files.items() if f.startswith("validation/")) == 3  # ADE_val_3: "other" only
    assert files["validation/val_120.tfrecord"] == 0
    (_, label), = read_records(os.path.join(out, "validation/val_3.tfrecord"))
    assert label[0].tolist() == [255, 3, 120, 255, 255, 255]
    (_, label), = read_records(os.path.join(out, "training_first_step/train_overlapped_1-150.tfrecord"))[2:]
    assert label[0].tolist() == [0, 150, 0, 0, 0, 0]
    assert read_split(out, "training_first_step/train_overlapped_1-50.tfrecord") == ["ADE_train_1"]
    assert read_split(out, "training_incremental/train_overlapped_51-100.tfrecord") == ["ADE_train_1"]
    assert prepare_data.validation_class({3, 120}, "lowest") == 3 and prepare_data.validation_class({3, 120}) == 120
    with pytest.raises(ValueError, match="unknown validation group 'middle'"):
        prepare_data.validation_class({3}, "middle")


def test_a_parent_with_two_dataset_folders_is_refused(tmp_path):
    shutil.copytree(_small(tmp_path), tmp_path / "copy")
    with pytest.raises(FileNotFoundError, match=r"holds several ade20k folders \['ADEChallengeData2016', 'copy'\]: "
                                                r"name one"):
        prepare_data.prepare(str(tmp_path), str(tmp_path / "data"), dataset="ade20k")


def _break(root, case):
    """Damages the hand-made folder; returns (error type, regex of the message)."""
    image = os.path.join(split_dirs(root, "validation")[0], "ADE_val_2.jpg")
    label = os.path.join(split_dirs(root, "validation")[1], "ADE_val_2.png")
    if case == "label_value":
        bad = np.zeros((4, 6), np.uint8)
        bad[1, 1], bad[2, 2] = 151, 200
        Image.fromarray(bad, mode="L").save(label)
        return ValueError, r"ADE_val_2\.png: label values \[151, 200\] are neither 0..150 nor 255"
    if case == "missing_label":
        os.remove(label)
        return FileNotFoundError, rf"{label} not found \(the label of image {image}\)"
    if case == "missing_image":  # an annotation without its image: listed from the annotations, reported
        os.remove(image)
        return FileNotFoundError, rf"{image} not found \(the image of label {label}\)"
    if case == "empty_split":
        for name in os.listdir(split_dirs(root, "validation")[0]):
            os.remove(os.path.join(split_dirs(root, "validation")[0], name))
        return ValueError, r"image folder .*images/validation holds no \.jpg file"
    if case == "no_split":
        os.rename(split_dirs(root, "validation")[0], os.path.join(root, "elsewhere"))
        return FileNotFoundError, r"image folder .*images/validation not found"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["label_value", "missing_label", "missing_image", "empty_split", "no_split"])
def test_bad_input_fails_naming_the_file(tmp_path, case):
    root = _small(tmp_path)
    error, message = _break(root, case)
    with pytest.raises(error, match=message):
        prepare_data.prepare(root, str(tmp_path / "data"), dataset="ade20k")
    assert not os.path.exists(tmp_path / "data")  # nothing written before every input is checked


def test_skip_bad_skips_and_counts(tmp_path):
    root = _small(tmp_path, val={"ADE_val_1": [3], "ADE_val_2": [4], "ADE_val_5": [5], "ADE_val_6": [6]})
    _break(root, "missing_image")  # ADE_val_2's annotation stays, its image goes
    os.remove(os.path.join(split_dirs(root, "validation")[1], "ADE_val_5.png"))
    summary = prepare_data.prepare(root, str(tmp_path / "data"), skip_bad=True, dataset="ade20k")
    assert sorted((b[0], b[1], b[2]) for b in summary["bad"]) == [("val", "ADE_val_2", "missing_image"),
                                                                   ("val", "ADE_val_5", "missing_label")]
    assert summary["n_val"] == 2
    assert read_split(str(tmp_path / "data"), "validation/val_6.tfrecord") == ["ADE_val_6"]
    assert read_split(str(tmp_path / "data"), "validation/val_4.tfrecord") == []


def test_label_dir_is_refused_for_a_label_folder_per_split(tmp_path):
    with pytest.raises(ValueError, match="label_dir 'annotations' names one label folder for both splits"):
        prepare_data.prepare(_small(tmp_path), str(tmp_path / "data"), label_dir="annotations", dataset="ade20k")


def _run(*args):
    return subprocess.run([sys.executable, os.path.join(PROJECT, "prepare_data.py"), *args], capture_output=True,
                          text=True, cwd=PROJECT)


def test_command_line(tmp_path):
    root = _small(tmp_path)
    out = str(tmp_path / "data")
    run = _run("--dataset", "ade20k", "--root", str(tmp_path), "--output_dir", out, "--workers", "1")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "170 files written" in run.stderr
    assert read_split(out, "validation/val_3.tfrecord") == ["ADE_val_1"]
    _break(root, "label_value")
    bad = _run("--dataset", "ade20k", "--voc_root", root, "--output_dir", str(tmp_path / "other"))
    last = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert last.startswith("prepare_data.py: error: ") and "label values [151, 200] are neither 0..150" in last
    missing = _run("--dataset", "ade20k")
    assert missing.returncode == 2, missing.stderr[-2000:]
    assert "--root or --voc_root: required, the ADE20K folder holding images/training/" in missing.stderr


def test_the_dataset_record_is_what_these_tests_assume():
    ade = datasets.ADE20K
    assert ade.protocols == ("overlapped",) and ade.validation_group == "lowest" and ade.validation_void == (0,)
    first, incremental = datasets.class_groups("ade20k")
    assert sorted(paths.class_range_str(g) for g in first) == sorted(FIRST_GROUPS)
    assert sorted(paths.class_range_str(g) for g in incremental) == sorted(INCREMENTAL_GROUPS)
