"""The paper's path end to end at full network size, with the README's own commands, on a generated VOC folder.

    python -m benchmarks.bench_paper_path [--folder /tmp/bench_paper_path] [--test_type ADD_FIVE_TWO_TIMES]
                                          [--config DISJOINT] [--train 40] [--val 20] [--replay 2] [--small]
    python -m benchmarks.bench_paper_path --dataset ade20k   # ADE20K: OVERLAPPED 100-50 (README "ADE20K")

What a user with Pascal VOC runs (README "Real Pascal VOC"), each step as its own command in a subprocess:
  1. a VOC 2012-layout folder (JPEGImages/*.jpg 500x375, SegmentationClassAug/*.png, ImageSets/Segmentation/
     {train,val}.txt) of `--train` + `--val` generated images, every class in both splits;
  2. `prepare_data.py --voc_root ... --output_dir <folder>/data`;
  3. `prepare_pretrained.py --weights <file>` from a `keras.applications.ResNet101(include_top=False)` weights
     file with random weights (the ImageNet file cannot be downloaded here; the same code path reads both);
  4. GAN replay tfrecords `data/replay_images/gan/NN.tfrecord` of `--replay` generated 500x375 images per
     class (what gan/generate_gan.py writes);
  5. `main.py --benchmark voc --configs <config> --test_type <setup> --replay_source gan` from <folder>: the
     original config unchanged (ResNet-101, 321 crops, batch 4) but for one training step per class in every
     stage (`--gin_param TrainManager.training_steps_per_class = 1`, etc.).
It checks that the run wrote its results file, validated every step, and reports the wall time of each
command and the experiment's own phase times (main.py's log), with the load average before and after.
The numbers mean nothing (random encoder, one step per class): this measures that the path runs and what it
costs, not accuracy.

`--dataset ade20k` runs the same five commands for ADE20K (README "ADE20K"): an `ADEChallengeData2016` folder
(images/{training,validation}/*.jpg 500x375, annotations/*.png with ids 0..150, several classes per image),
`prepare_data.py --dataset ade20k --root ...`, GAN replay of classes 1..150, and `main.py --dataset ade20k
--configs OVERLAPPED --test_type 100-50` (config/ade20k/OVERLAPPED.gin, one step per class: 150 steps at 321
crops, batch 4).

`--small` runs the same path with a tiny network and images (tests/test_paper_path.py): it checks the script,
not the full-size cost.
"""
import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)
import os
import re
import shutil
import subprocess
import sys

import numpy as np
from absl import app, flags
from PIL import Image

from benchmarks import timing
import data_loader
import datasets
import paths
from train_manager import TrainManager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL_SIZE = (500, 375)  # width, height: the common size of VOC 2012 images
SMALL_SIZE = (45, 37)
STAGE_STEPS = ("training_steps_per_class", "decay_steps_per_class", "training_steps_per_class_helper",
               "decay_steps_per_class_helper", "training_steps_per_class_incremental",
               "decay_steps_per_class_incremental")
# --small: a tiny network and crop, no pretrained encoder (the full-size one would not fit the tiny network).
SMALL_BINDINGS = ("backbone.units = (1, 1, 1, 1)", "backbone.width = 0.0625", "TrainManager.train_image_size = 33",
                  "Training.require_pretrained = False")
_TIME_LINE = re.compile(r"time: (.+) ([0-9.]+) s$")


# --dataset ade20k: the config and setup when none are given, and the base folder of ADE20K's configs
# (config/bases/ADE20K.gin's TrainManager.base_folder_path, main.ADE20K_BASE)
ADE20K_DEFAULTS = {"config": "OVERLAPPED", "test_type": "100-50"}
ADE20K_BASE = "ade20k"


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_string("folder", "/tmp/bench_paper_path", "scratch folder (emptied first)")
    flags.DEFINE_enum("dataset", "voc", ["voc", "ade20k"], "voc: a VOC folder and an original config; ade20k: an "
                      "ADEChallengeData2016 folder and config/ade20k/ (default OVERLAPPED 100-50)")
    flags.DEFINE_string("config", None, "a config (config/<name>.gin; config/ade20k/ for ADE20K); default DISJOINT, "
                        "for ADE20K OVERLAPPED")
    flags.DEFINE_string("test_type", None, "the setup (TrainManager.TESTS name, or ADE20K's); default "
                        "ADD_FIVE_TWO_TIMES (10-5-5, which has a helper), for ADE20K 100-50")
    flags.DEFINE_integer("train", 40, "training images of the VOC folder", lower_bound=20)
    flags.DEFINE_integer("val", 20, "validation images of the VOC folder", lower_bound=20)
    flags.DEFINE_integer("replay", 2, "GAN replay images per class", lower_bound=1)
    flags.DEFINE_bool("small", False, "a tiny network and images: checks the script, not the full-size cost")
    timing.define_load_flags()
    flags.register_validator("folder", bool, "--folder: a folder is required")


