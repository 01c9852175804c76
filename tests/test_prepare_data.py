"""Tests of prepare_data.py on small hand-made VOC-layout folders with known contents."""

import io
import itertools
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import artifacts
import prepare_data
from conftest import record_bytes

H, W = 6, 8
# Train ids -> the classes drawn in their labels (one column per class, plus one void pixel).
TRAIN = {"a_1": [1], "b_1_2": [1, 2], "c_2_16": [2, 16], "d_16": [16], "e_15_20": [15, 20],
         "f_11_12": [11, 12], "g_bg": [], "h_20": [20], "i_10_11": [10, 11], "j_19": [19],
         "k_5_13_17": [5, 13, 17], "l_3_4_5": [3, 4, 5]}
VAL = {"v_1": [1], "v_3": [3], "v_3_7": [3, 7], "v_12_15": [12, 15], "v_20": [20], "v_bg": []}

# The class groups of the seven setups and their helpers, written out by hand.
FIRST_GROUPS = ["1-10", "1-15", "1-19", "1-20"]
INCREMENTAL_GROUPS = (["16-20", "11-15", "11-20"] + [str(c) for c in range(11, 21)] +
                      ["11-12", "13-14", "15-16", "17-18", "19-20"])
EXPECTED_FILES = sorted(
    [f"training_first_step/train_{p}_{g}.tfrecord" for g in FIRST_GROUPS
     for p in ("sequential", "overlapped")] +
    [f"training_incremental/train_{p}_{g}.tfrecord" for g in INCREMENTAL_GROUPS
     for p in ("sequential", "disjoint", "overlapped")] +
    [f"validation/val_{i}.tfrecord" for i in range(1, 21)])


def _label(classes):
    label = np.zeros((H, W), np.uint8)
    for j, c in enumerate(classes):
        label[1:, j] = c
    label[0, W - 1] = 255
    return label


def _colour(image_id):
    # A flat colour per id (survives JPEG), so records can be matched to ids.
    k = sum(map(ord, image_id)) % 13
    return np.array([20 * k % 256, 255 - 15 * k, 60 + 7 * k], np.uint8)


def make_voc(root, train=TRAIN, val=VAL, label_dir="SegmentationClassAug", palette=False):
    os.makedirs(os.path.join(root, "JPEGImages"))
    os.makedirs(os.path.join(root, label_dir))
    os.makedirs(os.path.join(root, "ImageSets", "Segmentation"))
    for image_id, classes in (train | val).items():
        Image.fromarray(np.tile(_colour(image_id), (H, W, 1))).save(
            os.path.join(root, "JPEGImages", image_id + ".jpg"), quality=100)
        label = Image.fromarray(_label(classes), mode="L")
        if palette:  # VOC's own SegmentationClass PNGs are palette images of class ids
            label.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
            assert label.mode == "P"
        label.save(os.path.join(root, label_dir, image_id + ".png"))
    for split, ids in (("train", train), ("val", val)):
        with open(os.path.join(root, "ImageSets", "Segmentation", split + ".txt"), "w") as f:
            f.write("".join(i + "\n" for i in ids))
    return root


def read_records(path):
    """[(image uint8 [H,W,3], label uint8 [H,W])] of a prepared tfrecord."""
    out = []
    for raw in tf.data.TFRecordDataset(path):
        feature = tf.train.Example.FromString(raw.numpy()).features.feature
        image = np.asarray(Image.open(io.BytesIO(feature["input"].bytes_list.value[0])))
        label = np.asarray(Image.open(io.BytesIO(feature["label"].bytes_list.value[0])))
        out.append((image, label))
    return out


def read_split(out_dir, tfrecord_rel):
    name = os.path.basename(tfrecord_rel)[:-len(".tfrecord")]
    with open(os.path.join(out_dir, "splits", name + ".txt")) as f:
        return f.read().split()


# Reference implementation of the published rules (SPEC.md), independent of prepare_data.
def reference(classes, first, last, protocol):
    classes = set(classes)
    current = set(range(first, last + 1))
    old = set(range(1, first))
    if not classes & current:
        return None
    if protocol in ("sequential", "disjoint") and not classes <= old | current:
        return None
    relabel = {"sequential": lambda v: v,
               "disjoint": lambda v: 0 if v in old else v,
               "overlapped": lambda v: v if v in current or v == 255 else 0}[protocol]
    return relabel


