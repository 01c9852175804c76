"""Tests of prepare_pretrained.py: Keras' ResNet-101 folded into our encoder computes Keras' function.

The proof uses keras.applications.ResNet101(weights=None, include_top=False) with every weight random: kernels,
conv biases, gamma, beta, moving mean and (positive) moving variance, so that a wrong fold, a swapped name or
a transposed kernel shows. Differences are max |ours - Keras| / max |Keras| over a layer's output.

Padding, as measured here: Keras pads conv1 (3 each side) and pool1 (1 each side) symmetrically before VALID
operations; our SAME padding puts the odd pixel at the bottom/right. The two agree when H and W are 1 mod 4
(33 here, 321 in training): our encoder then equals Keras' network to float32 rounding, at stride 8 (end of
block2) and, sampled every 4th position, at stride 32 (the dilated blocks 3 and 4 compute Keras' undilated
blocks on a denser grid). For an even size (32) SAME pads conv1 by 2 on top instead of 3: the whole sampling
grid moves by one pixel, so the outputs differ everywhere, not only at a border (our conv1 on x equals Keras'
conv1 on x[1:, 1:] away from the top-left border). Odd alone is not enough: at 35 conv1 agrees and pool1's grid
moves (its input, 18, is even).
"""

import os

import h5py
import keras
import numpy as np
import pytest

import model
import prepare_pretrained as pp

TOLERANCE = 1e-4
# (Keras layer, our layer, our sub-sampling): stem, end of block2 (stride 8 in both), end of block3 and block4.
TAPS = (("conv1_relu", "conv1_relu", 1), ("pool1_pool", "pool1", 1), ("conv3_block4_out", "block2_unit_4_out", 1),
        ("conv4_block23_out", "block3_unit_23_out", 2), ("conv5_block3_out", "block4_unit_3_out", 4))


def _randomize(resnet, seed=0):
    """Random conv biases and batch-norm statistics (the kernels are Keras' random initialisation)."""
    rng = np.random.default_rng(seed)
    for layer in resnet.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(rng.normal(0, 0.5, layer.bias.shape).astype(np.float32))
        elif isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.2, shape).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0, 0.5, shape).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, shape).astype(np.float32))


@pytest.fixture(scope="module")
def resnet():
    keras.utils.set_random_seed(0)
    net = keras.applications.ResNet101(weights=None, include_top=False)
    _randomize(net)
    return net


@pytest.fixture(scope="module")
def encoder(resnet):
    """Our ResNet-101 encoder holding the random Keras network (channel order bgr)."""
    return pp.encoder_from_keras(resnet).encoder


@pytest.fixture(scope="module")
def taps(resnet, encoder):
    """(Keras model, our model) returning the TAPS outputs."""
    keras_taps = keras.Model(resnet.input, [resnet.get_layer(k).output for k, _, _ in TAPS])
    our_taps = keras.Model(encoder.input, [encoder.get_layer(o).output for _, o, _ in TAPS])
    return keras_taps, our_taps


def _image(size, seed=1):
    return np.random.default_rng(seed).uniform(-128, 128, (1, size, size, 3)).astype(np.float32)


def _differences(taps, ours_input, keras_input=None):
    """{Keras layer: (relative difference, per-position max |difference| [h, w], Keras output)}."""
    keras_taps, our_taps = taps
    theirs = [t.numpy() for t in keras_taps(ours_input if keras_input is None else keras_input)]
    ours = [t.numpy() for t in our_taps(ours_input)]
    out = {}
    for (name, _, step), a, b in zip(TAPS, theirs, ours):
        b = b[:, ::step, ::step]
        assert a.shape == b.shape, (name, a.shape, b.shape)
        diff = np.abs(a - b)
        out[name] = (diff.max() / np.abs(a).max(), diff.max(axis=(0, 3)), a)
    return out


