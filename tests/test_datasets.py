"""Tests of datasets.py (the dataset records and the setup table) and paths.py (the owner of the file layout):
VOC's table against the original's test types, and a second, made-up dataset of 150 classes in another folder
layout that flows through the table, the path owner, prepare_data, the GAN mapping and the web keywords."""

import os
import types

import numpy as np
from PIL import Image
import pytest

import data_loader
import datasets
import paths
import prepare_data
from train_manager import TrainManager

# The original's train_manager.py, written out: (test type, classes added per step), in its order (T0..T7).
ORIGINAL_TESTS = [("ADD_ONE_ONE_TIME", [19, 1]), ("ADD_FIVE_ONE_TIME", [15, 5]), ("ADD_FIVE_TWO_TIMES", [10, 5, 5]),
                  ("ADD_ONE_FIVE_TIMES", [15, 1, 1, 1, 1, 1]), ("ADD_TEN_ONE_TIME", [10, 10]),
                  ("ADD_TWO_FIVE_TIMES", [10, 2, 2, 2, 2, 2]), ("ADD_ONE_TEN_TIMES", [10] + [1] * 10),
                  ("JOINT", [20])]

N_FAKE = 150
FAKE_SETUPS = {"100-50": datasets.in_order(100, 50), "100-10": datasets.in_order(100, 10, 10, 10, 10, 10),
               "50-50": datasets.in_order(50, 50, 50), "offline": datasets.in_order(150)}


@pytest.fixture
def fake(monkeypatch):
    """A 150-class dataset in an ADE20K-like layout (images/, annotations/, lists at the root), registered in the
    table for the test's time."""
    record = datasets.Dataset(
        name="fake150", class_names=("background",) + tuple(f"thing{c}" for c in range(1, N_FAKE + 1)),
        colour_map=datasets.voc_colour_map,
        layout=datasets.FolderLayout(image_dir="images", label_dirs=("annotations",), train_list="train.txt",
                                     val_list="val.txt"),
        web_keywords=types.MappingProxyType({c: f"thing number {c}" for c in range(1, N_FAKE + 1)}),
        gan_classes=tuple(range(1, N_FAKE + 1)))
    monkeypatch.setitem(datasets.DATASETS, record.name, record)
    monkeypatch.setitem(datasets.SETUPS, record.name, FAKE_SETUPS)
    return record


# ------------------------------------------------------------------------------------------------ VOC


def test_voc_table_is_the_originals_setups():
    assert datasets.tests("voc") == ORIGINAL_TESTS
    assert TrainManager.TESTS == ORIGINAL_TESTS
    assert [TrainManager.TEST_0, TrainManager.TEST_3, TrainManager.TEST_7] == [ORIGINAL_TESTS[i] for i in (0, 3, 7)]
    assert datasets.step_classes("voc", "ADD_FIVE_TWO_TIMES", 2) == [16, 17, 18, 19, 20]
    assert datasets.step_classes("voc", "ADD_ONE_TEN_TIMES", 0) == list(range(1, 11))
    assert datasets.step_classes("voc", "ADD_ONE_TEN_TIMES", 10) == [20]
    with pytest.raises(ValueError, match="steps 0..1, not 2"):
        datasets.step_classes("voc", "ADD_FIVE_ONE_TIME", 2)
    with pytest.raises(ValueError, match="unknown setup 'ADD_ONE'"):
        datasets.step_classes("voc", "ADD_ONE", 0)
    with pytest.raises(ValueError, match="unknown dataset 'ade'"):
        datasets.get("ade")


def test_voc_record():
    voc = datasets.get("voc")
    assert voc.n_classes == 20 and voc.classes == list(range(1, 21)) and voc.void == 255
    assert voc.class_names[15] == "person" and voc.class_name(20) == "tvmonitor" and voc.class_name(21) == "21"
    assert data_loader.VOC_CLASSES == voc.class_names  # the alias notebooks import
    palette = voc.palette()
    assert palette.shape == (256, 3) and not palette.flags.writeable
    assert tuple(palette[255]) == (224, 224, 192) and tuple(palette[1]) == (128, 0, 0)
    assert tuple(palette[15]) == (192, 128, 128)  # person
    assert voc.web_keywords[20] == "monitor" and voc.web_keywords[11] == "dining table"
    assert voc.gan_classes == tuple(range(1, 21))
    assert voc.layout.example_paths("J", "L", "2007_000032") == ("J/2007_000032.jpg", "L/2007_000032.png")
    assert prepare_data.DEFAULT_TRAIN_LIST == os.path.join("ImageSets", "Segmentation", "train.txt")


