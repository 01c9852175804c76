"""Per-call cost of reading one small record file, the unit of a sweep's replay labelling and validation (issue 24):
labelling.predicted, data_loader.read_samples, load_tfrecord (made and read), check_tfrecord, a training pipeline
made (load_tfrecord "training", first sample), an incremental step's input (training_dataset over this file and 8
others as replay, to its first batch).

  python -m benchmarks.bench_per_call                          # 30 files of 2 images of 20x28 (ADE20K test size)
  python -m benchmarks.bench_per_call --baseline=/tmp/old      # side by side with another version's modules

Each call reads a file no call has read before (its records are small; the time is the call's own start-up).
"first" is the first call of a kind in the process (it traces); the median is over the others. --baseline: a
folder holding another version's data_loader.py and labelling.py (e.g. `git show REV:data_loader.py >
/tmp/old/data_loader.py`), imported under other names and timed alternately with this version's, call by call,
so that both see the same load; the two must give the same bytes (checked on every call of predicted and of the
step's input).
"""

import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)
import importlib.util
import os
import statistics
import sys
import tempfile

import gin
import numpy as np
from absl import app, flags

from benchmarks import timing
import data_loader
import labelling
import model

FLAGS = flags.FLAGS
flags.DEFINE_integer("files", 30, "Files read by each kind of call (one call a file).", lower_bound=2)
flags.DEFINE_integer("images", 2, "Records per file.", lower_bound=1)
flags.DEFINE_list("size", ["20", "28"], "Image height, width.")
flags.DEFINE_integer("n_classes", 151, "Network outputs; label values are below it.", lower_bound=2)
flags.DEFINE_string("baseline", None, "Folder with another version's data_loader.py and labelling.py.")
timing.define_load_flags()


def _write_files(folder, n_files, n_images, h, w, n_classes):
    rng = np.random.default_rng(0)
    paths = []
    for f in range(n_files):
        path = os.path.join(folder, f"{f:03d}.tfrecord")
        data_loader.write_tfrecord(path, [data_loader.encode_example(
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, n_classes, (h, w), dtype=np.uint8))
            for _ in range(n_images)])
        paths.append(path)
    return paths


def _baseline(folder):
    """(data_loader, labelling) of the other version; its labelling reads through its own data_loader."""
    modules = []
    for name in ("data_loader", "labelling"):
        spec = importlib.util.spec_from_file_location(f"baseline_{name}", os.path.join(folder, name + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # autograph converts functions of modules it finds there only
        spec.loader.exec_module(module)
        modules.append(module)
    modules[1].data_loader = modules[0]
    return modules


# The calls whose outputs must be the baseline's byte for byte (checked on every call).
SAME_BYTES = ("predicted, images", "training_dataset (1 + 8 files), first batch")


def _calls(dl, lab, seg, n_classes):
    """{kind: fn(path)} of one version."""
    calls = {
        "predicted, images": lambda p: [(r, s["rgb_input"].tobytes(), y.tobytes())
                                        for r, s, y in lab.predicted(seg, p, "images", (0.0, 0.0, 0.0), 64)],
        "predicted, validation+": lambda p: list(lab.predicted(seg, p, "validation+", data_loader.DEFAULT_MEAN, 64,
                                                               n_classes)),
        "load_tfrecord validation+, made and read": lambda p: list(dl.load_tfrecord(
            [p], "validation+", dataset_mean=(0.0, 0.0, 0.0), n_classes=n_classes).as_numpy_iterator()),
        "load_tfrecord training, made": lambda p: next(iter(dl.load_tfrecord([p], "training", 32,
                                                                             n_classes=n_classes, seed=0))),
        "check_tfrecord": lambda p: dl.check_tfrecord(p, n_classes),
    }
    def stage_input(p):  # an incremental step's input: p new, 8 other files replay; built, started, first batch
        others = sorted(os.path.join(os.path.dirname(p), f) for f in os.listdir(os.path.dirname(p))
                        if f.endswith(".tfrecord") and f != os.path.basename(p))[:8]
        images, labels = next(iter(dl.training_dataset([p], others, 8, 8, 16, 32, (0.0, 0.0, 0.0), seed=0,
                                                       n_classes=n_classes, sequential_files=True,
                                                       buffer_size=400 * len(others))))
        return images.numpy().tobytes(), labels.numpy().tobytes()
    calls["training_dataset (1 + 8 files), first batch"] = stage_input
    if hasattr(dl, "read_samples"):
        calls["read_samples validation+"] = lambda p: list(dl.read_samples(p, "validation+", (0.0, 0.0, 0.0),
                                                                           n_classes))
    return calls


def main(_):
    load = timing.check_load(FLAGS.max_load, FLAGS.force)
    h, w = (int(x) for x in FLAGS.size)
    gin.parse_config(["backbone.units = [1, 1, 1, 1]", "backbone.width = 0.0625"])
    seg = model.Segmenter(FLAGS.n_classes)
    versions = {"this": _calls(data_loader, labelling, seg, FLAGS.n_classes)}
    if FLAGS.baseline:
        versions = {"baseline": _calls(*_baseline(FLAGS.baseline), seg, FLAGS.n_classes), **versions}
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_files(tmp, FLAGS.files, FLAGS.images, h, w, FLAGS.n_classes)
        seconds = {(v, kind): [] for v, calls in versions.items() for kind in calls}
        for kind in versions["this"]:
            for i, path in enumerate(paths):
                order = list(versions) if i % 2 == 0 else list(reversed(versions))  # alternate who goes first
                outputs = {}
                for v in order:
                    if kind in versions[v]:
                        with timing.Stopwatch() as watch:
                            outputs[v] = versions[v][kind](path)
                        seconds[(v, kind)].append(watch.seconds)
                if kind in SAME_BYTES and len(outputs) == 2 and outputs["this"] != outputs["baseline"]:
                    raise AssertionError(f"{kind} differs from the baseline's on {path}")
    load.done()
    print(f"{FLAGS.files} files of {FLAGS.images} images {h}x{w}, {FLAGS.n_classes} classes; ms per call")
    print(f"{'call':42s} " + " ".join(f"{v + ' first':>15s} {v + ' median':>15s}" for v in versions)
          + ("   ratio of medians" if len(versions) == 2 else ""))
    for kind in versions["this"]:
        row = {v: seconds[(v, kind)] for v in versions if seconds.get((v, kind))}
        cells = " ".join(f"{row[v][0] * 1e3:15.1f} {statistics.median(row[v][1:]) * 1e3:15.1f}" if v in row
                         else f"{'-':>15s} {'-':>15s}" for v in versions)
        ratio = (f"   {statistics.median(row['baseline'][1:]) / statistics.median(row['this'][1:]):.1f}x"
                 if len(row) == 2 else "")
        print(f"{kind:42s} {cells}{ratio}")
    print(load.report())


if __name__ == "__main__":
    app.run(main)