def _shapes(rng, classes, size):
    """An image (uint8 [H, W, 3]) and its label (uint8 [H, W]): one ellipse per class, in the class's VOC
    colour, on a noisy background, a void (255) rim around each object as in VOC's labels."""
    width, height = size
    image = rng.integers(0, 60, (height, width, 3)).astype(np.uint8)
    label = np.zeros((height, width), np.uint8)
    yy, xx = np.mgrid[:height, :width]
    for c in reversed(classes):  # the first class last, on top: always visible
        cy, cx = rng.uniform(0.25, 0.75) * height, rng.uniform(0.25, 0.75) * width
        ry, rx = rng.uniform(0.15, 0.3) * height, rng.uniform(0.15, 0.3) * width
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        rim = (((yy - cy) / (ry + 2)) ** 2 + ((xx - cx) / (rx + 2)) ** 2 <= 1.0) & ~inside
        label[rim] = 255
        label[inside] = c
        image[inside] = data_loader.voc_palette()[c]
    return image, label


def make_voc(root, n_train, n_val, size, seed=0):
    """A VOC 2012-layout folder: image k of a split holds class 1 + k % 20 (and every third one a second
    class), so every class is in both splits when each has >= 20 images. Returns root."""
    rng = np.random.default_rng(seed)
    for folder in ("JPEGImages", "SegmentationClassAug", os.path.join("ImageSets", "Segmentation")):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        ids = [f"2012_{split}_{k:04d}" for k in range(n)]
        for k, image_id in enumerate(ids):
            classes = [1 + k % 20] + ([1 + (k + 7) % 20] if k % 3 == 0 else [])
            image, label = _shapes(rng, classes, size)
            Image.fromarray(image).save(os.path.join(root, "JPEGImages", image_id + ".jpg"), quality=90)
            Image.fromarray(label, mode="L").save(os.path.join(root, "SegmentationClassAug", image_id + ".png"))
        with open(os.path.join(root, "ImageSets", "Segmentation", split + ".txt"), "w") as f:
            f.write("".join(i + "\n" for i in ids))
    return root


def make_ade(root, n_train, n_val, size, seed=0):
    """An ADEChallengeData2016-layout folder: image k of a split holds four classes, 1 + (k + 37 j) % 150 for
    j = 0..3 (so every class is in both splits when each has >= 38 images), on ADE's 0 ("other") background.
    Returns root."""
    rng = np.random.default_rng(seed)
    for split, n in (("training", n_train), ("validation", n_val)):
        for folder in ("images", "annotations"):
            os.makedirs(os.path.join(root, folder, split), exist_ok=True)
        for k in range(n):
            image_id = f"ADE_{split[:5] if split == 'training' else 'val'}_{k + 1:08d}"
            image, label = _shapes(rng, [1 + (k + 37 * j) % 150 for j in range(4)], size)
            label[label == 255] = 0  # ADE20K has no void label
            Image.fromarray(image).save(os.path.join(root, "images", split, image_id + ".jpg"), quality=90)
            Image.fromarray(label, mode="L").save(os.path.join(root, "annotations", split, image_id + ".png"))
    return root


def write_replay(base, per_class, size, seed=1, classes=range(1, 21)):
    """GAN replay as gan/generate_gan.py writes it: data/replay_images/gan/NN.tfrecord, unlabelled JPEGs."""
    rng = np.random.default_rng(seed)
    for c in classes:
        images = [_shapes(rng, [c], size)[0] for _ in range(per_class)]
        data_loader.write_tfrecord(paths.replay_file(os.path.join(base, "data"), "gan", c),
                                   [data_loader.encode_example(image) for image in images])


def write_random_resnet101(path):
    """A keras.applications.ResNet101(include_top=False) weights file with Keras' initial weights (random
    kernels, batch norms at the identity)."""
    import keras  # pylint: disable=import-outside-toplevel  (TensorFlow loads only when needed)
    resnet = keras.applications.ResNet101(weights=None, include_top=False)
    resnet.save_weights(path)


def run(command, cwd, log):
    """Runs `command` (a list) in `cwd`, its output appended to `log`. Returns (seconds, output text)."""
    with timing.Stopwatch() as watch:
        done = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              check=False)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(command)}\n{done.stdout}\n")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit status {done.returncode} (output in {log}):\n"
                           + done.stdout[-3000:])
    return watch.seconds, done.stdout