def test_a_setup_must_add_classes_in_order():
    datasets.check_setup("voc", "ok", {0: [1, 2], 1: [3]})
    for steps in ({0: [1, 2], 1: [4]}, {0: [2, 3]}, {0: [1], 2: [2]}, {0: [1], 1: []}, datasets.in_order(20, 1)):
        with pytest.raises(ValueError, match="add classes 1..20 in order"):
            datasets.check_setup("voc", "bad", steps)


def test_a_record_checks_its_keywords_and_classes():
    voc = datasets.VOC
    with pytest.raises(ValueError, match="keywords for 1..20"):
        datasets.Dataset("x", voc.class_names, voc.colour_map, voc.layout,
                         types.MappingProxyType({1: "airplane"}), voc.gan_classes)
    with pytest.raises(ValueError, match="GAN classes among them"):
        datasets.Dataset("x", voc.class_names, voc.colour_map, voc.layout, voc.web_keywords, (0, 1))
    with pytest.raises(ValueError, match="do not fit below the void label"):
        datasets.Dataset("x", ("background",) + ("c",) * 255, voc.colour_map, voc.layout,
                         types.MappingProxyType({c: "c" for c in range(1, 256)}), ())


def test_paths_are_the_originals_names():
    data = paths.data_dir(".")
    assert data == "./data"
    assert paths.first_step_file(data, "overlapped", list(range(1, 16))) == \
        "./data/training_first_step/train_overlapped_1-15.tfrecord"
    assert paths.incremental_file(data, "disjoint", [16]) == "./data/training_incremental/train_disjoint_16.tfrecord"
    assert paths.mixed_file(data, "disjoint", [16, 17], "_P1.0.0.2") == \
        "./data/training_incremental/mixed/train_disjoint_16-17_P1.0.0.2.tfrecord"
    assert paths.validation_file(data, 7) == "./data/validation/val_7.tfrecord"
    assert paths.replay_file(data, "gan", 3) == "./data/replay_images/gan/03.tfrecord"
    assert paths.web_class_dir(paths.web_images_dir("data"), 3) == "data/replay_images/flickr/images/03"
    assert paths.checkpoint(".", "helper_decoders", "P1.0.0_E10_C11-15") == \
        "./checkpoints/helper_decoders/P1.0.0_E10_C11-15"
    assert paths.split_list("d/validation/val_7.tfrecord") == "d/splits/val_7.txt"
    assert paths.split_list("d/replay_images/gan/01.tfrecord") is None
    assert paths.split_list("d/training_incremental/mixed/train_disjoint_16_P1.0.0.2.tfrecord") is None


# ------------------------------------------------------------------------------------- a second dataset


def test_a_second_dataset_flows_through_the_table_and_the_paths(fake):
    assert datasets.get("fake150") is fake and fake.n_classes == N_FAKE
    assert datasets.tests("fake150") == [("100-50", [100, 50]), ("100-10", [100] + [10] * 5),
                                         ("50-50", [50, 50, 50]), ("offline", [150])]
    assert datasets.step_classes("fake150", "100-10", 3) == list(range(121, 131))
    first, incremental = datasets.class_groups("fake150")
    assert [paths.class_range_str(g) for g in first] == ["1-50", "1-100", "1-150"]
    assert sorted(paths.class_range_str(g) for g in incremental) == sorted(
        ["101-150", "51-100", "101-110", "111-120", "121-130", "131-140", "141-150"])
    assert prepare_data.class_groups("fake150") == (first, incremental)
    assert datasets.class_groups("voc") != (first, incremental)
    assert paths.first_step_file("data", "sequential", first[2]) == \
        "data/training_first_step/train_sequential_1-150.tfrecord"
    # the GAN's default mapping images: the first step of every class of the dataset
    from gan import generate_gan  # pylint: disable=g-import-not-at-top  (TensorFlow Hub)
    assert generate_gan.default_mapping_tfrecords(fake, "d") == (
        "d/training_first_step/train_sequential_1-150.tfrecord",)
    assert generate_gan.default_mapping_tfrecords() == ("data/training_first_step/train_sequential_1-20.tfrecord",)
    assert data_loader.colorize([[150]], fake).tolist() == [[list(datasets.voc_colour_map()[150])]]


