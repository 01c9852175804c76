"""Times the training input pipeline alone (decode, augment, blend, batch) in samples per second.

  python -m benchmarks.bench_input                       # synthetic VOC-sized records, new only
  python -m benchmarks.bench_input --tfrecord=data/training_first_step/train_sequential_1-15.tfrecord
  python -m benchmarks.bench_input --ratio_new=4 --ratio_old=4 --batch_size=8   # blend with a synthetic replay file

Without --tfrecord, records of random shapes at 500x375 (the size of most VOC images) are written to a
temporary folder first; that time is not counted. bench_perf imports make_synthetic_tfrecord and bench_input.
"""

import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)
import os
import tempfile

import numpy as np
from absl import app, flags, logging

from benchmarks import timing
import data_loader

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script: bench_perf imports this module)."""
    flags.DEFINE_multi_string("tfrecord", None, "New-sample record file(s); synthetic records when unset.")
    flags.DEFINE_multi_string("old_tfrecord", None,
                              "Replay record file(s); synthetic when unset and ratio_old > 0.")
    flags.DEFINE_integer("ratio_new", 4, "interleave_ratio_new.", lower_bound=0)
    flags.DEFINE_integer("ratio_old", 0, "interleave_ratio_old.", lower_bound=0)
    flags.DEFINE_integer("batch_size", 4, "Samples per batch.", lower_bound=1)
    flags.DEFINE_integer("image_size", 321, "Training crop side.", lower_bound=1)
    flags.DEFINE_integer("steps", 200, "Timed batches.", lower_bound=1)
    flags.DEFINE_integer("warmup", 20, "Untimed batches first (fills the shuffle buffer and the prefetch).",
                         lower_bound=0)
    flags.DEFINE_integer("synthetic_records", 200, "Records per synthetic file.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed of the pipeline and of the synthetic data.")
    timing.define_load_flags()
    flags.register_multi_flags_validator(["ratio_new", "ratio_old"], lambda f: f["ratio_new"] + f["ratio_old"] > 0,
                                         "--ratio_new and --ratio_old: not both 0")
    for name in ("tfrecord", "old_tfrecord"):
        flags.register_validator(name, lambda paths: all(os.path.isfile(p) for p in paths or []),
                                 f"--{name}: every file must exist")


def make_synthetic_tfrecord(path, n, height=375, width=500, n_classes=21, seed=0):
    """Writes n labelled records of random rectangles on a gradient (compresses like a photo, roughly).

    Args:
      path: output file.
      n: number of records.
      height, width: image size.
      n_classes: labels use ids 0..n_classes-1 and 255 borders.
      seed: numpy seed.

    Returns:
      str: path.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]

    def examples():
        for _ in range(n):
            base = rng.uniform(0, 255, 3)
            image = (base + 40 * np.stack([np.sin(yy / rng.uniform(20, 80) + c) for c in range(3)], -1)
                     + 0.2 * xx[..., None] % 255)
            label = np.zeros((height, width), np.uint8)
            for _ in range(rng.integers(1, 5)):
                y0, x0 = rng.integers(0, height - 20), rng.integers(0, width - 20)
                y1, x1 = y0 + rng.integers(10, height - y0), x0 + rng.integers(10, width - x0)
                image[y0:y1, x0:x1] = rng.uniform(0, 255, 3)
                label[y0:y1, x0:x1] = rng.integers(1, n_classes)
                label[y0, x0:x1] = 255
            image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
            yield data_loader.encode_example(image, label)

    data_loader.write_tfrecord(path, examples())
    return path


def bench_input(paths_new, paths_old=None, ratio_new=4, ratio_old=0, batch_size=4, train_image_size=321,
                steps=200, warmup=20, seed=0):
    """Iterates the training pipeline and measures its throughput.

    Args:
      paths_new, paths_old, ratio_new, ratio_old, batch_size, train_image_size, seed: as
        data_loader.training_dataset.
      steps: timed batches.
      warmup: untimed batches before.

    Returns:
      dict: samples_per_s (float), batches_per_s (float), seconds (float), samples (int).
    """
    ds = data_loader.training_dataset(paths_new, paths_old, ratio_new, ratio_old, batch_size,
                                      train_image_size, seed=seed)
    iterator = iter(ds)
    for _ in range(warmup):
        next(iterator)
    with timing.Stopwatch() as watch:
        for _ in range(steps):
            images, _ = next(iterator)
        images.numpy()  # make sure the last batch is materialized
    seconds = watch.seconds
    samples = steps * batch_size
    return {"samples_per_s": samples / seconds, "batches_per_s": steps / seconds, "seconds": seconds,
            "samples": samples}


def main(argv):
    del argv
    load = timing.check_load(FLAGS.max_load, FLAGS.force)
    with tempfile.TemporaryDirectory() as tmp:
        new = FLAGS.tfrecord
        if not new:
            new = [make_synthetic_tfrecord(os.path.join(tmp, "new.tfrecord"), FLAGS.synthetic_records,
                                           seed=FLAGS.seed)]
        old = FLAGS.old_tfrecord
        if FLAGS.ratio_old > 0 and not old:
            old = [make_synthetic_tfrecord(os.path.join(tmp, "old.tfrecord"), FLAGS.synthetic_records,
                                           seed=FLAGS.seed + 1)]
        result = bench_input(new, old, FLAGS.ratio_new, FLAGS.ratio_old, FLAGS.batch_size, FLAGS.image_size,
                             FLAGS.steps, FLAGS.warmup, FLAGS.seed)
    logging.info("input pipeline: %.1f samples/s (%.2f batches/s of %d, crop %d, ratio %d:%d, %d CPUs, "
                 "%d samples in %.2f s)", result["samples_per_s"], result["batches_per_s"], FLAGS.batch_size,
                 FLAGS.image_size, FLAGS.ratio_new, FLAGS.ratio_old, os.cpu_count(), result["samples"],
                 result["seconds"])
    logging.info("%s", load.report())


if __name__ == "__main__":
    define_flags()
    app.run(main)