def _parse(rel):
    name = os.path.basename(rel)[:-len(".tfrecord")]
    _, protocol, group = name.split("_")
    first, _, last = group.partition("-")
    return protocol, int(first), int(last or first)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = make_voc(str(tmp_path_factory.mktemp("voc")))
    out = str(tmp_path_factory.mktemp("data"))
    summary = prepare_data.prepare(root, out, workers=2)
    return root, out, summary


def test_every_file_written_and_nothing_else(prepared):
    _, out, summary = prepared
    found = sorted(os.path.relpath(os.path.join(d, n), out) for d, _, names in os.walk(out) for n in names)
    tfrecords = [f for f in found if not f.startswith("splits/")]
    assert tfrecords == EXPECTED_FILES
    assert sorted(f for f in found if f.startswith("splits/")) == sorted(
        "splits/" + os.path.basename(f)[:-len(".tfrecord")] + ".txt" for f in EXPECTED_FILES)
    assert len(summary["written"]) == 82 and summary["skipped"] == []
    assert summary["n_train"] == len(TRAIN) and summary["n_val"] == len(VAL) and summary["bad"] == []


def test_hand_checked_files(prepared):
    _, out, _ = prepared
    expected = {
        "training_first_step/train_sequential_1-10.tfrecord": ["a_1", "b_1_2", "l_3_4_5"],
        "training_first_step/train_overlapped_1-10.tfrecord": ["a_1", "b_1_2", "c_2_16", "i_10_11",
                                                               "k_5_13_17", "l_3_4_5"],
        "training_first_step/train_sequential_1-20.tfrecord": sorted(set(TRAIN) - {"g_bg"}),
        "training_incremental/train_sequential_11.tfrecord": ["i_10_11"],
        "training_incremental/train_overlapped_11.tfrecord": ["f_11_12", "i_10_11"],
        "training_incremental/train_disjoint_16-20.tfrecord": ["c_2_16", "d_16", "e_15_20", "h_20", "j_19",
                                                               "k_5_13_17"],
        "training_incremental/train_disjoint_13.tfrecord": [],
        "training_incremental/train_overlapped_13.tfrecord": ["k_5_13_17"],
        "training_incremental/train_sequential_15-16.tfrecord": ["c_2_16", "d_16"],
        "validation/val_7.tfrecord": ["v_3_7"],
        "validation/val_15.tfrecord": ["v_12_15"],
    }
    for rel, ids in expected.items():
        assert read_split(out, rel) == ids, rel
    records = dict(zip(read_split(out, "training_incremental/train_disjoint_16-20.tfrecord"),
                       read_records(os.path.join(out, "training_incremental/train_disjoint_16-20.tfrecord"))))
    label = records["k_5_13_17"][1]
    assert list(label[1, :4]) == [0, 0, 17, 0] and label[0, W - 1] == 255  # old 5, 13 -> 0; void kept
    records = dict(zip(read_split(out, "training_first_step/train_overlapped_1-10.tfrecord"),
                       read_records(os.path.join(out, "training_first_step/train_overlapped_1-10.tfrecord"))))
    assert list(records["c_2_16"][1][1, :3]) == [2, 0, 0]  # future 16 -> 0
    assert list(records["i_10_11"][1][1, :3]) == [10, 0, 0]


def test_all_files_match_reference_rules(prepared):
    _, out, _ = prepared
    for rel in EXPECTED_FILES:
        if rel.startswith("validation/"):
            continue
        protocol, first, last = _parse(rel)
        ids = read_split(out, rel)
        assert ids == sorted(i for i, c in TRAIN.items() if reference(c, first, last, protocol)), rel
        records = read_records(os.path.join(out, rel))
        assert len(records) == len(ids)
        for image_id, (image, label) in zip(ids, records):
            relabel = reference(TRAIN[image_id], first, last, protocol)
            want = np.vectorize(relabel, otypes=[np.uint8])(_label(TRAIN[image_id]))
            assert np.array_equal(label, want), (rel, image_id)
            assert image.shape == (H, W, 3)
            assert np.abs(image.astype(int) - _colour(image_id)).max() <= 8, (rel, image_id)


def test_validation_files_partition_val(prepared):
    _, out, _ = prepared
    seen = []
    for i in range(1, 21):
        rel = f"validation/val_{i}.tfrecord"
        ids = read_split(out, rel)
        assert all(max(VAL[j]) == i for j in ids)
        for image_id, (_, label) in zip(ids, read_records(os.path.join(out, rel))):
            assert np.array_equal(label, _label(VAL[image_id]))  # labels unchanged
        seen += ids
    assert sorted(seen) == sorted(i for i, c in VAL.items() if c)


