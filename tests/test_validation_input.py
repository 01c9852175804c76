"""Validation reads decoded samples kept by the process (Context.decoded_samples): the same batches, losses and
confusion matrices as the tf.data pipeline it replaced, decoded once; a file the process wrote is not read back
by check_once. Labelling (labelling.predicted) reads small files without a pipeline: the same predictions."""
import gin
import numpy as np
import pytest
import tensorflow as tf

import context as context_module
from context import Context
import data_loader
import evaluation
import labelling
import model
import training
from conftest import TINY_BINDINGS


def _tf_data_batches(paths, batch_size, mean, n_classes=21):
    """The batches of the pipeline evaluate used before (load_tfrecord "validation" + padded_batch)."""
    dataset = data_loader.load_tfrecord(paths, "validation", dataset_mean=mean, n_classes=n_classes)
    dataset = dataset.padded_batch(batch_size, padding_values={"input": 0.0, "label": tf.constant(255, tf.uint8)})
    return [(b["input"].numpy(), b["label"].numpy()) for b in dataset]


def _record(rng, h, w):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    label = rng.integers(0, 21, (h, w), dtype=np.uint8)
    label[0, :] = 255
    return data_loader.encode_example(image, label)


@pytest.fixture
def mixed_sizes(tmp_path):
    """Two labelled files of images of several sizes (a batch holds images of both files)."""
    rng = np.random.default_rng(0)
    paths = []
    for name, sizes in (("a", [(12, 9), (7, 15), (12, 9)]), ("b", [(5, 5), (16, 4)])):
        path = str(tmp_path / f"{name}.tfrecord")
        data_loader.write_tfrecord(path, [_record(rng, h, w) for h, w in sizes])
        paths.append(path)
    return paths


