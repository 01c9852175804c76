"""Tests of model.py on tiny networks (units [1, 1, 1, 1] or [1, 2, 1, 1], width 1/16) and small images."""

import os
import subprocess
import sys

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import losses
import model
from conftest import write_tf1_checkpoint

WIDTH = 1 / 16
BN_VARS = ("gamma", "beta", "moving_mean", "moving_variance")


@pytest.fixture(autouse=True)
def seed():
    keras.utils.set_random_seed(0)


@pytest.fixture
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _tiny(n_outputs=21, class_ids=None, units=(1, 1, 1, 1)):
    """A Segmenter on a tiny encoder, built without gin so that other test files' bindings do not matter."""
    return model.Segmenter(n_outputs, class_ids, encoder=model.build_encoder(units=units, width=WIDTH))


def _batch(n=2, size=33, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 50, (n, size, size, 3)).astype(np.float32)
    labels = rng.integers(0, 21, (n, size, size)).astype(np.uint8)
    labels[:, :4] = 255
    return images, labels


def _values(variables):
    return [v.numpy().copy() for v in variables]


def _trainer(seg, train_encoder, classes=range(16), lr=1e-2, l2=1e-4):
    return model.Trainer(seg, model.make_label_map(list(classes)), model.poly_schedule(lr, lr / 100, 100),
                         momentum=0.9, l2_decay=l2, train_encoder=train_encoder)


def test_output_stride_8_and_shapes(clean_gin):
    gin.parse_config(f"backbone.units = [1, 1, 1, 1]\nbackbone.width = {WIDTH}")  # shrinks the default network
    seg = model.Segmenter(21)
    images = np.zeros((1, 321, 321, 3), np.float32)
    assert tuple(seg.encoder(images).shape) == (1, 41, 41, int(2048 * WIDTH))
    assert tuple(seg(images).shape) == (1, 321, 321, 21)
    assert tuple(seg.encoder(np.zeros((2, 50, 75, 3), np.float32)).shape)[:3] == (2, 7, 10)
    assert tuple(seg(np.zeros((2, 50, 75, 3), np.float32)).shape) == (2, 50, 75, 21)
    assert seg.encoder.get_layer("block3_unit_1_conv2").dilation_rate == (2, 2)
    assert seg.encoder.get_layer("block4_unit_1_conv2").dilation_rate == (4, 4)
    assert [seg.decoder.get_layer(f"aspp_conv{i}").dilation_rate[0] for i in range(1, 5)] == [6, 12, 18, 24]


def test_default_backbone_is_resnet_101(clean_gin):
    encoder = model.build_encoder()
    names = [name for _, name in model.encoder_tf1_names(encoder)]
    assert encoder.output_shape[-1] == 2048
    assert sum(name.endswith("/weights") for name in names) == 1 + 3 * (3 + 4 + 23 + 3) + 4
    assert "resnet_v1_101/block3/unit_23/bottleneck_v1/conv3/BatchNorm/moving_variance" in names
    assert "resnet_v1_101/block3/unit_24/bottleneck_v1/conv1/weights" not in names