def protocol_rule(image_classes, step_classes, protocol):
    """The whole protocol for one image: None when it is left out, else its label lookup (uint8 [256])."""
    if not prepare_data.keeps(image_classes, step_classes, protocol):
        return None
    return prepare_data.relabel_lookup(step_classes, protocol)


def test_protocol_rule_matches_reference_on_many_class_sets():
    first_groups, incremental_groups = prepare_data.class_groups()
    assert [prepare_data.class_range_str(g) for g in first_groups] == FIRST_GROUPS
    assert sorted(prepare_data.class_range_str(g) for g in incremental_groups) == sorted(INCREMENTAL_GROUPS)
    rng = np.random.default_rng(0)
    sets = [set(rng.choice(np.arange(1, 21), rng.integers(0, 5), replace=False)) for _ in range(300)]
    sets += [set(), {1}, {20}, {10, 11}, set(range(1, 21))]
    values = np.arange(256)
    for group, protocol, classes in itertools.product(first_groups + incremental_groups,
                                                      ("sequential", "disjoint", "overlapped"), sets):
        got = protocol_rule(classes, group, protocol)
        want = reference(classes, group[0], group[-1], protocol)
        assert (got is None) == (want is None), (group, protocol, classes)
        if got is not None:
            in_range = np.r_[0:21, 255]
            assert [got[v] for v in in_range] == [want(v) for v in in_range], (group, protocol)
            assert got.dtype == np.uint8 and got.shape == (256,) and got[values[255]] == 255
    with pytest.raises(ValueError, match="protocol 'mixed'"):
        protocol_rule({1}, [1], "mixed")


