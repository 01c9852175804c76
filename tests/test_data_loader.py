"""Tests of data_loader.py on tiny record files written by the tests."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import data_loader as dl

MEAN = (10.0, 20.0, 30.0)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write(path, examples):
    dl.write_tfrecord(str(path), examples)
    return str(path)


def _constant_file(path, cls, n=6, h=40, w=40):
    """Records whose labels are all `cls` (no void)."""
    return _write(path, [dl.encode_example(_image(h, w, i), np.full((h, w), cls, np.uint8))
                         for i in range(n)])


# ---------------------------------------------------------------------------------------------- round trip

def test_record_round_trip(tmp_path):
    image = np.zeros((12, 16, 3), np.uint8)
    image[:, :8] = (200, 100, 50)  # flat areas survive JPEG almost exactly
    label = np.zeros((12, 16), np.uint8)
    label[2:5, 3:9] = 7
    label[0] = 255
    path = _write(tmp_path / "a.tfrecord", [dl.encode_example(image, label, quality=100)])

    raw = next(iter(tf.data.TFRecordDataset(path))).numpy()
    feats = tf.train.Example.FromString(raw).features.feature
    assert sorted(feats.keys()) == ["input", "label"]
    assert feats["input"].bytes_list.value[0][:3] == b"\xff\xd8\xff"  # JPEG
    assert feats["label"].bytes_list.value[0][:4] == b"\x89PNG"

    (sample,) = list(dl.load_tfrecord(path, "validation+", dataset_mean=MEAN))
    assert sample["label"].dtype == tf.uint8 and sample["label"].shape == (12, 16)
    np.testing.assert_array_equal(sample["label"].numpy(), label)
    rgb = sample["rgb_input"].numpy()
    assert rgb.dtype == np.uint8 and rgb.shape == (12, 16, 3)
    assert np.abs(rgb.astype(int) - image).max() <= 8
    assert sample["input"].dtype == tf.float32
    np.testing.assert_allclose(sample["input"].numpy(), rgb - np.array(MEAN, np.float32))

    (val,) = list(dl.load_tfrecord([path], "validation", dataset_mean=MEAN))
    assert sorted(val.keys()) == ["input", "label"]
    assert dl.count_records(path) == 1
    assert dl.check_tfrecord(path, n_classes=21) == 1


def test_unlabelled_images_mode(tmp_path):
    path = _write(tmp_path / "img.tfrecord", [dl.encode_example(_image(9, 11, i)) for i in range(3)])
    samples = list(dl.load_tfrecord(path, "images", dataset_mean=MEAN))
    assert len(samples) == 3
    assert sorted(samples[0].keys()) == ["input", "rgb_input"]
    assert samples[0]["input"].shape == (9, 11, 3)
    assert dl.check_tfrecord(path, require_labels=False) == 3
    with pytest.raises(ValueError, match=r"img\.tfrecord: record 0: no 'label'"):
        dl.check_tfrecord(path)


def test_folder_of_files_and_palette_labels(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for i, cls in enumerate([3, 15]):
        Image.fromarray(_image(10, 12, i)).save(tmp_path / "img" / f"{i:04d}.jpg")
        lab = Image.fromarray(np.full((10, 12), cls, np.uint8), mode="L").convert("P")
        lab.putpalette([0, 0, 0] + [128, 0, 0] * 255)  # VOC-style palette PNG: stored ids are indices
        lab.save(tmp_path / "lab" / f"{i:04d}.png")
    n = dl.tfrecord_from_folder([str(tmp_path / "img") + "/", str(tmp_path / "lab") + "/"],
                                str(tmp_path / "out"), include_labels=True)
    assert n == 2
    labels = [s["label"].numpy() for s in dl.load_tfrecord(str(tmp_path / "out.tfrecord"), "validation")]
    assert [np.unique(l).tolist() for l in labels] == [[3], [15]]

    os.rename(tmp_path / "lab" / "0001.png", tmp_path / "lab" / "0002.png")
    with pytest.raises(ValueError, match="names must match"):
        dl.tfrecord_from_folder([str(tmp_path / "img"), str(tmp_path / "lab")], str(tmp_path / "x"), True)


# -------------------------------------------------------------------------------------------- augmentation

def test_crop_pad_puts_255_in_padding():
    image = tf.fill([6, 5, 3], 7.0)  # mean-subtracted value 7 everywhere
    label = tf.ones([6, 5, 1], tf.uint8)
    for s in range(10):
        img, lab = dl.augment(image, label, 32, tf.constant([s, 1], tf.int64))
        img, lab = img.numpy(), lab.numpy()
        assert img.shape == (32, 32, 3) and lab.shape == (32, 32) and lab.dtype == np.uint8
        assert set(np.unique(lab)) == {1, 255}
        np.testing.assert_array_equal(img[lab == 255], 0.0)  # image padding: 0 after mean subtraction
        np.testing.assert_allclose(img[lab == 1], 7.0, rtol=1e-6)
        rows, cols = np.nonzero(lab == 1)
        assert rows.min() == 0 and cols.min() == 0  # padding at bottom/right, as the original
        h, w = rows.max() + 1, cols.max() + 1
        assert (lab == 1).sum() == h * w and 3 <= h <= 9 and 2 <= w <= 7  # scale in [0.5, 1.5)


def test_crop_of_large_image_and_mirror():
    label = np.zeros((60, 80, 1), np.uint8)
    label[:, 40:] = 1  # left half 0, right half 1
    image = tf.constant(np.repeat(label.astype(np.float32), 3, axis=2))
    left_values = set()
    for s in range(40):
        img, lab = dl.augment(image, tf.constant(label), 20, tf.constant([s, 0], tf.int64))
        lab = lab.numpy()
        assert lab.shape == (20, 20) and 255 not in lab
        # image and label moved together (bilinear vs nearest may differ at the edge column only)
        assert (np.abs(img.numpy()[..., 0] - lab) > 0.5).any(axis=0).sum() <= 1
        left_values.add(int(lab[0, 0]))
        # rows are identical columns: a horizontal flip only, never a vertical one
        assert (lab == lab[0]).all()
    assert left_values == {0, 1}  # both orientations (and crop positions) occur


# --------------------------------------------------------------------------------------------------- blend

@pytest.mark.parametrize("ratio_new,ratio_old", [(3, 1), (2, 2), (0, 4), (4, 0)])
def test_blend_gives_exact_ratio(tmp_path, ratio_new, ratio_old):
    new = _constant_file(tmp_path / "new.tfrecord", 1)
    old = [_constant_file(tmp_path / "old_a.tfrecord", 2, n=2),
           _constant_file(tmp_path / "old_b.tfrecord", 2)]
    ds = dl.training_dataset(new, old, ratio_new, ratio_old, batch_size=4, train_image_size=16,
                             dataset_mean=MEAN, seed=1, buffer_size=8)
    for images, labels in ds.take(6):  # more batches than records: repeat works
        assert images.shape == (4, 16, 16, 3) and images.dtype == tf.float32
        assert labels.shape == (4, 16, 16) and labels.dtype == tf.uint8
        kinds = [int(l.numpy().flat[0]) for l in labels]
        assert all(len(np.unique(l)) == 1 for l in labels.numpy())
        assert kinds == [1] * ratio_new + [2] * ratio_old


def _replay_classes(tmp_path, sequential_files, n_classes=6, per_class=30, buffer_size=40, samples=24):
    """The classes of the first `samples` replay samples, replay files of `per_class` records per class."""
    old = [_constant_file(tmp_path / f"old_{c:02d}.tfrecord", c, n=per_class, h=8, w=8)
           for c in range(1, n_classes + 1)]
    ds = dl.training_dataset(None, old, 0, 4, batch_size=4, train_image_size=8, dataset_mean=MEAN, seed=3,
                             buffer_size=buffer_size, sequential_files=sequential_files)
    return [int(l.flat[0]) for _, labels in ds.take(samples // 4) for l in labels.numpy()]


def test_replay_stream_in_the_original_order(tmp_path):
    """The original (files one after another, record shuffle buffer B): the i-th sample is one of the first
    B + i records of the stream, i.e. of class 1 + (B + i - 1) // per_class at most. Here B = 40 and 30
    records a class: the first 24 samples come from classes 1-3 only, most from the first two."""
    classes = _replay_classes(tmp_path, sequential_files=True)
    for i, c in enumerate(classes):  # the rule, simulated independently of tf.data
        assert 1 <= c <= 1 + (40 + i - 1) // 30, (i, c, classes)
    assert set(classes) <= {1, 2, 3} and classes.count(1) + classes.count(2) >= 20


def test_replay_stream_balanced(tmp_path):
    """The switch: files round-robin, so the first samples hold every class."""
    classes = _replay_classes(tmp_path, sequential_files=False)
    assert set(classes) == set(range(1, 7))


def test_batches_shuffled_whole(tmp_path):
    """The original's first step and helpers: batches of consecutive records, shuffled as wholes."""
    path = _write(tmp_path / "new.tfrecord",
                  [dl.encode_example(_image(8, 8, i), np.full((8, 8), i, np.uint8)) for i in range(12)])
    ds = dl.training_dataset(path, None, 4, 4, batch_size=3, train_image_size=8, dataset_mean=MEAN, seed=0,
                             shuffle_batches=True)
    batches = [tuple(int(l.flat[0]) for l in labels.numpy()) for _, labels in ds.take(8)]
    groups = {(0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11)}
    assert set(batches[:4]) == groups and set(batches[4:]) == groups  # every epoch: the same groups
    assert batches[:4] != sorted(batches[:4]) or batches[4:] != sorted(batches[4:])  # in shuffled order
    with pytest.raises(ValueError, match="new samples only"):
        dl.training_dataset(path, [path], 4, 4, batch_size=3, train_image_size=8, shuffle_batches=True)


