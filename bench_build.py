"""Times the embedded build serial and with its encoder pretraining in a second process (main.py's default
with --jobs 2), alternating in one job, and checks that both pretrain the same encoder weights.

    python bench_build.py [--rounds 2] [--folder /tmp/bench_build]

Each build starts from an empty folder with config/embedded/embedded.gin's settings (a few minutes each).
"""
import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)
import os
import shutil
import time

import gin
import numpy as np
from absl import app, flags

import embedded
import main  # pylint: disable=unused-import  (registers every binding of embedded.gin)
import model

flags.DEFINE_integer("rounds", 2, "serial + parallel builds per round")
flags.DEFINE_string("folder", "/tmp/bench_build", "scratch folder (emptied before each build)")
FLAGS = flags.FLAGS


def build(base, parallel):
    gin.clear_config()
    gin.parse_config_files_and_bindings([os.path.join("config", "embedded", "embedded.gin")], [])
    shutil.rmtree(base, ignore_errors=True)
    start = time.time()
    phases = embedded.build(base, parallel=parallel)
    return time.time() - start, phases


def encoder_weights(base):
    seg = model.Segmenter(21)
    model.load_encoder(seg, embedded.pretrained_encoder_path(base))
    return [w.numpy() for w in seg.encoder.weights]


def run(argv):
    del argv
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


if __name__ == "__main__":
    app.run(run)