@pytest.mark.parametrize("train_batch_norm", [True, False])
def test_batch_norm_in_a_full_step(train_batch_norm):
    """Moving statistics never change and batch norm runs in inference mode; gamma and beta train at step 0
    by default (the original's var_list) and stay fixed with train_batch_norm=False."""
    seg = _tiny()
    layers = [layer for layer in seg.encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(layers) == 1 + 3 * 4 + 4
    stats = [v for layer in layers for v in (layer.moving_mean, layer.moving_variance)]
    scales = model.batch_norm_scales(seg.encoder)
    assert len(scales) == 2 * len(layers)
    for v in stats + scales:  # Non-trivial statistics, so that a training-mode batch norm would change outputs.
        v.assign(np.random.uniform(0.5, 1.5, v.shape).astype(np.float32))
    images, labels = _batch()
    before_stats, before_scales = _values(stats), _values(scales)
    kernels = [layer.kernel for layer in seg.encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    before_kernels = _values(kernels)
    logits_before = seg(images).numpy()
    np.testing.assert_allclose(seg(images, training=True).numpy(), logits_before, rtol=1e-5, atol=1e-5)
    trainer = model.Trainer(seg, model.make_label_map(list(range(16))), 1e-2, train_encoder=True,
                            train_batch_norm=train_batch_norm)
    trainer.train_step(images, labels)
    for a, b in zip(before_stats, _values(stats)):
        np.testing.assert_array_equal(a, b)
    changed = [not np.array_equal(a, b) for a, b in zip(before_scales, _values(scales))]
    assert all(changed) if train_batch_norm else not any(changed)
    assert all(not np.array_equal(a, b) for a, b in zip(before_kernels, _values(kernels)))


def _map_casts(layer, dtype):
    """Cast ops of a feature map (rank 4) in the traced call of `layer` on a [2, 9, 9, 8] input of `dtype`."""
    graph = tf.function(layer.__call__).get_concrete_function(tf.TensorSpec((2, 9, 9, 8), dtype)).graph
    return [op for op in graph.get_operations() if op.type == "Cast" and op.outputs[0].shape.rank == 4]


def test_batch_norm_is_keras_in_float32_and_one_multiply_add_in_bfloat16():
    x = np.random.default_rng(0).normal(0, 3, (2, 9, 9, 8)).astype(np.float32)
    weights = [np.linspace(0.5, 1.5, 8), np.linspace(-0.3, 0.3, 8), np.linspace(-1, 1, 8), np.linspace(0.2, 2, 8)]

    def layers(dtype=None):
        built = (model.BatchNormalization(epsilon=model.BN_EPSILON, dtype=dtype),
                 keras.layers.BatchNormalization(epsilon=model.BN_EPSILON, dtype=dtype))
        for layer in built:
            layer.build(x.shape)
            layer.set_weights([w.astype(np.float32) for w in weights])
        return built

    ours, theirs = layers()
    with tf.GradientTape(persistent=True) as tape:
        y_ours, y_theirs = ours(x), theirs(x)
        loss_ours, loss_theirs = tf.reduce_sum(y_ours ** 2), tf.reduce_sum(y_theirs ** 2)
    np.testing.assert_array_equal(y_ours.numpy(), y_theirs.numpy())  # float32: the same arithmetic
    for a, b in zip(tape.gradient(loss_ours, [ours.gamma, ours.beta]),
                    tape.gradient(loss_theirs, [theirs.gamma, theirs.beta])):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(ours(x, training=True).numpy(), theirs(x, training=True).numpy())

    ours, theirs = layers("mixed_bfloat16")
    assert not _map_casts(ours, tf.bfloat16) and len(_map_casts(theirs, tf.bfloat16)) == 2
    y = ours(tf.cast(x, tf.bfloat16))
    assert y.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), y_theirs.numpy(), rtol=2e-2, atol=2e-2)


def test_decoder_only_step_leaves_encoder_bit_identical():
    seg = _tiny()
    images, labels = _batch()
    trainer = _trainer(seg, train_encoder=False)
    assert {id(v) for v in trainer.variables} == {id(v) for v in seg.decoder.trainable_variables}
    encoder_before, decoder_before = _values(seg.encoder.weights), _values(seg.decoder.weights)
    for _ in range(2):
        trainer.train_step(images, labels)
    for a, b in zip(encoder_before, _values(seg.encoder.weights)):
        np.testing.assert_array_equal(a, b)
    assert all(not np.array_equal(a, b) for a, b in zip(decoder_before, _values(seg.decoder.weights)))


def test_masked_cross_entropy_hand_made():
    logits = tf.constant([[[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[0.0, 5.0, 5.0], [9.0, 9.0, 9.0]]]])
    # Stored labels: 0, void, 1 and 2; class 2 is not one of the stage's classes [0, 1].
    label_map = model.make_label_map([0, 1])
    targets = tf.gather(label_map, tf.constant([[[0, 255], [1, 2]]]))
    assert targets.numpy().tolist() == [[[0, 255], [1, 255]]]
    total, count = losses.masked_cross_entropy(logits, targets)
    expected = -np.log(np.exp(2) / (np.exp(2) + 2)) - np.log(np.exp(5) / (1 + 2 * np.exp(5)))
    assert float(count) == 2
    np.testing.assert_allclose(float(total), expected, rtol=1e-6)