def test_no_old_paths_means_new_only(tmp_path):
    new = _constant_file(tmp_path / "new.tfrecord", 1)
    ds = dl.training_dataset(new, None, 2, 2, batch_size=2, train_image_size=8, seed=0)
    for _, labels in ds.take(3):
        assert set(np.unique(labels.numpy())) == {1}
    with pytest.raises(ValueError, match="no training data"):
        dl.training_dataset(new, [], 0, 4, batch_size=2, train_image_size=8)
    with pytest.raises(ValueError, match=">= 0"):
        dl.training_dataset(new, None, -1, 2, batch_size=2, train_image_size=8)


def test_seed_makes_run_repeatable(tmp_path):
    new = _write(tmp_path / "new.tfrecord",
                 [dl.encode_example(_image(30, 30, i), np.full((30, 30), i, np.uint8)) for i in range(8)])
    old = _constant_file(tmp_path / "old.tfrecord", 20)

    def first(seed):
        ds = dl.training_dataset(new, old, 2, 2, batch_size=4, train_image_size=24, seed=seed, buffer_size=8)
        return [(i.numpy(), l.numpy()) for i, l in ds.take(4)]

    a, b, c = first(5), first(5), first(6)
    for (ia, la), (ib, lb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
    assert any(not np.array_equal(ia, ic) for (ia, _), (ic, _) in zip(a, c))
    order = [int(l[0].flat[0]) for _, l in a] + [int(l[1].flat[0]) for _, l in a]
    assert order != sorted(order)  # shuffled

    t1 = [s["input"].numpy() for s in dl.load_tfrecord(new, "training", 16, seed=3)]
    t2 = [s["input"].numpy() for s in dl.load_tfrecord(new, "training", 16, seed=3)]
    assert all(np.array_equal(x, y) for x, y in zip(t1, t2)) and len(t1) == 8


# ----------------------------------------------------------------------------------------------- bad input

def test_missing_tfrecord(tmp_path):
    missing = str(tmp_path / "nope.tfrecord")
    for call in (lambda: dl.load_tfrecord([missing], "validation"),
                 lambda: dl.training_dataset(missing, None, 1, 0, 1, 8),
                 lambda: dl.count_records(missing),
                 lambda: dl.check_tfrecord(missing)):
        with pytest.raises(FileNotFoundError, match="nope.tfrecord"):
            call()


def test_bad_mode_and_mean(tmp_path):
    path = _constant_file(tmp_path / "a.tfrecord", 1, n=1)
    with pytest.raises(ValueError, match="mode"):
        dl.load_tfrecord(path, "resize_images")
    with pytest.raises(ValueError, match="dataset_mean"):
        dl.load_tfrecord(path, "validation", dataset_mean=(1.0, 2.0))
    with pytest.raises(ValueError, match="train_image_size"):
        dl.load_tfrecord(path, "training")


def _good(i):
    return dl.encode_example(_image(8, 8, i), np.zeros((8, 8), np.uint8))


def test_corrupt_record(tmp_path):
    path = _write(tmp_path / "c.tfrecord", [_good(i) for i in range(3)])
    data = bytearray(open(path, "rb").read())
    record_len = len(data) // 3
    data[record_len + record_len // 2] ^= 0xFF  # inside record 1's payload: CRC mismatch
    open(path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match=r"c\.tfrecord: record 1: corrupt"):
        dl.check_tfrecord(path, 21)
    with pytest.raises(ValueError, match=r"c\.tfrecord: record 1: corrupt"):
        dl.count_records(path)
    with pytest.raises(tf.errors.OpError):
        list(dl.load_tfrecord(path, "validation"))

    truncated = str(tmp_path / "t.tfrecord")
    open(truncated, "wb").write(open(path, "rb").read()[:record_len + 10])
    with pytest.raises(ValueError, match=r"t\.tfrecord: record 1: corrupt"):
        dl.check_tfrecord(truncated)


def test_record_that_is_not_an_example(tmp_path):
    path = _write(tmp_path / "n.tfrecord", [_good(0), b"\x0a\xff\xff\xff garbage"])
    with pytest.raises(ValueError, match=r"n\.tfrecord: record 1: not a tf.train.Example"):
        dl.check_tfrecord(path)


def test_undecodable_image(tmp_path):
    label_png = tf.io.encode_png(np.zeros((8, 8, 1), np.uint8)).numpy()
    path = _write(tmp_path / "u.tfrecord",
                  [_good(0), _good(1), dl.serialize_example(b"\xff\xd8\xffnot really a jpeg", label_png)])
    with pytest.raises(ValueError, match=r"u\.tfrecord: record 2: the image cannot be decoded"):
        dl.check_tfrecord(path, 21)
    with pytest.raises(tf.errors.InvalidArgumentError):
        list(dl.load_tfrecord(path, "validation"))


def test_label_of_other_size(tmp_path):
    label_png = tf.io.encode_png(np.zeros((8, 9, 1), np.uint8)).numpy()
    image_jpg = tf.io.encode_jpeg(_image(8, 8)).numpy()
    path = _write(tmp_path / "s.tfrecord", [_good(0), dl.serialize_example(image_jpg, label_png)])
    with pytest.raises(ValueError, match=r"s\.tfrecord: record 1: label size \(8, 9\) differs"):
        dl.check_tfrecord(path, 21)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)label size differs.*s\.tfrecord.*\[1\]"):
        list(dl.load_tfrecord(path, "validation"))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)label size differs.*s\.tfrecord"):
        list(dl.training_dataset(path, None, 1, 0, 2, 8, seed=0).take(1))
    with pytest.raises(ValueError, match="label must be uint8"):
        dl.encode_example(_image(8, 8), np.zeros((8, 9), np.uint8))


