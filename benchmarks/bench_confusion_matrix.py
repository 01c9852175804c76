"""The validation's confusion matrix by tf.math.bincount (metrics.masked_confusion_matrix) against
tf.math.confusion_matrix, A/B in one job.

    python -m benchmarks.bench_confusion_matrix [--rounds 7] [--images 400]

Builds the embedded benchmark's network (config/embedded/embedded.gin: backbone units [1, 1, 1, 1], width 0.25;
random weights) and one validation tfrecord of random 64x64 images and labels (void pixels included), then times
evaluation.evaluate at the embedded sweep's batch of 128, the two confusion matrices alternating round by round (each
traced into its own network's validation step). Prints the median and best ms per evaluate of each, whether their
losses and matrices are equal, the CPU kind and the load average.
"""
import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)
import io
import os
import shutil
import statistics
import tempfile
import time

import gin
import numpy as np
import tensorflow as tf
from absl import app, flags
from PIL import Image

from benchmarks import timing
from context import Context
import data_loader
import evaluation
import metrics
import model
import runtime as rt

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 7, "alternating rounds (the first of each is left out: tracing)")
flags.DEFINE_integer("images", 400, "validation images (the embedded benchmark's 20 classes x 20)")
timing.define_load_flags()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_CLASSES = 21
MEAN = data_loader.DEFAULT_MEAN


def tf_confusion_matrix(labels, preds, mask, n_classes):
    """The matrix as before 2026-12-07's fifth session: tf.math.confusion_matrix over the masked pixels."""
    labels = tf.boolean_mask(tf.cast(labels, tf.int64), mask)
    preds = tf.boolean_mask(tf.cast(preds, tf.int64), mask)
    return tf.math.confusion_matrix(labels, preds, num_classes=n_classes, dtype=tf.int64)


def _png(array, mode):
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _validation_file(path):
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(FLAGS.images):
        image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        label = rng.integers(0, N_CLASSES, (64, 64), dtype=np.uint8)
        label[rng.random(label.shape) < 0.05] = 255
        examples.append(data_loader.serialize_example(_png(image, "RGB"), _png(label, "L")))
    data_loader.write_tfrecord(path, examples)


def main(argv):
    del argv
    gin.parse_config_file(os.path.join(ROOT, "config", "embedded", "embedded.gin"), skip_unknown=True)
    folder = tempfile.mkdtemp(prefix="bench_cm_")
    path = os.path.join(folder, "val.tfrecord")
    _validation_file(path)
    new = metrics.masked_confusion_matrix
    variants = {}
    for name, fn in (("confusion_matrix", tf_confusion_matrix), ("bincount", new)):
        tf.keras.utils.set_random_seed(0)
        variants[name] = (model.Segmenter(N_CLASSES), fn)  # the same random weights
    context = Context(progress_bars=False)
    load = timing.check_load(FLAGS.max_load, FLAGS.force)
    times, out = {name: [] for name in variants}, {}
    try:
        for r in range(FLAGS.rounds):
            for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
                seg, fn = variants[name]
                metrics.masked_confusion_matrix = fn  # read when the network's validation step is traced
                start = time.perf_counter()
                out[name] = evaluation.evaluate(seg, [path], list(range(N_CLASSES)), N_CLASSES, MEAN, 128, False,
                                                context)
                if r:
                    times[name].append(time.perf_counter() - start)
    finally:
        metrics.masked_confusion_matrix = new
        shutil.rmtree(folder, ignore_errors=True)
    for name, values in times.items():
        print(f"{name:16s} evaluate of {FLAGS.images} images: median {statistics.median(values) * 1000:.1f} ms, "
              f"best {min(values) * 1000:.1f} ms ({len(values)} rounds)")
    (loss_a, cm_a), (loss_b, cm_b) = out.values()
    print(f"equal loss: {loss_a == loss_b}; equal matrix: {bool((cm_a == cm_b).all())}")
    print(f"CPU kind: {rt.cpu_kind()}; {load.report()}")


if __name__ == "__main__":
    app.run(main)