def paper_path(folder, config="DISJOINT", test_type="ADD_FIVE_TWO_TIMES", n_train=40, n_val=20, replay=2,
               small=False, dataset="voc"):
    """Runs the five steps of the module docstring in an emptied `folder` (dataset "voc" or "ade20k").

    Returns: dict with "seconds" (command -> wall seconds), "phases" (main.py's own phase times), "results"
    (the results file) and "steps" (validated steps found in it).
    """
    shutil.rmtree(folder, ignore_errors=True)
    ade = dataset == "ade20k"
    # main.py runs in `folder`/base; ADE20K's configs put their artifacts in its ade20k/ folder
    work = os.path.join(folder, "base")
    base = os.path.join(work, ADE20K_BASE) if ade else work
    root = os.path.join(folder, "ADEChallengeData2016" if ade else "VOC2012")
    os.makedirs(base)
    log = os.path.join(folder, "commands.log")
    size = SMALL_SIZE if small else FULL_SIZE
    python = sys.executable
    seconds = {}
    with timing.Stopwatch() as watch:
        if ade:
            make_ade(root, n_train, n_val, size)
        else:
            make_voc(root, n_train, n_val, size)
        write_replay(base, replay, size, classes=datasets.get(dataset).classes)
    seconds[f"{'ADE20K' if ade else 'VOC'} folder and replay images"] = watch.seconds
    prepare = ["--dataset", "ade20k", "--root", root] if ade else ["--voc_root", root]
    seconds["prepare_data.py"], _ = run(
        [python, os.path.join(ROOT, "prepare_data.py"), *prepare, "--output_dir", os.path.join(base, "data")],
        work, log)
    bindings = [f"TrainManager.{name} = 1" for name in STAGE_STEPS]
    if small:
        bindings += SMALL_BINDINGS
    else:
        weights = os.path.join(folder, "resnet101_random.weights.h5")
        with timing.Stopwatch() as watch:
            write_random_resnet101(weights)
        seconds["random ResNet101 weights file"] = watch.seconds
        seconds["prepare_pretrained.py"], _ = run(
            [python, os.path.join(ROOT, "prepare_pretrained.py"), "--weights", weights, "--out",
             paths.checkpoint(base, "encoders", "pretrained")], work, log)
    command = [python, os.path.join(ROOT, "main.py"), "--benchmark", dataset, "--configs", config, "--test_type",
               test_type, "--replay_source", "gan", "--jobs", "1"]
    for binding in bindings:
        command += ["--gin_param", binding]
    seconds["main.py"], output = run(command, work, log)
    phases = {m.group(1): float(m.group(2)) for m in map(_TIME_LINE.search, output.splitlines()) if m}
    found = [os.path.join(base, "outputs", f) for f in os.listdir(os.path.join(base, "outputs"))
             if f.endswith(".txt")]
    if len(found) != 1:
        raise RuntimeError(f"expected one results file in {base}/outputs, found {found}")
    import results  # pylint: disable=import-outside-toplevel
    steps = [block["step"] for block in results.parse_results_file(found[0])]
    expected = list(range(len(dict(TrainManager.setups(dataset))[test_type])))
    if steps != expected:
        raise RuntimeError(f"{found[0]}: validated steps {steps}, expected {expected}")
    return {"seconds": seconds, "phases": phases, "results": found[0], "steps": steps}


def main(argv):
    del argv
    f = flags.FLAGS
    load = timing.check_load(f.max_load, f.force)
    defaults = ADE20K_DEFAULTS if f.dataset == "ade20k" else {"config": "DISJOINT", "test_type": "ADD_FIVE_TWO_TIMES"}
    config, test_type = f.config or defaults["config"], f.test_type or defaults["test_type"]
    out = paper_path(f.folder, config, test_type, f.train, f.val, f.replay, f.small, f.dataset)
    print(f"{f.dataset}: {config} {test_type} gan, {'tiny network' if f.small else 'ResNet-101, 321 crops, batch 4'}, "
          f"one step per class; {f.train} train / {f.val} val images, {f.replay} replay images per class")
    print(load.report())
    print("| command | s |\n|---|---|")
    for name, s in out["seconds"].items():
        print(f"| {name} | {s:.1f} |")
    print("\n| main.py phase | s |\n|---|---|")
    for name, s in out["phases"].items():
        print(f"| {name} | {s:.1f} |")
    print(f"\nresults: {out['results']} (validated steps {out['steps']})")


if __name__ == "__main__":
    define_flags()
    app.run(main)