def test_label_value_out_of_range(tmp_path):
    bad = np.zeros((8, 8), np.uint8)
    bad[3, 3] = 30
    path = _write(tmp_path / "v.tfrecord",
                  [_good(0), _good(1), _good(2), dl.encode_example(_image(8, 8), bad)])
    with pytest.raises(ValueError, match=r"v\.tfrecord: record 3: label values \[30\] are neither"):
        dl.check_tfrecord(path, n_classes=21)
    assert dl.check_tfrecord(path, n_classes=31) == 4
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)label value.*v\.tfrecord.*\[3\].*\[30\]"):
        list(dl.load_tfrecord(path, "validation", n_classes=21))
    assert len(list(dl.load_tfrecord(path, "validation", n_classes=None))) == 4


def test_voc_palette():
    palette = dl.voc_palette()
    assert tuple(palette[1]) == (128, 0, 0) and tuple(palette[15]) == (192, 128, 128)
    assert tuple(palette[255]) == (224, 224, 192)
    assert dl.colorize([[255]]).tolist() == [[[224, 224, 192]]]
    assert dl.VOC_CLASSES[15] == "person" and len(dl.VOC_CLASSES) == 21


# ------------------------------------------------------------------------------- many small files (issue 24)

@pytest.fixture(params=["eager", "pipeline"])
def reading(request, monkeypatch):
    """Both ways of read_samples and check_tfrecord: record by record (a small file) or through tf.data (one
    above EAGER_FILE_BYTES)."""
    monkeypatch.setattr(dl, "EAGER_FILE_BYTES", 2 ** 40 if request.param == "eager" else 0)
    return request.param


