"""model.Conv2D computes a dilated convolution whose off-centre taps read only padding as the 1x1 convolution of
its centre tap: the same outputs and gradients as the 3x3 convolution, and only where that holds."""
import numpy as np
import pytest
import tensorflow as tf

import model


def _layer(rate, kernel=3, channels=5):
    layer = model.Conv2D(channels, kernel, dilation_rate=rate, padding="same", use_bias=True,
                         bias_initializer="glorot_uniform")
    layer.build((None, None, None, 4))
    return layer


def _outputs_and_gradients(layer, x, reference):
    """The layer's outputs and gradients (kernel, bias, input) of a fixed loss; with reference=True through
    tf.nn.conv2d's own 3x3 dilated convolution."""
    x = tf.constant(x)
    weights = tf.constant(np.linspace(-1, 1, np.prod(x.shape[:3]) * layer.filters, dtype=np.float32)
                          .reshape(*x.shape[:3], layer.filters))

    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            if reference:
                y = tf.nn.conv2d(x, layer.kernel, 1, "SAME", dilations=layer.dilation_rate) + layer.bias
            else:
                y = layer(x)
            loss = tf.reduce_sum(y * weights)
        return y, tape.gradient(loss, [layer.kernel, layer.bias, x])

    return run(x)


@pytest.mark.parametrize("size,rate", [((8, 8), 8), ((8, 8), 24), ((4, 6), 6), ((1, 1), 2)])
def test_centre_tap_equals_the_dilated_convolution(size, rate):
    layer = _layer(rate)
    assert layer._reads_only_the_centre_tap(tf.zeros((2, *size, 4)))
    x = np.random.default_rng(0).normal(size=(2, *size, 4)).astype(np.float32)
    got, got_grads = _outputs_and_gradients(layer, x, reference=False)
    want, want_grads = _outputs_and_gradients(layer, x, reference=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(tf.reduce_max(tf.abs(want))))
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(tf.reduce_max(tf.abs(w))))
    kernel_gradient = got_grads[0].numpy()
    off_centre = np.ones((3, 3), bool)
    off_centre[1, 1] = False
    assert np.all(kernel_gradient[off_centre] == 0) and np.any(kernel_gradient[1, 1] != 0)


@pytest.mark.parametrize("shape,rate,kernel", [
    ((2, 9, 9, 4), 8, 3),         # a rate below the size: off-centre taps read the map
    ((2, 8, 20, 4), 12, 3),       # the width is larger than the rate
    ((2, None, None, 4), 24, 3),  # no static size (full validation images of any size)
    ((2, 8, 8, 4), 1, 3),         # no dilation
    ((2, 8, 8, 4), 24, 1),        # a 1x1 convolution already
])
def test_the_general_path_elsewhere(shape, rate, kernel):
    layer = _layer(rate, kernel)
    spec = tf.TensorSpec(shape, tf.float32)
    taken = []
    tf.function(lambda x: taken.append(layer._reads_only_the_centre_tap(x)) or x).get_concrete_function(spec)
    assert taken == [False]