def test_tf1_scope_names_every_keras_layer_with_weights():
    assert pp.tf1_scope("conv1_conv") == ("resnet_v1_101/conv1", "conv")
    assert pp.tf1_scope("conv2_block1_0_bn") == ("resnet_v1_101/block1/unit_1/bottleneck_v1/shortcut", "bn")
    assert pp.tf1_scope("conv4_block23_2_conv") == ("resnet_v1_101/block3/unit_23/bottleneck_v1/conv2", "conv")
    assert pp.tf1_scope("conv5_block3_3_bn") == ("resnet_v1_101/block4/unit_3/bottleneck_v1/conv3", "bn")
    for name in ("conv1_pad", "pool1_pool", "conv3_block4_out", "conv2_block1_add", "conv2_block1_1_relu"):
        assert pp.tf1_scope(name) is None


def test_fold_keeps_the_function():
    rng = np.random.default_rng(0)
    conv, bias, mean = rng.normal(0, 3, (100, 8)), rng.normal(0, 1, 8), rng.normal(0, 1, 8)
    gamma, beta, var = rng.uniform(0.5, 2, 8), rng.normal(0, 1, 8), rng.uniform(1e-4, 2, 8)  # tiny variances too
    keras_out = (conv + bias - mean) / np.sqrt(var + pp.KERAS_BN_EPSILON) * gamma + beta
    f = pp.fold(np.zeros((1, 1, 1, 8)), bias, gamma, beta, mean, var)
    ours = ((conv - f["BatchNorm/moving_mean"]) / np.sqrt(f["BatchNorm/moving_variance"] + model.BN_EPSILON)
            * f["BatchNorm/gamma"] + f["BatchNorm/beta"])
    np.testing.assert_allclose(ours, keras_out, rtol=1e-5, atol=1e-5)


def test_every_encoder_variable_is_assigned(resnet, encoder):
    values = pp.keras_to_tf1(resnet)
    assert set(values) == {name for _, name in model.encoder_tf1_names(encoder)}
    assert len(values) == 104 * 5  # 104 convolutions: weights + 4 batch-norm variables each
    for var, name in model.encoder_tf1_names(encoder):
        np.testing.assert_array_equal(var.numpy(), values[name], err_msg=name)


def test_keras_preprocessing_is_caffe_and_what_rgb_with_the_caffe_mean_gives():
    """preprocess_input: RGB -> BGR, Caffe mean subtracted, no scaling. With channel order rgb the encoder
    reverses the channels itself, so the pipeline must subtract the Caffe mean in RGB order to match."""
    rgb = np.random.default_rng(0).uniform(0, 255, (1, 5, 5, 3)).astype(np.float32)
    caffe = keras.applications.resnet.preprocess_input(rgb.copy())
    np.testing.assert_allclose(caffe, rgb[..., ::-1] - np.float32(pp.CAFFE_MEAN_BGR), atol=1e-4)
    pipeline = rgb - np.float32(pp.CAFFE_MEAN_BGR[::-1])  # data_loader with dataset_mean = [123.68, 116.779, 103.939]
    np.testing.assert_allclose(pipeline[..., ::-1], caffe, atol=1e-4)


def test_odd_size_1_mod_4_equals_keras(taps):
    """33 x 33: our stride-8 encoder equals Keras' ResNet-101 at every tap, stride 32 included."""
    diffs = _differences(taps, _image(33))
    for name, (rel, _, reference) in diffs.items():
        assert rel < TOLERANCE, f"{name}: relative difference {rel:.2e}"
        assert (reference > 0).mean() > 0.5, f"{name}: degenerate test, features mostly zero"
    print({name: f"{rel:.2e}" for name, (rel, _, _) in diffs.items()})


def test_even_size_differs_everywhere_by_a_grid_shift(taps):
    """32 x 32: not equal, and not only at a border (documents the SAME vs explicit padding difference)."""
    x = _image(32)
    diffs = _differences(taps, x)
    rel, per_position, _ = diffs["conv3_block4_out"]
    assert rel > 0.1
    assert (per_position > 0.01 * np.abs(diffs["conv3_block4_out"][2]).max()).all()  # every position, centre too
    # Why: SAME pads the 7x7 stride-2 conv1 by 2 on top / left (Keras 3), so our grid is Keras' on x[1:, 1:]...
    keras_conv1 = taps[0](x[:, 1:, 1:])[0].numpy()
    ours_conv1 = taps[1](x)[0].numpy()
    scale = np.abs(keras_conv1).max()
    assert np.abs(ours_conv1[:, 2:, 2:] - keras_conv1[:, 2:, 2:]).max() / scale < TOLERANCE
    # ...except at the top-left border, where Keras sees padding in place of x's first row and column.
    assert np.abs(ours_conv1[:, 1, 2:] - keras_conv1[:, 1, 2:]).max() / scale > 0.01
    print({name: f"{rel:.2e}" for name, (rel, _, _) in diffs.items()})