def _mixed_file(path):
    rng = np.random.default_rng(0)
    sizes = [(12, 9), (7, 15), (12, 9)]
    return _write(path, [dl.encode_example(_image(h, w, i), rng.integers(0, 21, (h, w), dtype=np.uint8))
                         for i, (h, w) in enumerate(sizes)])


@pytest.mark.parametrize("mode", ["validation", "validation+", "images"])
def test_read_samples_are_load_tfrecords(tmp_path, reading, mode):
    """Bit for bit the samples of load_tfrecord, with each record's stored JPEG."""
    path = _mixed_file(tmp_path / "m.tfrecord")
    ours = list(dl.read_samples(path, mode, MEAN, 21))
    theirs = list(dl.load_tfrecord(path, mode, dataset_mean=MEAN).as_numpy_iterator())
    jpegs = [tf.train.Example.FromString(r.numpy()).features.feature["input"].bytes_list.value[0]
             for r in tf.data.TFRecordDataset(path)]
    assert [jpeg for jpeg, _ in ours] == jpegs and len(ours) == 3
    for (_, sample), want in zip(ours, theirs):
        assert sorted(sample) == sorted(want)
        for k in want:
            assert sample[k].dtype == want[k].dtype and sample[k].tobytes() == want[k].tobytes(), k
    with pytest.raises(ValueError, match="mode"):
        next(dl.read_samples(path, "training"))


