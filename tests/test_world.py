"""Tests of embedded_benchmark/world.py: the generated VOC-like benchmark world."""

import json
import os

import numpy as np
from PIL import Image
import pytest

import data_loader
from embedded_benchmark import world


def _files(root):
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _load(root, split):
    with open(os.path.join(root, "ImageSets", "Segmentation", split + ".txt")) as f:
        ids = f.read().split()
    images, labels = [], []
    for i in ids:
        with Image.open(os.path.join(root, "JPEGImages", i + ".jpg")) as im:
            assert im.mode == "RGB"
            images.append(np.asarray(im))
        with Image.open(os.path.join(root, "SegmentationClassAug", i + ".png")) as im:
            assert im.mode == "L"  # single channel
            labels.append(np.asarray(im))
    return ids, np.stack(images), np.stack(labels)


@pytest.fixture(scope="module")
def stats_world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("world"))
    world.generate_world(root, seed=3, image_size=64, train_per_class=12, val_per_class=2)
    return root


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    kwargs = dict(image_size=32, train_per_class=2, val_per_class=1)
    a, b, c = (str(tmp_path / n) for n in "abc")
    world.generate_world(a, seed=7, **kwargs)
    world.generate_world(b, seed=7, **kwargs)
    world.generate_world(c, seed=8, **kwargs)
    files_a, files_b, files_c = _files(a), _files(b), _files(c)
    assert len(files_a) == 2 * (40 + 20) + 3  # images, labels, two lists, world.json
    assert files_a == files_b
    assert files_a.keys() == files_c.keys()
    differing = [k for k in files_a if k.endswith(".png") and files_a[k] != files_c[k]]
    assert len(differing) > 50


def test_folder_layout_and_reuse(tmp_path):
    root = str(tmp_path / "w")
    first = world.generate_world(root, seed=1, image_size=32, train_per_class=1, val_per_class=1)
    assert not first["reused"]
    ids, images, labels = _load(root, "train")
    assert ids == [f"train_{i:06d}" for i in range(20)]
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (20, 32, 32)
    assert set(np.unique(labels)) <= set(range(21)) | {255}
    assert len(_load(root, "val")[0]) == 20
    with open(os.path.join(root, "world.json")) as f:
        meta = json.load(f)
    assert meta["settings"]["seed"] == 1 and meta["counts"] == {"train": 20, "val": 20}
    assert world.generate_world(root, seed=1, image_size=32, train_per_class=1, val_per_class=1)["reused"]
    with pytest.raises(ValueError, match="world.json"):
        world.generate_world(root, seed=2, image_size=32, train_per_class=1, val_per_class=1)
    again = world.generate_world(root, seed=2, image_size=32, train_per_class=1, val_per_class=1,
                                 overwrite=True)
    assert not again["reused"] and again["settings"]["seed"] == 2


def test_classes_per_image_balance_and_cooccurrence(stats_world):
    _, _, labels = _load(stats_world, "train")
    class_sets = [set(np.unique(l)) - {0, 255} for l in labels]
    n_classes = np.array([len(s) for s in class_sets])
    assert n_classes.min() >= 1 and n_classes.max() <= 3
    assert 1.2 <= n_classes.mean() <= 1.9
    assert np.mean(n_classes >= 2) >= 0.25
    presence = np.array([sum(c in s for s in class_sets) for c in range(1, 21)])
    # Every class is the primary (always visible) object of exactly 12 images; person, the most common
    # partner, is in the most (as in VOC), but not in every image.
    assert presence.min() >= 12 and presence.max() <= 4 * 12
    # Person (15) co-occurs with many classes, as in VOC.
    assert presence[14] == presence.max()
    multi = [s for s in class_sets if len(s) >= 2]
    partnered = [any(b in world.COOCCURRENCE[a] for a in s for b in s if a != b) or len(s) < 2 for s in multi]
    # Random pairs would be partners ~15% of the time; the co-occurrence table makes it the rule.
    assert np.mean(partnered) >= 0.5


def test_void_band_lies_along_object_outlines(stats_world):
    _, _, labels = _load(stats_world, "train")
    void_fraction = np.mean(labels == 255)
    assert 0.03 <= void_fraction <= 0.25
    assert 0.4 <= np.mean(labels == 0) <= 0.9
    widths, far = set(), 0
    for label in labels:
        obj = (label > 0) & (label < 255)
        bg = label == 0
        padded_obj = np.pad(obj, 2)
        padded_bg = np.pad(bg, 1)
        near_obj = {d: np.zeros_like(obj) for d in (1, 2)}
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = padded_obj[2 + dy:2 + dy + 64, 2 + dx:2 + dx + 64]
                near_obj[2] |= shifted
                if max(abs(dy), abs(dx)) <= 1:
                    near_obj[1] |= shifted
        void = label == 255
        # Void pixels are at most 2 px from an object (but for a few where a sliver of an occluded object
        # lies wholly inside the band of the object in front).
        far += np.count_nonzero(void & ~near_obj[2])
        # No object pixel touches background directly: the band separates them.
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                assert not np.any(obj & padded_bg[1 + dy:1 + dy + 64, 1 + dx:1 + dx + 64])
        # Band width 1 or 2: with width 2 about half the band is more than 1 px from the object.
        widths.add(2 if np.count_nonzero(void & ~near_obj[1]) > 0.2 * np.count_nonzero(void) else 1)
    assert widths == {1, 2}
    assert far <= 0.01 * np.count_nonzero(labels == 255)


