"""The embedded network's steps with and without the centre-tap convolution (model.Conv2D), A/B in one job.

    python -m benchmarks.bench_centre_tap [--rounds 3] [--steps 30] [--batch 16]

Builds the embedded benchmark's network (config/embedded/embedded.gin: backbone units [1, 1, 1, 1], width 0.25)
on 64x64 inputs (8x8 features, where the ASPP rates 12, 18 and 24 read only padding off the centre tap) and times,
in alternating rounds, with the centre-tap path ("centre") and with every dilated convolution computed as a 3x3
one ("3x3"): the decoder-only training step (incremental steps), the encoder + decoder step (step 0) and the
validation forward pass of 128 images. Prints ms per call (best and median over rounds) and the CPU kind.
"""
import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)
import os
import statistics
import time

import gin
import numpy as np
import tensorflow as tf
from absl import app, flags

import model
import runtime as rt

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 3, "alternating rounds")
flags.DEFINE_integer("steps", 30, "calls per timing")
flags.DEFINE_integer("batch", 16, "training batch (the embedded sweep's 8 new + 8 replay)")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _variant(centre):
    """Networks, trainers and the forward function with the centre-tap path on or off (traced that way)."""
    original = model.Conv2D._reads_only_the_centre_tap
    if not centre:
        model.Conv2D._reads_only_the_centre_tap = lambda self, inputs: False
    try:
        rng = np.random.default_rng(0)
        images = tf.constant(rng.normal(0, 50, (FLAGS.batch, 64, 64, 3)).astype(np.float32))
        labels = tf.constant(rng.integers(0, 21, (FLAGS.batch, 64, 64)).astype(np.uint8))
        big = tf.constant(rng.normal(0, 50, (128, 64, 64, 3)).astype(np.float32))
        seg = model.Segmenter(21)
        label_map = model.make_label_map(list(range(21)))
        decoder = model.Trainer(seg, label_map, 1e-3, train_encoder=False)
        whole = model.Trainer(model.Segmenter(21), label_map, 1e-3, train_encoder=True)
        forward = tf.function(lambda x: seg(x))
        calls = {"decoder-only step": lambda: decoder.train_step(images, labels)["loss"],
                 "encoder+decoder step": lambda: whole.train_step(images, labels)["loss"],
                 "forward, 128 images": lambda: forward(big)}
        for call in calls.values():  # traced here, with the path chosen above
            call().numpy()
        return calls
    finally:
        model.Conv2D._reads_only_the_centre_tap = original


def main(argv):
    del argv
    gin.parse_config_files_and_bindings([os.path.join(ROOT, "config", "embedded", "embedded.gin")], [],
                                        skip_unknown=True)
    variants = {"centre": _variant(True), "3x3": _variant(False)}
    times = {}
    for _ in range(FLAGS.rounds):
        for name, calls in variants.items():
            for what, call in calls.items():
                start = time.perf_counter()
                for _ in range(FLAGS.steps):
                    out = call()
                out.numpy()
                times.setdefault((what, name), []).append((time.perf_counter() - start) / FLAGS.steps * 1e3)
    print(f"CPU kind: {rt.cpu_kind()}; load average before the end: {os.getloadavg()[0]:.2f}")
    for what in variants["centre"]:
        a, b = times[(what, "centre")], times[(what, "3x3")]
        print(f"{what:22s} centre tap {min(a):7.1f} ms (median {statistics.median(a):7.1f})   3x3 {min(b):7.1f} ms "
              f"(median {statistics.median(b):7.1f})   x{statistics.median(b) / statistics.median(a):.2f}")


if __name__ == "__main__":
    app.run(main)