def test_prepare_data_writes_a_second_dataset_from_its_layout(fake, tmp_path):
    # Four training and three validation images in the fake's layout; labels hold classes up to 150.
    root, layout = tmp_path / "ade", fake.layout
    train = {"t_1_60": [1, 60], "t_105": [105], "t_101_150": [101, 150], "t_49": [49]}
    val = {"v_150": [150], "v_30_120": [30, 120], "v_7": [7]}
    os.makedirs(root / layout.image_dir)
    os.makedirs(root / layout.label_dirs[0])
    for image_id, classes in (train | val).items():
        label = np.zeros((4, 4), np.uint8)
        for j, c in enumerate(classes):
            label[:, j] = c
        image_path, label_path = layout.example_paths(str(root / layout.image_dir), str(root / layout.label_dirs[0]),
                                                      image_id)
        Image.fromarray(np.full((4, 4, 3), 90, np.uint8)).save(image_path)
        Image.fromarray(label, mode="L").save(label_path)
    (root / layout.train_list).write_text("".join(i + "\n" for i in train))
    (root / layout.val_list).write_text("".join(i + "\n" for i in val))

    out = str(tmp_path / "data")
    summary = prepare_data.prepare(str(root), out, workers=1, dataset="fake150")
    files = {os.path.relpath(p, out): n for p, n in summary["files"].items()}
    assert len(files) == 2 * 3 + 3 * 7 + N_FAKE  # first-step groups x 2, incremental groups x 3, val_1..val_150
    assert files["validation/val_150.tfrecord"] == 1 and files["validation/val_120.tfrecord"] == 1
    assert files["validation/val_7.tfrecord"] == 1 and files["validation/val_20.tfrecord"] == 0
    assert files["training_first_step/train_sequential_1-150.tfrecord"] == 4
    assert files["training_first_step/train_sequential_1-50.tfrecord"] == 1  # t_49 only (t_1_60 has 60)
    assert files["training_first_step/train_overlapped_1-50.tfrecord"] == 2
    assert files["training_incremental/train_disjoint_101-150.tfrecord"] == 2
    assert files["training_incremental/train_sequential_101-110.tfrecord"] == 1  # t_105
    for rel, n in files.items():
        assert paths.expected_records(os.path.join(out, rel)) == n, rel

    # VOC's checks refuse a label value of 150, the fake's accept it
    image_path, label_path = layout.example_paths(str(root / "images"), str(root / "annotations"), "v_150")
    assert prepare_data.read_example(image_path, label_path, "fake150")[1].max() == 150
    with pytest.raises(prepare_data.BadExampleError, match=r"label values \[150\] are neither 0..20 nor 255"):
        prepare_data.read_example(image_path, label_path)


def test_web_keywords_and_gan_names_of_a_second_dataset(fake, tmp_path):
    from flickr import download_flickr  # pylint: disable=g-import-not-at-top
    assert download_flickr.check_download([150, 3], str(tmp_path), 5, dataset="fake150") == {
        150: "thing number 150", 3: "thing number 3"}
    assert download_flickr.check_download([3], str(tmp_path), 5) == {3: "bird"}
    with pytest.raises(ValueError, match=r"no search keyword for classes \[150\]"):
        download_flickr.check_download([150], str(tmp_path), 5)

    from gan import generate_gan  # pylint: disable=g-import-not-at-top
    mapping = tmp_path / "mapping.json"
    mapping.write_text('{"thing150": 4, "2": 1}')
    assert generate_gan.read_mapping_file(str(mapping), 10, "fake150") == {150: 4, 2: 1}
    with pytest.raises(ValueError, match="neither an id nor a VOC class name"):
        generate_gan.read_mapping_file(str(mapping), 10)
