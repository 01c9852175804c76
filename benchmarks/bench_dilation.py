"""Times a dilated 3x3 convolution two ways: tf.nn.conv2d (native dilation, what model.Conv2D uses) and
tf.nn.convolution (Keras' Conv2D path, which rewrites a dilation as space_to_batch / batch_to_space).

    python -m benchmarks.bench_dilation [--repeats 5]

Shapes: DeepLab-V2 at 321x321, batch 4 (41x41 features): block-3/4 convolutions (1024 -> 256 channels,
rates 2 and 4, forward + weight gradient) and the ASPP branches (2048 -> 21, rates 6 and 24);
and the embedded network's ASPP at 64x64 (8x8x512 features, batch 8, forward).
"""
import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)

import tensorflow as tf
from absl import app, flags

from benchmarks import timing


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_integer("repeats", 5, "timed calls per case (after one warm-up call)", lower_bound=1)
    timing.define_load_flags()


def _ms(fn, repeats):
    """Mean milliseconds of `repeats` calls of fn after one warm-up call."""
    return timing.repeat(fn, repeats).mean * 1000


def case(shape, out_channels, rate, backward, repeats):
    x = tf.random.normal(shape)
    k = tf.Variable(tf.random.normal([3, 3, shape[-1], out_channels]) * 0.01)

    def make(conv):
        @tf.function
        def run():
            with tf.GradientTape() as tape:
                y = conv(x, k, rate)
                loss = tf.reduce_sum(y * y)
            return tape.gradient(loss, [k]) if backward else y
        return run

    native = make(lambda x, k, r: tf.nn.conv2d(x, k, 1, "SAME", dilations=r))
    keras_path = make(lambda x, k, r: tf.nn.convolution(x, k, padding="SAME", dilations=r))
    return _ms(native, repeats), _ms(keras_path, repeats)


def main(_):
    repeats = flags.FLAGS.repeats
    load = timing.check_load(flags.FLAGS.max_load, flags.FLAGS.force)
    cases = [("block3/4 conv, 4x41x41x1024 -> 256", [4, 41, 41, 1024], 256, 2, True),
             ("block3/4 conv, 4x41x41x1024 -> 256", [4, 41, 41, 1024], 256, 4, True),
             ("ASPP branch, 4x41x41x2048 -> 21", [4, 41, 41, 2048], 21, 6, False),
             ("ASPP branch, 4x41x41x2048 -> 21", [4, 41, 41, 2048], 21, 24, False),
             ("embedded ASPP, 8x8x8x512 -> 21", [8, 8, 8, 512], 21, 24, False)]
    print("| case | rate | pass | tf.nn.conv2d ms | tf.nn.convolution (Keras) ms | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, shape, out, rate, backward in cases:
        native, keras_path = case(shape, out, rate, backward, repeats)
        print(f"| {name} | {rate} | {'fwd + weight grad' if backward else 'fwd'} | {native:.1f} | {keras_path:.1f} | "
              f"{keras_path / native:.1f}x |")
    print(load.report())


if __name__ == "__main__":
    define_flags()
    app.run(main)