def test_odd_size_3_mod_4_differs_from_pool1_on(taps):
    diffs = _differences(taps, _image(35))
    assert diffs["conv1_relu"][0] < TOLERANCE
    assert diffs["pool1_pool"][0] > 0.1 and diffs["conv3_block4_out"][0] > 0.1


def test_rgb_channel_order_takes_the_channel_reversed_image(resnet, taps):
    encoder = pp.encoder_from_keras(resnet, channel_order="rgb").encoder
    rgb = _image(33)
    theirs = taps[0](rgb[..., ::-1])[2].numpy()  # Keras' network on the BGR image
    ours = keras.Model(encoder.input, encoder.get_layer("block2_unit_4_out").output)(rgb).numpy()
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < TOLERANCE


def test_missing_mis_shaped_and_unused_values_fail_and_assign_nothing():
    encoder = model.build_encoder(units=(1, 1, 1, 1), width=1 / 16)
    pairs = model.encoder_tf1_names(encoder)
    before = [var.numpy().copy() for var, _ in pairs]
    values = {name: var.numpy() + 1 for var, name in pairs}
    del values["resnet_v1_101/block2/unit_1/bottleneck_v1/conv2/weights"]
    values["resnet_v1_101/conv1/BatchNorm/gamma"] = np.ones(5, np.float32)
    values["resnet_v1_101/block5/unit_1/bottleneck_v1/conv1/weights"] = np.ones(1, np.float32)
    with pytest.raises(ValueError) as error:
        pp.assign_encoder(encoder, values)
    message = str(error.value)
    assert "missing resnet_v1_101/block2/unit_1/bottleneck_v1/conv2/weights" in message
    assert "mis-shaped resnet_v1_101/conv1/BatchNorm/gamma: found (5,), expected (4,)" in message
    assert "unused resnet_v1_101/block5/unit_1/bottleneck_v1/conv1/weights" in message
    for (var, _), value in zip(pairs, before):
        np.testing.assert_array_equal(var.numpy(), value)


def _offline(monkeypatch):
    def fail(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] "
                        "Temporary failure in name resolution")
    monkeypatch.setattr(keras.utils, "get_file", fail)


def test_offline_error_says_which_file_to_put_where(monkeypatch, tmp_path):
    _offline(monkeypatch)
    out = str(tmp_path / "checkpoints" / "encoders" / "pretrained")
    with pytest.raises(FileNotFoundError) as error:
        pp.prepare(out)
    message = str(error.value)
    assert os.path.join(pp.keras_cache_dir(), "models", pp.WEIGHTS_FILE) in message
    assert pp.WEIGHTS_URL in message and "Temporary failure in name resolution" in message
    assert not os.path.exists(out + ".weights.h5")


def test_missing_weights_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        pp.prepare(str(tmp_path / "pretrained"), weights=str(tmp_path / "nowhere.h5"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras' save_weights, about numpy 2's copy keyword
def test_writes_once_from_a_weights_file_then_skips(monkeypatch, resnet, tmp_path):
    _offline(monkeypatch)  # a weights path never touches the network
    weights = str(tmp_path / "resnet101.weights.h5")
    resnet.save_weights(weights)
    out = str(tmp_path / "checkpoints" / "encoders" / "pretrained")
    assert pp.prepare(out, weights=weights) == "written"
    expected = pp.keras_to_tf1(resnet)
    with h5py.File(out + ".weights.h5", "r") as f:
        for name, value in expected.items():
            np.testing.assert_array_equal(f[name][()], value, err_msg=name)
    mtime = os.path.getmtime(out + ".weights.h5")
    assert pp.prepare(out, weights=weights) == "skipped"
    assert os.path.getmtime(out + ".weights.h5") == mtime
    assert [p.name for p in (tmp_path / "checkpoints" / "encoders").iterdir()] == ["pretrained.weights.h5"]