def test_step_loss_is_mean_over_stage_classes_only():
    seg = _tiny()
    images, labels = _batch()
    labels[0, 10:, :] = 18  # a class of a later step: ignored like void
    logits = seg(images).numpy().astype(np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = labels < 16
    expected = -np.take_along_axis(log_p, labels[..., None].astype(int) % 21, -1)[..., 0][valid].mean()
    out = _trainer(seg, train_encoder=True).train_step(images, labels)
    np.testing.assert_allclose(float(out["loss"]), expected, rtol=1e-5)


def test_helper_label_map_follows_the_original():
    label_map = model.make_label_map([0, 16, 17], helper=True)
    assert label_map[[0, 16, 17, 3, 18, 255]].tolist() == [0, 1, 2, 0, 0, 0]
    main = model.make_label_map(range(16))
    assert main[[0, 5, 15, 16, 20, 255]].tolist() == [0, 5, 15, 255, 255, 255]
    with pytest.raises(ValueError, match="300"):
        model.make_label_map([0, 300])
    seg = _tiny(3, [0, 16, 17])
    with pytest.raises(ValueError, match=r"bad values \[3, 4"):
        model.Trainer(seg, main, 1e-3)


def test_l2_term_value():
    seg = _tiny()
    l2 = 5e-3
    full, decoder_only = _trainer(seg, True, l2=l2), _trainer(seg, False, l2=l2)
    convs = [layer.kernel.numpy() for m in (seg.encoder, seg.decoder) for layer in m.layers
             if isinstance(layer, keras.layers.Conv2D)]
    decoder = [seg.decoder.get_layer(f"aspp_conv{i}").kernel.numpy() for i in range(1, 5)]
    np.testing.assert_allclose(float(full.l2_loss()), l2 * sum((k ** 2).sum() for k in convs) / 2, rtol=1e-5)
    np.testing.assert_allclose(float(decoder_only.l2_loss()), l2 * sum((k ** 2).sum() for k in decoder) / 2,
                               rtol=1e-5)
    images, labels = _batch(1)
    np.testing.assert_allclose(float(decoder_only.train_step(images, labels)["l2"]),
                               l2 * sum((k ** 2).sum() for k in decoder) / 2, rtol=1e-5)


def test_learning_rate_against_the_formula():
    initial, final, decay_steps, power = 5e-4, 5e-6, 15000, 0.9

    def formula(step, start=0, floor=final):
        s = min(max(step - start, 0), decay_steps)
        return (initial - final) * (1 - s / decay_steps) ** power + floor

    schedule = model.poly_schedule(initial, final, decay_steps, power)
    keras_poly = keras.optimizers.schedules.PolynomialDecay(initial, decay_steps, final, power)
    for step in (0, 7500, decay_steps - 1, decay_steps, decay_steps + 10):
        np.testing.assert_allclose(float(schedule(step)), formula(step), rtol=1e-5)
        np.testing.assert_allclose(float(keras_poly(step)), formula(step), rtol=1e-5)
    shifted = model.poly_schedule(initial, final, decay_steps, power, start_decay_step=100, floor=1e-6)
    for step in (0, 100, 7600, decay_steps + 100):
        np.testing.assert_allclose(float(shifted(step)), formula(step, 100, 1e-6), rtol=1e-5)
    assert float(schedule(0)) > float(schedule(7500)) > float(schedule(decay_steps))
    with pytest.raises(ValueError, match="decay_steps"):
        model.poly_schedule(initial, final, 0)


def test_reset_trainer_equals_a_new_trainer():
    """A reset Trainer (new label map, schedule, optimizer state) trains as a new one, on one traced step."""
    images, labels = _batch()
    seg_a, seg_b = _tiny(), _tiny()
    for a, b in zip(seg_a.encoder.weights + seg_a.decoder.weights, seg_b.encoder.weights + seg_b.decoder.weights):
        b.assign(a)
    stages = [(range(11), model.poly_schedule(1e-2, 1e-4, 100)), (range(16), model.poly_schedule(2e-2, 1e-4, 7))]
    kept = model.Trainer(seg_a, model.make_label_map(list(stages[0][0])), stages[0][1], train_encoder=False)
    losses_a, losses_b = [], []
    for k, (classes, schedule) in enumerate(stages):
        if k:
            kept.reset(model.make_label_map(list(classes)), schedule)
        new = model.Trainer(seg_b, model.make_label_map(list(classes)), schedule, train_encoder=False)
        for _ in range(3):
            losses_a += [float(v) for v in kept.train_step(images, labels).values()]
            losses_b += [float(v) for v in new.train_step(images, labels).values()]
    assert losses_a == pytest.approx(losses_b, rel=1e-6)
    for a, b in zip(seg_a.decoder.weights, seg_b.decoder.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    assert kept._step.experimental_get_tracing_count() == 1
    with pytest.raises(ValueError, match="label_map"):
        kept.reset(np.full(256, 21), 1e-3)


def test_trainer_reports_the_rate_it_uses():
    seg = _tiny()
    trainer = _trainer(seg, train_encoder=False, lr=1e-3)
    images, labels = _batch(1)
    rates = [float(trainer.train_step(images, labels)["lr"]) for _ in range(3)]
    schedule = model.poly_schedule(1e-3, 1e-5, 100)
    np.testing.assert_allclose(rates, [float(schedule(s)) for s in range(3)], rtol=1e-6)


# ---- TF1 checkpoints, written here as the original writes them and evaluated by an independent graph ----

def _tf1_arrays(units, width, n_outputs, rng):
    """Random variables with the original's names and shapes for a ResNet v1 encoder + ASPP decoder."""
    arrays = {}

    def conv(name, k, c_in, c_out):
        arrays[name + "/weights"] = rng.normal(0, np.sqrt(2 / (k * k * c_in)), (k, k, c_in, c_out))
        arrays[name + "/BatchNorm/gamma"] = rng.uniform(0.5, 1.5, c_out)
        arrays[name + "/BatchNorm/beta"] = rng.normal(0, 0.1, c_out)
        arrays[name + "/BatchNorm/moving_mean"] = rng.normal(0, 0.1, c_out)
        arrays[name + "/BatchNorm/moving_variance"] = rng.uniform(0.5, 1.5, c_out)

    c_in = int(64 * width)
    conv("resnet_v1_101/conv1", 7, 3, c_in)
    for b, (n, base) in enumerate(zip(units, (256, 512, 1024, 2048)), start=1):
        c_out = int(base * width)
        for u in range(1, n + 1):
            scope = f"resnet_v1_101/block{b}/unit_{u}/bottleneck_v1/"
            if u == 1:
                conv(scope + "shortcut", 1, c_in, c_out)
            conv(scope + "conv1", 1, c_in, c_out // 4)
            conv(scope + "conv2", 3, c_out // 4, c_out // 4)
            conv(scope + "conv3", 1, c_out // 4, c_out)
            c_in = c_out
    for i in range(1, 5):
        arrays[f"decoder/aspp/conv{i}/weights"] = rng.normal(0, 0.05, (3, 3, c_in, n_outputs))
        arrays[f"decoder/aspp/conv{i}/biases"] = rng.normal(0, 0.1, n_outputs)
    return {k: v.astype(np.float32) for k, v in arrays.items()}


def _reference_logits(w, images, units):
    """The original's graph (operations_resnet.py) written directly with tf.nn ops."""
    def conv_bn(x, name, stride=1, rate=1, relu=True):
        k = w[name + "/weights"]
        y = tf.nn.atrous_conv2d(x, k, rate, "SAME") if rate > 1 else tf.nn.conv2d(x, k, stride, "SAME")
        bn = [w[f"{name}/BatchNorm/{v}"] for v in BN_VARS]
        y = (y - bn[2]) / np.sqrt(bn[3] + 1e-3) * bn[0] + bn[1]
        return tf.nn.relu(y) if relu else y

    x = tf.nn.max_pool2d(conv_bn(images, "resnet_v1_101/conv1", stride=2), 3, 2, "SAME")
    for b, (n, stride, rate) in enumerate(zip(units, (1, 2, 1, 1), (1, 1, 2, 4)), start=1):
        for u in range(1, n + 1):
            scope = f"resnet_v1_101/block{b}/unit_{u}/bottleneck_v1/"
            s = stride if u == 1 else 1
            shortcut = conv_bn(x, scope + "shortcut", stride=s, relu=False) if u == 1 else x
            y = conv_bn(conv_bn(x, scope + "conv1", stride=s), scope + "conv2", rate=rate)
            x = tf.nn.relu(shortcut + conv_bn(y, scope + "conv3", relu=False))
    logits = tf.add_n([tf.nn.atrous_conv2d(x, w[f"decoder/aspp/conv{i}/weights"], r, "SAME")
                       + w[f"decoder/aspp/conv{i}/biases"] for i, r in zip(range(1, 5), (6, 12, 18, 24))])
    return tf.compat.v1.image.resize_bilinear(logits, images.shape[1:3])


def test_tf1_checkpoint_loads_and_reproduces_the_original_graph(tmp_path):
    units = (1, 2, 1, 1)
    arrays = _tf1_arrays(units, WIDTH, 5, np.random.default_rng(1))
    extras = {"global_step": np.zeros((), np.float32),  # present in the original's files, to be ignored
              "resnet_v1_101/conv1/weights/optimizer": np.ones((7, 7, 3, 4), np.float32)}
    encoder_prefix, decoder_prefix = str(tmp_path / "encoders" / "E"), str(tmp_path / "decoders" / "D")
    write_tf1_checkpoint(encoder_prefix, {**{k: v for k, v in arrays.items() if k.startswith("resnet")},
                                           **extras})
    write_tf1_checkpoint(decoder_prefix, {k: v for k, v in arrays.items() if k.startswith("decoder")})
    seg = model.Segmenter(5, encoder=model.build_encoder(units=units, width=WIDTH))
    model.load_encoder(seg, encoder_prefix)
    model.load_decoder(seg, decoder_prefix)
    # 26x25 features, so that every ASPP rate (up to 24) reaches real neighbours.
    images = np.random.default_rng(2).normal(0, 50, (1, 201, 197, 3)).astype(np.float32)
    np.testing.assert_allclose(seg(images).numpy(), _reference_logits(arrays, images, units).numpy(),
                               rtol=1e-4, atol=1e-3)  # logits reach ~200 with random weights


def test_tf1_checkpoint_problems_are_all_listed(tmp_path):
    arrays = _tf1_arrays((1, 1, 1, 1), WIDTH, 21, np.random.default_rng(1))
    missing = ["resnet_v1_101/block2/unit_1/bottleneck_v1/shortcut/weights",
               "resnet_v1_101/block4/unit_1/bottleneck_v1/conv3/BatchNorm/moving_variance"]
    bad = "resnet_v1_101/block3/unit_1/bottleneck_v1/conv2/weights"
    arrays = {k: v for k, v in arrays.items() if k not in missing and k.startswith("resnet")}
    arrays[bad] = np.zeros((1, 1, 1, 1), np.float32)
    write_tf1_checkpoint(str(tmp_path / "ckpt"), arrays)
    seg = _tiny()
    before = _values(seg.encoder.weights)
    with pytest.raises(ValueError) as error:
        model.load_encoder(seg, str(tmp_path / "ckpt"))
    for name in missing + [bad]:
        assert name in str(error.value)
    assert "3 problems" in str(error.value)
    for a, b in zip(before, _values(seg.encoder.weights)):  # nothing half-loaded
        np.testing.assert_array_equal(a, b)


def test_garbage_tf1_checkpoint_is_named(tmp_path):
    (tmp_path / "pretrained.index").write_bytes(b"not a checkpoint index" * 8)
    with pytest.raises(ValueError, match=r"cannot read the TF1 checkpoint .*pretrained .*bad magic number"):
        model.load_encoder(_tiny(), str(tmp_path / "pretrained"))


def test_save_and_load_round_trip(tmp_path):
    seg = _tiny()
    images, _ = _batch(1)
    path = str(tmp_path / "checkpoints" / "encoders" / "P1.0_E15")
    model.save_encoder(seg, path)
    model.save_decoder(seg, str(tmp_path / "decoder"))
    assert sorted(os.listdir(tmp_path / "checkpoints" / "encoders")) == ["P1.0_E15.weights.h5"]
    other = _tiny()
    assert not np.allclose(other(images).numpy(), seg(images).numpy())
    model.load_encoder(other, path)
    model.load_decoder(other, str(tmp_path / "decoder"))
    np.testing.assert_array_equal(other(images).numpy(), seg(images).numpy())
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        model.load_decoder(other, str(tmp_path / "nothing_here"))
    helper = model.Segmenter(3, [0, 16, 17], encoder=other.encoder)
    with pytest.raises(ValueError, match="mis-shaped decoder/aspp/conv4/biases: found .21,., expected .3,."):
        model.load_decoder(helper, str(tmp_path / "decoder"))
    with pytest.raises(ValueError, match="missing resnet_v1_101/block1/unit_2/bottleneck_v1/conv1/weights"):
        model.load_encoder(_tiny(units=(2, 1, 1, 1)), path)
    (tmp_path / "broken.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="broken.weights.h5"):
        model.load_decoder(other, str(tmp_path / "broken"))


def test_predict_ids_maps_helper_outputs_to_global_ids():
    seg = _tiny(3, [0, 16, 17])
    images, _ = _batch(2, size=17)
    expected = np.array([0, 16, 17])[np.argmax(seg(images).numpy(), -1)]
    ids = seg.predict_ids(images)
    assert ids.dtype == tf.int32
    np.testing.assert_array_equal(ids.numpy(), expected)
    assert set(np.unique(expected)) - {0, 16, 17} == set()
    with pytest.raises(ValueError, match="n_outputs=3"):
        model.Segmenter(3, class_ids=[0, 16])


_DISTRIBUTED = r"""
import runtime, numpy as np, tensorflow as tf, gin
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
import model
gin.parse_config("backbone.units = [1, 1, 1, 1]\nbackbone.width = 0.0625")
rng = np.random.default_rng(0)
images = rng.normal(0, 50, (4, 25, 25, 3)).astype(np.float32)
labels = rng.integers(0, 21, (4, 25, 25)).astype(np.uint8)
labels[:2] = 255; labels[2, :20] = 255  # replicas with different numbers of counted pixels
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
def make():
    seg = model.Segmenter(21)
    return seg, model.Trainer(seg, model.make_label_map(range(21)), model.poly_schedule(1e-2, 1e-4, 100))
with strategy.scope():
    seg, trainer = make()
seg1, trainer1 = make()
for a, b in zip(seg1.encoder.weights + seg1.decoder.weights, seg.encoder.weights + seg.decoder.weights):
    a.assign(b.numpy())
data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((images, labels)).batch(4))
x, y = next(iter(data))
for _ in range(2):
    out, out1 = trainer.distributed_train_step(strategy, x, y), trainer1.train_step(images, labels)
    assert abs(float(out["loss"]) - float(out1["loss"])) < 1e-5, (out, out1)
pairs = zip(seg1.decoder.weights + seg1.encoder.weights, seg.decoder.weights + seg.encoder.weights)
diff = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in pairs)
assert diff < 1e-6, diff
print("OK")
"""


def test_mirrored_strategy_step_matches_a_single_device_step():
    result = subprocess.run([sys.executable, "-c", _DISTRIBUTED], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
