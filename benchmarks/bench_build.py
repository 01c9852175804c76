"""Times the embedded build serial and with its encoder pretraining in a second process (main.py's default
with --jobs 2), alternating in one job, and checks that both pretrain the same encoder weights.

    python -m benchmarks.bench_build [--rounds 2] [--folder /tmp/bench_build]

Each build starts from an empty folder with config/embedded/embedded.gin's settings (a few minutes each).
"""
import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)
import os
import shutil

import gin
import numpy as np
from absl import app, flags

from benchmarks import timing
import embedded_benchmark
import model
import train_manager
import training

FLAGS = flags.FLAGS
GIN_FILE = os.path.join("config", "embedded", "embedded.gin")
# What embedded.gin binds besides embedded.* and backbone.*: imported, these register their bindings.
CONFIGURABLES = (train_manager.TrainManager, training.Training)


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_integer("rounds", 2, "serial + parallel builds per round", lower_bound=1)
    flags.DEFINE_string("folder", "/tmp/bench_build", "scratch folder (emptied before each build)")
    flags.register_validator("folder", bool, "--folder: a folder is required")
    timing.define_load_flags()


def build(base, parallel):
    """Builds the embedded benchmark in an emptied `base`. Returns (seconds, the build's phase times)."""
    gin.clear_config()
    gin.parse_config_files_and_bindings([GIN_FILE], [])
    shutil.rmtree(base, ignore_errors=True)
    with timing.Stopwatch() as watch:
        phases = embedded_benchmark.build(base, parallel=parallel)
    return watch.seconds, phases


def encoder_weights(base):
    seg = model.Segmenter(21)
    model.load_encoder(seg, embedded_benchmark.pretrained_encoder_path(base))
    return [w.numpy() for w in seg.encoder.weights]


def run(argv):
    del argv
    if not os.path.exists(GIN_FILE):
        raise app.UsageError(f"{GIN_FILE} not found: run from the project root")
    load = timing.check_load(FLAGS.max_load, FLAGS.force)
    bases = {}
    for k in range(1, FLAGS.rounds + 1):
        for parallel in (False, True):
            base = os.path.join(FLAGS.folder, f"{'parallel' if parallel else 'serial'}{k}")
            wall, phases = build(base, parallel)
            print(f"round {k} {'parallel' if parallel else 'serial'}: build {wall:.1f} s (encoder "
                  f"{phases['encoder']:.1f} s, classifier {phases['classifier']:.1f} s)", flush=True)
            bases[parallel] = base
    same = all(np.array_equal(a, b) for a, b in zip(encoder_weights(bases[False]), encoder_weights(bases[True])))
    print(f"pretrained encoder weights equal, serial vs parallel: {same}")
    print(load.report())


if __name__ == "__main__":
    define_flags()
    app.run(run)
