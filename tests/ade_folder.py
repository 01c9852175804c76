"""A generated folder in ADE20K's official layout (ADEChallengeData2016), for the tests (not a test file).

    make_ade_folder(parent) -> <parent>/ADEChallengeData2016 with
      images/{training,validation}/ADE_{train,val}_<n>.jpg    small JPEG scenes
      annotations/{training,validation}/ADE_{train,val}_<n>.png  uint8 class ids 0..classes (0 = "other")

Every class 1..classes is present in at least `per_class` images of each split and the lowest class of one, so every
first-step and incremental file of every ADE20K setup, and every val_k file grouped by lowest class (ADE20K's
validation_group), holds at least one image.
"""
import os

import numpy as np
from PIL import Image

FOLDER = "ADEChallengeData2016"
SPLITS = (("training", "ADE_train_"), ("validation", "ADE_val_"))


def split_dirs(root, split):
    """(image folder, annotation folder) of "training" or "validation" under an ADEChallengeData2016 folder."""
    return os.path.join(root, "images", split), os.path.join(root, "annotations", split)


def write_example(root, split, image_id, label, colours=None):
    """Writes one example: image `<id>.jpg` (uint8 [H, W, 3]; default a flat colour per label value) and
    annotation `<id>.png` (label: uint8 [H, W] of class ids) under `split` ("training" or "validation")."""
    image_dir, label_dir = split_dirs(root, split)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    label = np.asarray(label, np.uint8)
    if colours is None:
        values = label.astype(np.int32)
        colours = np.stack([values * 37 % 256, 255 - values * 11 % 256, values * 73 % 256], axis=-1)
    Image.fromarray(np.asarray(colours, np.uint8)).save(os.path.join(image_dir, image_id + ".jpg"), quality=90)
    Image.fromarray(label, mode="L").save(os.path.join(label_dir, image_id + ".png"))


def _scene(rng, classes, size):
    """A label: bands of `classes` (each a few rows, with a random column cut) below a band of 0 ("other")."""
    height, width = size
    label = np.zeros((height, width), np.uint8)
    edges = np.linspace(0, height, len(classes) + 2).round().astype(int)
    for c, top, bottom in zip(classes, edges[1:-1], edges[2:]):
        label[top:bottom, :] = c
        cut = int(rng.integers(0, width // 4 + 1))  # a few more "other" pixels at the left of some bands
        label[top:bottom, :cut] = 0
    return label


def make_ade_folder(parent, per_class=2, size=(24, 32), seed=0, classes=150):
    """Writes `<parent>/ADEChallengeData2016` in ADE20K's official layout, deterministic from `seed`.

    Each split holds `per_class` images per class c (ids numbered in order, c-major): the first holds c and up to
    two higher classes (c is its lowest), the others c and up to two classes of 1..classes drawn at random; every
    label also holds some 0 ("other") pixels. Images are flat colours per label value with a little noise.

    Args:
      parent: folder to write in (created if missing).
      per_class: images per class and split (at least 1).
      size: (height, width) of every image.
      seed: seed of the drawn classes and the noise.
      classes: the class count (labels hold ids 0..classes).
    Returns:
      the path of the ADEChallengeData2016 folder.
    """
    if per_class < 1 or not 0 < classes < 255:
        raise ValueError(f"per_class {per_class} and classes {classes}; expected per_class >= 1, classes 1..254")
    rng = np.random.default_rng(seed)
    root = os.path.join(parent, FOLDER)
    for split, prefix in SPLITS:
        n = 0
        for c in range(1, classes + 1):
            for i in range(per_class):
                pool = np.arange(c + 1, classes + 1) if i == 0 else np.arange(1, classes + 1)
                pool = pool[pool != c]
                extra = rng.choice(pool, size=min(len(pool), int(rng.integers(0, 3))), replace=False)
                scene = [c] + [int(e) for e in extra]
                rng.shuffle(scene)
                label = _scene(rng, scene, size)
                values = label.astype(np.int32)
                flat = np.stack([values * 37 % 256, 255 - values * 11 % 256, values * 73 % 256], axis=-1)
                noise = rng.integers(-8, 9, size=flat.shape)
                n += 1
                write_example(root, split, f"{prefix}{n:08d}", label, np.clip(flat + noise, 0, 255))
    return root