def test_read_samples_fail_as_load_tfrecord(tmp_path, reading):
    bad = np.zeros((8, 8), np.uint8)
    bad[3, 3] = 30
    path = _write(tmp_path / "v.tfrecord", [_good(0), dl.encode_example(_image(8, 8), bad)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)label value.*v\.tfrecord.*\[1\].*\[30\]"):
        list(dl.read_samples(path, "validation", MEAN, 21))
    assert len(list(dl.read_samples(path, "validation", MEAN, None))) == 2
    with pytest.raises(FileNotFoundError, match="nope.tfrecord"):
        next(dl.read_samples(str(tmp_path / "nope.tfrecord"), "validation"))


@pytest.mark.parametrize("check", [test_unlabelled_images_mode, test_corrupt_record, test_record_that_is_not_an_example,
                                   test_undecodable_image, test_label_of_other_size, test_label_value_out_of_range])
def test_check_tfrecord_both_ways(tmp_path, reading, check):
    """check_tfrecord counts and locates bad records alike, record by record or through tf.data."""
    check(tmp_path)


def test_training_samples_are_the_augmentation_of_their_seed(tmp_path):
    """The traced-once training map gives what augment gives for each record and its seed (seed, 2 * counter)."""
    path = _mixed_file(tmp_path / "m.tfrecord")
    samples = list(dl.load_tfrecord(path, "training", 16, dataset_mean=MEAN, seed=7))
    for i, raw in enumerate(tf.data.TFRecordDataset(path)):
        image, label = dl._decode(tf.constant(path), tf.constant(i, tf.int64), raw, True, 21)
        image, label = dl.augment(dl._subtract_mean(image, MEAN), label, 16, tf.constant([7, 2 * i], tf.int64))
        assert samples[i]["input"].numpy().tobytes() == image.numpy().tobytes()
        np.testing.assert_array_equal(samples[i]["label"], label)


def test_decoding_is_traced_once_per_process(tmp_path):
    """Pipelines and reads of new files reuse the traced map functions (a sweep reads hundreds of small files)."""
    paths = [_constant_file(tmp_path / f"{i}.tfrecord", 1, n=2, h=8, w=8) for i in range(3)]
    mean = (1.5, 2.5, 3.5)  # a mean no other test uses: the count starts here
    for path in paths:
        list(dl.load_tfrecord(path, "validation", dataset_mean=mean))
        list(dl.read_samples(path, "validation", mean))
        list(dl.load_tfrecord([path, path], "training", 8, dataset_mean=list(mean), seed=0))
    assert dl._sample_fn("validation", *dl._key(mean, 21)).experimental_get_tracing_count() == 1
    assert dl._training_fn(8, *dl._key(mean, 21)).experimental_get_tracing_count() == 1


def test_training_input_without_graph_rewrites_gives_the_same_batches(tmp_path, monkeypatch):
    """training_dataset turns tf.data's default graph rewrites off (data_loader.INPUT_GRAPH_REWRITES) to start
    sooner: the batches, new and replay interleaved through the original's buffer, are those with the rewrites."""
    new = _mixed_file(tmp_path / "new.tfrecord")
    old = [_constant_file(tmp_path / f"old{c}.tfrecord", c, n=5, h=20, w=20) for c in (1, 2, 3)]

    def batches():
        ds = dl.training_dataset([new], old, 2, 2, 4, 16, MEAN, seed=3, n_classes=21, sequential_files=True,
                                 buffer_size=10)
        assert ds.options().experimental_optimization.apply_default_optimizations is dl.INPUT_GRAPH_REWRITES
        return [(x.numpy().tobytes(), y.numpy().tobytes()) for x, y in ds.take(12)]
    assert not dl.INPUT_GRAPH_REWRITES
    without = batches()
    monkeypatch.setattr(dl, "INPUT_GRAPH_REWRITES", True)
    assert batches() == without
    assert len(set(without)) > 1  # the batches differ from one another: the comparison sees the order