@pytest.mark.parametrize("batch_size", [1, 2, 4, 8])
def test_batches_are_tf_datas_padded_batches(mixed_sizes, batch_size):
    """Same images (float32 bits), labels and padding (0.0 / 255, bottom and right) as padded_batch, across
    file boundaries, the last batch short."""
    context = Context(progress_bars=False)
    samples = (s for p in mixed_sizes for s in context.decoded_samples(p, 21))
    ours = list(evaluation._padded_batches(samples, batch_size, data_loader.DEFAULT_MEAN))
    theirs = _tf_data_batches(mixed_sizes, batch_size, data_loader.DEFAULT_MEAN)
    assert len(ours) == len(theirs) == -(-5 // batch_size)
    for (images, labels), (want_images, want_labels) in zip(ours, theirs):
        assert images.dtype == np.float32 and labels.dtype == np.uint8
        np.testing.assert_array_equal(images.view(np.uint32), want_images.view(np.uint32))  # bit for bit
        np.testing.assert_array_equal(labels, want_labels)


def test_decoded_once_per_context_and_again_when_the_file_changes(mixed_sizes, monkeypatch):
    context = Context(progress_bars=False)
    calls = []
    read = data_loader.read_samples
    monkeypatch.setattr(data_loader, "read_samples", lambda *a, **k: calls.append(a[0]) or read(*a, **k))
    first = context.decoded_samples(mixed_sizes[0], 21)
    assert context.decoded_samples(mixed_sizes[0], 21) is first
    assert len(calls) == 1
    rng = np.random.default_rng(1)
    data_loader.write_tfrecord(mixed_sizes[0], [_record(rng, 3, 3)])  # replaced: decoded anew
    again = context.decoded_samples(mixed_sizes[0], 21)
    assert len(calls) == 2 and len(again) == 1 and again[0][0].shape == (3, 3, 3)


def test_samples_above_the_budget_are_not_kept(mixed_sizes, monkeypatch):
    monkeypatch.setattr(context_module, "DECODED_BUDGET_BYTES", 100)  # less than one file's samples
    context = Context(progress_bars=False)
    first = context.decoded_samples(mixed_sizes[0], 21)
    second = context.decoded_samples(mixed_sizes[0], 21)
    assert first is not second
    for (a, la), (b, lb) in zip(first, second):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_a_bad_label_value_still_fails_naming_the_file(tmp_path):
    path = str(tmp_path / "bad.tfrecord")
    data_loader.write_tfrecord(path, [data_loader.encode_example(np.zeros((4, 4, 3), np.uint8),
                                                                 np.full((4, 4), 30, np.uint8))])
    with pytest.raises(tf.errors.InvalidArgumentError, match="bad.tfrecord"):
        Context(progress_bars=False).decoded_samples(path, 21)


def test_evaluate_equals_the_tf_data_pipeline(mixed_sizes):
    """evaluate's loss and confusion matrix are those of the batches padded_batch makes of each file (a batch never
    spans two files), with or without the samples kept."""
    gin.clear_config()
    gin.parse_config([b for b in TINY_BINDINGS if b.startswith("backbone")])
    seg = model.Segmenter(21)
    classes = list(range(21))
    label_map = tf.constant(model.make_label_map(classes), tf.int32)
    losses, cm = [], np.zeros((21, 21), np.int64)
    for images, labels in [b for path in mixed_sizes for b in _tf_data_batches([path], 2, data_loader.DEFAULT_MEAN)]:
        per_image, c = evaluation._evaluate_batch(seg, seg.encode(images), tf.constant(labels), label_map, 21)
        losses += per_image.numpy().tolist()
        cm += c.numpy()
    context = Context(progress_bars=False)
    for _ in range(2):  # decoded, then kept
        loss, got = training.evaluate(seg, mixed_sizes, classes, 21, data_loader.DEFAULT_MEAN, 2, False, context)
        np.testing.assert_array_equal(got, cm)
        # the same batches, but evaluate's forward pass is traced and the reference's eager: the two may fuse and
        # round differently on another CPU kind (3.1e-8 relative with oneDNN limited to AVX2); a wrong batch moves
        # the loss by far more than float32 rounding
        assert loss == pytest.approx(float(np.mean(losses)), rel=1e-6)
    assert cm.sum() > 0


def _counting_encoder(seg, calls):
    """seg's traced encoder for evaluate (seg.compiled["encode"]), counting its calls in calls[0]."""
    traced = tf.function(seg.encode, reduce_retracing=True)

    def encode(images):
        calls[0] += 1
        return traced(images)
    seg.compiled["encode"] = encode


def test_encoder_features_are_kept_per_checkpoint_file(mixed_sizes, tmp_path, monkeypatch):
    """A network whose encoder equals a checkpoint file (its `holds`) is validated on features encoded once per
    process: the same loss and matrix as encoding at each call, encoded again when the checkpoint file changes or
    another dataset mean comes; a network that holds no checkpoint, or a file above ENCODED_FILE_BYTES, is encoded
    at every call."""
    gin.clear_config()
    gin.parse_config([b for b in TINY_BINDINGS if b.startswith("backbone")])
    classes, mean = list(range(21)), data_loader.DEFAULT_MEAN
    seg = model.Segmenter(21)
    expected = training.evaluate(seg, mixed_sizes, classes, 21, mean, 2, False, Context(progress_bars=False))
    checkpoint = tmp_path / "encoder.weights.h5"
    checkpoint.write_bytes(b"weights")
    seg.holds = (context_module.file_identity(str(checkpoint)), None)
    calls, context = [0], Context(progress_bars=False)
    _counting_encoder(seg, calls)
    per_call = 3  # batches of 2: a's 3 images in 2, b's 2 in 1

    def evaluate(mean=mean):
        return training.evaluate(seg, mixed_sizes, classes, 21, mean, 2, False, context)

    for _ in range(2):
        loss, cm = evaluate()
        assert loss == expected[0]
        np.testing.assert_array_equal(cm, expected[1])
    assert calls[0] == per_call  # encoded at the first call only
    evaluate(mean=(0.0, 0.0, 0.0))
    assert calls[0] == 2 * per_call
    checkpoint.write_bytes(b"other weights")  # another file under the same name
    seg.holds = (context_module.file_identity(str(checkpoint)), None)
    evaluate()
    assert calls[0] == 3 * per_call
    seg.holds = None
    evaluate()
    evaluate()
    assert calls[0] == 5 * per_call
    seg.holds = (context_module.file_identity(str(checkpoint)), None)
    monkeypatch.setattr(evaluation, "ENCODED_FILE_BYTES", 0)
    evaluate(mean=(1.0, 2.0, 3.0))
    evaluate(mean=(1.0, 2.0, 3.0))
    assert calls[0] == 7 * per_call


def test_kept_features_stay_under_the_budget(monkeypatch):
    """Context.encoded drops the least recently used features above ENCODED_BUDGET_BYTES."""
    context = Context(progress_bars=False)
    monkeypatch.setattr(context_module, "ENCODED_BUDGET_BYTES", 2 * 4 * 10)
    made = []

    def features(name):
        return context.encoded(name, lambda: made.append(name) or [tf.zeros([10])])

    features("a"), features("b"), features("a"), features("c")  # b is the least recently used
    features("a"), features("c"), features("b")
    assert made == ["a", "b", "c", "b"]


def test_a_written_file_is_not_read_back(tmp_path, monkeypatch):
    path = str(tmp_path / "written.tfrecord")
    rng = np.random.default_rng(0)
    n = data_loader.write_tfrecord(path, [_record(rng, 4, 4) for _ in range(3)])
    context = Context(progress_bars=False)
    context.note_written(path, n)
    monkeypatch.setattr(data_loader, "check_tfrecord", lambda *a, **k: pytest.fail("read back"))
    assert context.check_once(path, 21) == 3
    data_loader.write_tfrecord(path, [_record(rng, 4, 4)])  # changed since: checked again
    with pytest.raises(pytest.fail.Exception, match="read back"):
        context.check_once(path, 21)


@pytest.mark.parametrize("batch_size", [1, 2, 4])
@pytest.mark.parametrize("eager", [True, False])
def test_predicted_is_the_padded_batch_pipelines(mixed_sizes, monkeypatch, batch_size, eager):
    """labelling.predicted gives the JPEG bytes, samples and predictions of the pipeline it replaced
    (load_tfrecord + padded_batch + predict_ids, each prediction cropped back), images of several sizes in a
    batch, read record by record (a small file) or through tf.data."""
    monkeypatch.setattr(data_loader, "EAGER_FILE_BYTES", 2 ** 40 if eager else 0)
    gin.clear_config()
    gin.parse_config([b for b in TINY_BINDINGS if b.startswith("backbone")])
    seg = model.Segmenter(21)
    for path in mixed_sizes:
        ours = list(labelling.predicted(seg, path, "validation+", data_loader.DEFAULT_MEAN, batch_size, 21))
        theirs = []
        samples = data_loader.load_tfrecord([path], "validation+", dataset_mean=data_loader.DEFAULT_MEAN)
        for batch in samples.map(lambda d: dict(d, size=tf.shape(d["input"])[:2])).padded_batch(batch_size):
            predictions = seg.predict_ids(batch.pop("input")).numpy().astype(np.uint8)
            for i, (h, w) in enumerate(batch["size"].numpy()):
                theirs.append(({k: batch[k][i, :h, :w].numpy() for k in ("label", "rgb_input")},
                               predictions[i, :h, :w]))
        jpegs = [tf.train.Example.FromString(r.numpy()).features.feature["input"].bytes_list.value[0]
                 for r in tf.data.TFRecordDataset(path)]
        assert [jpeg for jpeg, _, _ in ours] == jpegs
        assert len(ours) == len(theirs) == len(jpegs)
        for (_, sample, prediction), (want, want_prediction) in zip(ours, theirs):
            assert sorted(sample) == ["label", "rgb_input"]
            for k in want:
                np.testing.assert_array_equal(sample[k], want[k])
            assert prediction.dtype == np.uint8
            np.testing.assert_array_equal(prediction, want_prediction)
