"""Mixed precision and XLA on CPU: a few training steps of a tiny network match float32 / non-XLA ones.

Tolerances (relative, on the cross-entropy of each step, same weights and batch):
  XLA vs no XLA, float32: 1e-4 (observed < 1e-6: only the order of floating-point sums changes);
  mixed_bfloat16 vs float32: 1e-2 (observed <= 3e-3: bfloat16 keeps 8 bits of mantissa);
  mixed_float16 vs float32: 5e-3 (observed ~1e-3: float16 keeps 11 bits).
mixed_float16 runs with XLA here: TensorFlow's CPU kernels have no float16 gradient of a dilated convolution.
"""

import os

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
import model
import training
from train_manager import TrainManager

STEPS = 4


def _batch():
    rng = np.random.default_rng(0)
    images = rng.normal(0, 50, (4, 33, 33, 3)).astype(np.float32)
    labels = rng.integers(0, 21, (4, 33, 33)).astype(np.uint8)
    labels[:2, :10] = 255
    return images, labels


def _trainer(precision="float32", jit_compile=False, train_encoder=True):
    """A tiny Segmenter (same initial weights for every precision) and its Trainer."""
    keras.utils.set_random_seed(0)
    with model.precision_policy(precision):
        encoder = model.build_encoder(units=(1, 1, 1, 1), width=1 / 16)
    seg = model.Segmenter(21, encoder=encoder, precision=precision)
    return model.Trainer(seg, model.make_label_map(range(21)), model.poly_schedule(1e-2, 1e-4, 100),
                         train_encoder=train_encoder, jit_compile=jit_compile)


def _losses(trainer, steps=STEPS):
    """Loss of each applied update, by the update's index: a float16 step whose gradients overflow is skipped
    by the loss scaling (the weights do not change), so it is not an update of its own."""
    images, labels = _batch()
    losses = {}
    for _ in range(3 * steps):
        iteration = int(trainer.optimizer.iterations.numpy())
        loss = float(trainer.train_step(images, labels)["loss"])
        losses.setdefault(iteration, loss)
        if len(losses) == steps:
            break
    return [losses[i] for i in range(steps)]


@pytest.mark.parametrize("train_encoder", [True, False])
def test_xla_step_matches_the_plain_step(train_encoder):
    plain = _losses(_trainer(train_encoder=train_encoder))
    xla = _losses(_trainer(jit_compile=True, train_encoder=train_encoder))
    np.testing.assert_allclose(xla, plain, rtol=1e-4)


@pytest.mark.parametrize("precision, jit_compile, rtol", [("mixed_bfloat16", False, 1e-2),
                                                          ("mixed_float16", True, 5e-3)])
def test_mixed_precision_losses_are_close_to_float32(precision, jit_compile, rtol):
    reference = _losses(_trainer())
    mixed = _trainer(precision, jit_compile)
    losses = _losses(mixed)
    np.testing.assert_allclose(losses, reference, rtol=rtol)
    assert losses[-1] < losses[0]  # it learns
    assert max(abs(a - b) / b for a, b in zip(losses, reference)) > 0  # it really computed in low precision
    assert isinstance(mixed.optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "mixed_float16")


def test_mixed_segmenter_keeps_float32_variables_and_outputs():
    with model.precision_policy("mixed_bfloat16"):
        encoder = model.build_encoder(units=(1, 1, 1, 1), width=1 / 16)
    seg = model.Segmenter(21, encoder=encoder, precision="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # restored after building
    conv = seg.decoder.get_layer("aspp_conv1")
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    assert {w.dtype for w in seg.encoder.weights + seg.decoder.weights} == {"float32"}
    images, _ = _batch()
    assert seg(images).dtype == tf.float32
    assert seg.predict_ids(images).shape == (4, 33, 33)
    with pytest.raises(ValueError, match="float8"):
        model.Segmenter(21, precision="float8")


def test_training_precision_binding(tmp_path):
    gin.clear_config()
    gin.parse_config_files_and_bindings([os.path.join(ROOT, "config", "SEQUENTIAL.gin")],
                                        [f'TrainManager.base_folder_path = "{tmp_path}"',
                                         "backbone.units = [1, 1, 1, 1]", "backbone.width = 0.0625"])
    try:
        manager = TrainManager(test_type="ADD_ONE_ONE_TIME")
        seg = training.Training(manager, precision="mixed_bfloat16")._segmenter(21)
        assert seg.precision == "mixed_bfloat16"
        assert seg.encoder.get_layer("conv1").compute_dtype == "bfloat16"
        with pytest.raises(ValueError, match="'half'.*mixed_float16"):
            training.Training(manager, precision="half")
    finally:
        gin.clear_config()