def test_rerun_skips_complete_and_remakes_truncated_or_stale(prepared, tmp_path):
    root, out, _ = prepared
    again = prepare_data.prepare(root, out)
    assert again["written"] == [] and len(again["skipped"]) == 82
    truncated = os.path.join(out, "training_incremental/train_overlapped_16-20.tfrecord")
    with open(truncated, "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[:len(data) // 2])
    no_list = os.path.join(out, "validation/val_3.tfrecord")
    os.remove(os.path.join(out, "splits/val_3.txt"))
    stale = os.path.join(out, "training_first_step/train_sequential_1-10.tfrecord")
    with open(os.path.join(out, "splits/train_sequential_1-10.txt"), "w") as f:
        f.write("a_1\n")
    mtimes = {f: os.path.getmtime(os.path.join(out, f)) for f in EXPECTED_FILES}
    third = prepare_data.prepare(root, out)
    assert sorted(third["written"]) == sorted([truncated, no_list, stale])
    assert len(read_records(truncated)) == len(read_split(out, truncated)) == 6
    assert read_split(out, "validation/val_3.tfrecord") == ["v_3"]
    assert read_split(out, stale) == ["a_1", "b_1_2", "l_3_4_5"]
    for f in EXPECTED_FILES:
        if os.path.join(out, f) not in third["written"]:
            assert os.path.getmtime(os.path.join(out, f)) == mtimes[f], f
    assert not [n for _, _, names in os.walk(out) for n in names if ".tmp" in n]


def test_fallback_label_dir_with_palette_labels(tmp_path):
    root = make_voc(str(tmp_path / "voc"), train={"a_1": [1], "d_16": [16]}, val={"v_20": [20]},
                    label_dir="SegmentationClass", palette=True)
    summary = prepare_data.prepare(root, str(tmp_path / "data"), workers=1)
    assert summary["label_dir"].endswith("SegmentationClass")
    assert summary["files"][str(tmp_path / "data/training_incremental/train_sequential_16.tfrecord")] == 1
    _, label = read_records(str(tmp_path / "data/training_incremental/train_sequential_16.tfrecord"))[0]
    assert np.array_equal(label, _label([16]))


def _small(tmp_path):
    return make_voc(str(tmp_path / "voc"), train={"a_1": [1], "b_1_2": [1, 2], "h_20": [20]},
                    val={"v_1": [1]})


def _break(root, case, image_id="b_1_2"):
    """Damages one example of a folder; returns (a regex of) the expected error message."""
    label = os.path.join(root, "SegmentationClassAug", image_id + ".png")
    image = os.path.join(root, "JPEGImages", image_id + ".jpg")
    if case == "missing_image":
        os.remove(image)
        return f"{image_id}.jpg not found"
    if case == "missing_label":
        os.remove(label)
        return f"{image_id}.png not found"
    if case == "size_mismatch":
        Image.fromarray(np.zeros((H + 1, W), np.uint8), mode="L").save(label)
        return f"{image_id}.png: label size 8x7 differs from image"
    if case == "label_value":
        bad = _label([1, 2])
        bad[2, 2], bad[3, 3] = 21, 254
        Image.fromarray(bad, mode="L").save(label)
        return rf"{image_id}.png: label values \[21, 254\] are neither 0..20 nor 255"
    if case == "label_channels":
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(label)
        return f"{image_id}.png: label has bands .* expected a single-channel PNG"
    if case == "unreadable":
        with open(image, "wb") as f:
            f.write(b"not a jpeg")
        return f"{image_id}.jpg: cannot read the image"
    raise AssertionError(case)


BAD_CASES = ["missing_image", "missing_label", "size_mismatch", "label_value", "label_channels", "unreadable"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_example_fails_naming_the_file(tmp_path, case):
    root = _small(tmp_path)
    message = _break(root, case)
    error = FileNotFoundError if case.startswith("missing") else ValueError
    with pytest.raises(error, match=message):
        prepare_data.prepare(root, str(tmp_path / "data"))
    assert not os.path.exists(tmp_path / "data")  # nothing written before every input is checked


def test_skip_bad_skips_and_counts(tmp_path):
    train = {f"t{i}_{case}": [1, 2] for i, case in enumerate(BAD_CASES)} | {"a_1": [1], "h_20": [20]}
    root = make_voc(str(tmp_path / "voc"), train=train, val={"v_1": [1], "v_2": [2]})
    for i, case in enumerate(BAD_CASES):
        _break(root, case, f"t{i}_{case}")
    os.remove(os.path.join(root, "SegmentationClassAug", "v_2.png"))
    summary = prepare_data.prepare(root, str(tmp_path / "data"), skip_bad=True)
    assert summary["bad_counts"] == {case: 1 for case in BAD_CASES[1:]} | {"missing_image": 1,
                                                                            "missing_label": 2}
    assert sorted((b[0], b[1]) for b in summary["bad"]) == sorted(
        [("train", i) for i in train if i[0] == "t"] + [("val", "v_2")])
    assert summary["n_train"] == 2 and summary["n_val"] == 1
    data = str(tmp_path / "data")
    assert read_split(data, "training_first_step/train_overlapped_1-20.tfrecord") == ["a_1", "h_20"]
    assert read_split(data, "validation/val_2.tfrecord") == []


@pytest.mark.parametrize("what", ["root", "images", "labels", "label_dir", "train_list", "val_list"])
def test_missing_folder_or_list(tmp_path, what):
    root = _small(tmp_path)
    kwargs = {}
    if what == "root":
        root, message = str(tmp_path / "nowhere"), "VOC root folder .*nowhere not found"
    elif what == "images":
        os.rename(os.path.join(root, "JPEGImages"), os.path.join(root, "x"))
        message = "image folder .*JPEGImages not found"
    elif what == "labels":
        os.rename(os.path.join(root, "SegmentationClassAug"), os.path.join(root, "x"))
        message = "no label folder in .*SegmentationClassAug.*SegmentationClass"
    elif what == "label_dir":
        kwargs, message = {"label_dir": "MyLabels"}, "label folder .*MyLabels not found"
    else:
        os.remove(os.path.join(root, "ImageSets", "Segmentation", what.split("_")[0] + ".txt"))
        message = "image id list .*" + what.split("_")[0] + ".txt not found"
    with pytest.raises(FileNotFoundError, match=message):
        prepare_data.prepare(root, str(tmp_path / "data"), skip_bad=True, **kwargs)


def test_empty_list(tmp_path):
    root = _small(tmp_path)
    open(os.path.join(root, "ImageSets", "Segmentation", "val.txt"), "w").close()
    with pytest.raises(ValueError, match="val.txt is empty"):
        prepare_data.prepare(root, str(tmp_path / "data"))


def test_deeplab_list_form_names_the_same_ids(tmp_path):
    """train_aug.txt as DeepLab's ports ship it: "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png"."""
    root = _small(tmp_path)
    lists = os.path.join(root, "ImageSets", "Segmentation")
    with open(os.path.join(lists, "train.txt")) as f:
        ids = f.read().split()
    with open(os.path.join(lists, "train_aug.txt"), "w") as f:
        f.write("".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids))
    plain, deeplab = str(tmp_path / "plain"), str(tmp_path / "deeplab")
    prepare_data.prepare(root, plain)
    prepare_data.prepare(root, deeplab, train_list="ImageSets/Segmentation/train_aug.txt")
    for folder in ("splits", "training_first_step"):
        names = sorted(os.listdir(os.path.join(plain, folder)))
        assert names and names == sorted(os.listdir(os.path.join(deeplab, folder)))
        for name in names:
            with open(os.path.join(plain, folder, name), "rb") as a, open(os.path.join(deeplab, folder, name), "rb") as b:
                assert a.read() == b.read(), name


def test_command_line(tmp_path):
    root = make_voc(str(tmp_path / "voc"), train={"a_1": [1], "h_20": [20]}, val={"v_1": [1]})
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = str(tmp_path / "data")
    run = subprocess.run([sys.executable, os.path.join(project, "prepare_data.py"), "--voc_root", root,
                          "--out_dir", out, "--workers", "1"], capture_output=True, text=True, cwd=project)
    assert run.returncode == 0, run.stderr[-2000:]
    assert read_split(out, "training_incremental/train_sequential_20.tfrecord") == ["h_20"]
    assert "82 files written" in run.stderr
    missing = subprocess.run([sys.executable, os.path.join(project, "prepare_data.py")], capture_output=True,
                             text=True, cwd=project)
    assert missing.returncode == 2 and "--voc_root: required" in missing.stderr, missing.stderr[-2000:]
    absent = subprocess.run([sys.executable, os.path.join(project, "prepare_data.py"), "--voc_root",
                             str(tmp_path / "nowhere")], capture_output=True, text=True, cwd=project)
    assert absent.returncode == 2 and "no such folder" in absent.stderr and "Traceback" not in absent.stderr


def _file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def test_records_keep_the_source_bytes(prepared):
    root, out, _ = prepared
    checked_kept = checked_relabelled = 0
    for rel in EXPECTED_FILES:
        for image_id, (image, label) in zip(read_split(out, rel), record_bytes(os.path.join(out, rel))):
            assert image == _file_bytes(os.path.join(root, "JPEGImages", image_id + ".jpg")), (rel, image_id)
            source_label = _file_bytes(os.path.join(root, "SegmentationClassAug", image_id + ".png"))
            want = _label(TRAIN[image_id] if image_id in TRAIN else VAL[image_id])
            if rel.startswith("validation/") or "_sequential_" in rel:  # labels unchanged: the file's bytes
                assert label == source_label, (rel, image_id)
                checked_kept += 1
            decoded = tf.io.decode_png(label, channels=1).numpy()[..., 0]
            if not np.array_equal(decoded, want):  # relabelled by the protocol: a new class-id PNG
                assert label != source_label and "_sequential_" not in rel
                checked_relabelled += 1
    assert checked_kept > 50 and checked_relabelled > 10


def test_palette_labels_and_non_jpeg_images_are_converted(tmp_path):
    root = make_voc(str(tmp_path / "voc"), train={"a_1": [1], "d_16": [16]}, val={"v_20": [20]},
                    label_dir="SegmentationClass", palette=True)
    Image.fromarray(np.tile(_colour("d_16"), (H, W, 1))).save(os.path.join(root, "JPEGImages", "d_16.jpg"),
                                                              format="PNG")  # a PNG named .jpg
    prepare_data.prepare(root, str(tmp_path / "data"), workers=1)
    [(image, label)] = record_bytes(str(tmp_path / "data/training_incremental/train_sequential_16.tfrecord"))
    source = os.path.join(root, "SegmentationClass", "d_16.png")
    # TensorFlow decodes the palette PNG to colours, hence the conversion to class ids.
    assert not np.array_equal(tf.io.decode_png(_file_bytes(source), channels=1).numpy()[..., 0], _label([16]))
    assert np.array_equal(tf.io.decode_png(label, channels=1).numpy()[..., 0], _label([16]))
    assert image.startswith(b"\xff\xd8\xff")
    assert np.abs(tf.io.decode_jpeg(image).numpy().astype(int) - _colour("d_16")).max() <= 8


def test_stale_temporaries_removed_live_ones_kept(tmp_path):
    root = make_voc(str(tmp_path / "voc"), train={"a_1": [1], "h_20": [20]}, val={"v_1": [1]})
    out = tmp_path / "data"
    stale = [out / "training_incremental" / "train_sequential_20.tfrecord.tmp-1-0",
             out / "splits" / "train_sequential_20.txt.tmp-1-1"]
    for path in stale:
        os.makedirs(path.parent, exist_ok=True)
        path.write_bytes(b"\0" * 1000)
    live = out / "validation" / "other.tfrecord"
    with artifacts.atomic_path(str(live)) as tmp:  # a writer still at work: its temporary is kept
        open(tmp, "wb").close()
        prepare_data.prepare(root, str(out), workers=1)
        assert os.path.exists(tmp)
    assert [p for p in stale if p.exists()] == []
    assert read_split(str(out), "training_incremental/train_sequential_20.tfrecord") == ["h_20"]


def test_expected_records(prepared, tmp_path):
    _, out, summary = prepared
    for path, n in summary["files"].items():
        assert prepare_data.expected_records(path) == n, path
        assert prepare_data.expected_records(path) == len(read_records(path)), path
    rel = os.path.relpath(os.path.join(out, "validation/val_3.tfrecord"))
    assert prepare_data.expected_records(rel) == 1
    assert prepare_data.expected_records(os.path.join(out, "validation/val_99.tfrecord")) is None
    assert prepare_data.expected_records(os.path.join(out, "replay_images/gan/01.tfrecord")) is None
    assert prepare_data.expected_records(os.path.join(out, "training_incremental/mixed/"
                                                           "train_disjoint_16-20_P1.0.0.2.tfrecord")) is None
    no_list = str(tmp_path / "training_first_step/train_sequential_1-10.tfrecord")
    assert prepare_data.expected_records(no_list) is None


# ------------------------------------------------------------------------------ hostile input

def test_one_bit_label_is_named(tmp_path):
    """A 1-bit PNG holds 0/1 (a binary mask), not class ids: rejected by file and fault, or skipped and
    counted with skip_bad; formerly an IndexError (boolean indexing of the relabel lookup) naming no file."""
    root = _small(tmp_path)
    Image.fromarray(_label([1, 2]) > 0).convert("1").save(os.path.join(root, "SegmentationClassAug", "b_1_2.png"))
    with pytest.raises(ValueError, match=r"b_1_2\.png: label is a 1-bit PNG \(mode 1\).*expected an 8-bit"):
        prepare_data.prepare(root, str(tmp_path / "data"))
    assert not os.path.exists(tmp_path / "data")
    summary = prepare_data.prepare(root, str(tmp_path / "skipped"), skip_bad=True)
    assert summary["bad_counts"] == {"label_mode": 1} and summary["n_train"] == 2


def test_id_list_with_byte_order_mark(tmp_path):
    """A list saved by an editor that writes a UTF-8 BOM names the same ids (not "\\ufeffa_1")."""
    root = _small(tmp_path)
    lists = os.path.join(root, "ImageSets", "Segmentation")
    for split in ("train", "val"):
        path = os.path.join(lists, split + ".txt")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        with open(path, "w", encoding="utf-8-sig") as f:
            f.write(text)
    summary = prepare_data.prepare(root, str(tmp_path / "data"))
    assert (summary["n_train"], summary["n_val"]) == (3, 1)
    assert read_split(str(tmp_path / "data"), "training_first_step/train_overlapped_1-20.tfrecord") == [
        "a_1", "b_1_2", "h_20"]


def test_list_not_utf8_is_named(tmp_path):
    root = _small(tmp_path)
    with open(os.path.join(root, "ImageSets", "Segmentation", "val.txt"), "wb") as f:
        f.write(b"v_1\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"image id list .*val\.txt is not UTF-8 text"):
        prepare_data.prepare(root, str(tmp_path / "data"))


@pytest.mark.parametrize("case", ["label_value", "one_bit", "missing_image", "empty_list"])
def test_command_line_data_error_is_one_line(tmp_path, case):
    """A fault of the data ends the script with status 2 and one line naming the file and the fault."""
    root = _small(tmp_path)
    if case == "one_bit":
        Image.new("1", (W, H)).save(os.path.join(root, "SegmentationClassAug", "b_1_2.png"))
        message = "b_1_2.png: label is a 1-bit PNG"
    elif case == "empty_list":
        open(os.path.join(root, "ImageSets", "Segmentation", "val.txt"), "w").close()
        message = "val.txt is empty"
    else:
        message = _break(root, case).replace("\\", "")
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, os.path.join(project, "prepare_data.py"), "--voc_root", root,
                          "--out_dir", str(tmp_path / "data"), "--workers", "1"], capture_output=True, text=True,
                         cwd=project)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("prepare_data.py: error: ") and message in last, run.stderr[-2000:]
