"""Times one training step of DeepLab-V2 (model.Trainer) for the full ResNet-101 and a small network.

Example (the figures in benchmarks/BENCHMARKS.md):
  python -m benchmarks.bench --networks=full,small --batch_size=1 --steps=2
  python -m benchmarks.bench --networks=full --batch_size=4,1 --steps=3      # the paper's batch 4, a GPU job

Each row builds a Segmenter with 21 outputs, runs one step to trace (and compile) the tf.function, then
times --steps more steps on random mean-subtracted images and labels; the table gives the median.
"""

import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from benchmarks import timing
import model

FLAGS = flags.FLAGS
NETWORKS = ("full", "small")
MODES = ("encoder+decoder", "decoder")


def _positive_ints(values):
    try:
        return all(int(v) > 0 for v in values)
    except ValueError:
        return False


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_list("networks", list(NETWORKS), "Networks to time: full (ResNet-101) and/or small.")
    flags.DEFINE_list("units", ["1", "1", "1", "1"], "Units per block of the small network (4 ints > 0).")
    flags.DEFINE_float("width", 0.125, "Channel multiplier of the small network (> 0).")
    flags.DEFINE_list("batch_size", ["4", "1"], "Batch sizes to time (ints > 0).")
    flags.DEFINE_integer("image_size", 321, "Square crop size (train_image_size).", lower_bound=1)
    flags.DEFINE_integer("steps", 3, "Timed steps per row, after one tracing step.", lower_bound=1)
    flags.DEFINE_list("modes", list(MODES), "Which variables train: encoder+decoder, decoder.")
    flags.DEFINE_boolean("jit_compile", False, "Compile the step with XLA.")
    flags.DEFINE_integer("n_classes", 21, "Decoder outputs.", lower_bound=1)
    timing.define_load_flags()
    flags.register_validator("networks", lambda v: bool(v) and set(v) <= set(NETWORKS),
                             f"--networks: one or more of {', '.join(NETWORKS)}")
    flags.register_validator("modes", lambda v: bool(v) and set(v) <= set(MODES),
                             f"--modes: one or more of {', '.join(MODES)}")
    flags.register_validator("width", lambda w: w > 0, "--width: > 0")
    flags.register_validator("units", lambda v: len(v) == 4 and _positive_ints(v), "--units: 4 ints > 0")
    flags.register_validator("batch_size", lambda v: bool(v) and _positive_ints(v), "--batch_size: ints > 0")


def time_step(units, width, batch, image_size, mode, steps, jit_compile, n_classes):
    """Returns (first step seconds, median step seconds) of Trainer.train_step for one configuration."""
    seg = model.Segmenter(n_classes, encoder=model.build_encoder(units=units, width=width))
    schedule = model.poly_schedule(5e-4, 5e-6, 1000)
    trainer = model.Trainer(seg, model.make_label_map(range(n_classes)), schedule, momentum=0.9,
                            l2_decay=1e-4, train_encoder=(mode == "encoder+decoder"), jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(0, 60, (batch, image_size, image_size, 3)).astype(np.float32))
    labels = tf.constant(rng.integers(0, n_classes, (batch, image_size, image_size)).astype(np.uint8))
    # .numpy() waits for the step to finish; the first (untimed) call traces the tf.function
    t = timing.repeat(lambda: trainer.train_step(images, labels)["loss"].numpy(), steps)
    return t.first, t.median


def main(argv):
    del argv
    load = timing.check_load(FLAGS.max_load, FLAGS.force)
    networks = {"full": ((3, 4, 23, 3), 1.0), "small": (tuple(int(u) for u in FLAGS.units), FLAGS.width)}
    device = tf.config.list_logical_devices("GPU")
    rows = []
    for name in FLAGS.networks:
        units, width = networks[name]
        for batch in (int(b) for b in FLAGS.batch_size):
            for mode in FLAGS.modes:
                logging.info("Timing %s %s width %s, batch %d, %s", name, units, width, batch, mode)
                first, median = time_step(units, width, batch, FLAGS.image_size, mode, FLAGS.steps,
                                          FLAGS.jit_compile, FLAGS.n_classes)
                rows.append((name, "-".join(map(str, units)), f"{width:g}", batch, mode, first, median,
                             batch / median))
    header = ("network", "units", "width", "batch", "trains", "first step s", "step s", "images/s")
    print(f"device: {device[0].name if device else 'CPU'}, image {FLAGS.image_size}x{FLAGS.image_size}, "
          f"jit_compile={FLAGS.jit_compile}, median of {FLAGS.steps} steps")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(x) for x in row[:5]) + f" | {row[5]:.2f} | {row[6]:.3f} | {row[7]:.2f} |")
    print(load.report())


if __name__ == "__main__":
    define_flags()
    app.run(main)