def test_backgrounds_textured_and_colour_alone_is_a_weak_cue(stats_world):
    _, images, labels = _load(stats_world, "train")

    def spread(image, label):
        # Spread of the mean background colour over 16x16 cells: large-scale variation, not pixel noise.
        means = [image[y:y + 16, x:x + 16][label[y:y + 16, x:x + 16] == 0].mean(axis=0)
                 for y in range(0, 64, 16) for x in range(0, 64, 16)
                 if np.count_nonzero(label[y:y + 16, x:x + 16] == 0) >= 64]
        return np.std(means, axis=0).mean() if len(means) >= 3 else np.nan

    assert np.nanmedian([spread(i, l) for i, l in zip(images, labels)]) > 8  # flat would be ~3
    # Mean colour of each object region -> class, by nearest class centroid (fit on half, test on half).
    feats, classes = [], []
    for image, label in zip(images, labels):
        for c in set(np.unique(label)) - {0, 255}:
            feats.append(image[label == c].mean(axis=0))
            classes.append(c)
    feats, classes = np.array(feats), np.array(classes)
    fit = np.arange(len(classes)) % 2 == 0
    centroids = np.array([feats[fit & (classes == c)].mean(axis=0) for c in range(1, 21)])
    guess = 1 + np.argmin(((feats[~fit, None] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = np.mean(guess == classes[~fit])
    assert accuracy < 0.3  # chance is 0.05; a one-colour-per-class world would give ~1


def test_bad_settings():
    with pytest.raises(ValueError, match="image_size >= 16"):
        world.WorldConfig(image_size=8)
    with pytest.raises(ValueError, match="object_count_probs summing to 1"):
        world.WorldConfig(object_count_probs=(0.5, 0.2))


def test_class_kinds_latin_square():
    assert len(set(world.CLASS_KINDS)) == 20 and world.N_KINDS == 30
    assert sorted(world.CLASS_KINDS + world.EXTRA_KINDS) == list(range(30))
    n_tex = len(world.TEXTURES)
    shapes = [k // n_tex for k in world.CLASS_KINDS]
    textures = [k % n_tex for k in world.CLASS_KINDS]
    assert all(shapes.count(s) == 4 for s in range(5)) and all(textures.count(t) == 5 for t in range(4))
    # Every block of 5 consecutive classes holds all five shapes (no step is "the step of rings").
    for start in (0, 5, 10, 15):
        assert sorted(shapes[start:start + 5]) == [0, 1, 2, 3, 4]
    assert world.describe_class(1) == "plain disk"


def test_render_object_and_kind():
    image, label = world.render_object(15, size=48, rng=np.random.default_rng(5))
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert label.shape == (48, 48) and label.dtype == np.uint8
    assert set(np.unique(label)) == {0, 15, 255}
    assert 0.1 <= np.mean(label == 15) <= 0.6
    again, again_label = world.render_object(15, size=48, rng=np.random.default_rng(5))
    assert np.array_equal(image, again) and np.array_equal(label, again_label)
    shifted, shifted_label = world.render_object(15, size=48, rng=np.random.default_rng(5), domain_shift=1.0)
    assert np.array_equal(label, shifted_label)
    assert np.abs(shifted.astype(int) - image).mean() > 3
    kind_image, mask = world.render_kind(world.EXTRA_KINDS[0], size=32, rng=0)
    assert kind_image.shape == (32, 32, 3) and set(np.unique(mask)) == {0, 1, 255}
    with pytest.raises(ValueError, match="class_id 21"):
        world.render_object(21)
    with pytest.raises(ValueError, match="kind 30"):
        world.render_kind(30)


def test_save_sample_grid(stats_world, tmp_path):
    out = world.save_sample_grid(stats_world, str(tmp_path / "grid.png"), n=6, columns=3, zoom=2)
    with Image.open(out) as im:
        assert im.size == (3 * (128 + 4), 2 * (256 + 12 + 4))
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    # Labels drawn in the VOC palette: void colour and some class colours appear.
    colours = {tuple(p) for p in pixels}
    assert (224, 224, 192) in colours
    assert sum(tuple(data_loader.voc_palette()[c]) in colours for c in range(1, 21)) >= 3
