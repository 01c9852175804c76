"""The embedded benchmark world: a generated, VOC-like segmentation data set.

`generate_world(root)` writes a folder in Pascal VOC 2012 layout (JPEGImages/*.jpg,
SegmentationClassAug/*.png with class ids 0..20 and 255 = void, ImageSets/Segmentation/{train,val}.txt)
that `prepare_data.py` turns into the tfrecords of the benchmark, exactly as it does for real VOC.

What a class looks like. Every object is one of six shapes (disk, box, triangle, cross, ring, star) filled
with one of five textures (plain shaded, stripes, checker, dots, grid), drawn in two colours of one
9-colour palette. The 20 classes are 20 of the 30 (shape, texture) "kinds", laid out as a Latin square so
that every shape is shared by four classes, every texture by five, and every step of every setup mixes them.
Colour is a weak cue, as in VOC: a kind's main colour is one of `class_colours` (2) palette colours, and each
colour is shared by about four classes (the texture's second colour is any contrasting one). So neither
colour nor shape nor texture alone names a class. (With colour carrying no information at all, a small
network learns the world about twice as slowly, which a minutes-long benchmark cannot afford.) The 10 other
kinds never appear in the world; the replay tools use them to make a class space larger than the world's
(`render_kind`).

What a scene looks like. A textured background (smooth colour noise, gradient or horizon split, grain)
with clutter that is no object (thin lines, small blobs), then 1 to 3 objects (probabilities
`object_count_probs`) of random scale, rotation and aspect, drawn back to front so that they occlude each
other. Every image has a "primary" class, and each class is primary in exactly `train_per_class` training
and `val_per_class` validation images (class balance); further objects come with probability
`cooccurrence_prob` from the primary's partners (`COOCCURRENCE`, shaped after VOC: person rides bicycles
and horses, chairs stand by tables), else from any class. As in VOC, a void band (255) of 1 or 2 pixels
lies along every object outline, on the side of what is behind it (background or a farther object).

Everything is a function of the seed: each image draws from its own generator seeded by
(seed, split, index), so the same seed gives the same bytes.
"""

import dataclasses
import json
import math
import os
import time

from absl import logging
import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

import artifacts
import datasets

DATASET = datasets.VOC  # the world is VOC-like: its classes, names, colours and folder layout
N_CLASSES = DATASET.n_classes
SHAPES = ("disk", "box", "triangle", "cross", "ring", "star")
TEXTURES = ("plain", "stripes", "checker", "dots", "grid")
N_KINDS = len(SHAPES) * len(TEXTURES)  # 30; kind = shape_index * len(TEXTURES) + texture_index


def _class_kind(class_id):
    # Latin square over the first 5 shapes x 4 textures: class i (0-based) has shape i % 5 and texture
    # (i // 5 + i % 5) % 4, so each group of 5 consecutive classes holds every shape and 4 textures.
    i = class_id - 1
    shape, texture = i % 5, (i // 5 + i % 5) % 4
    return shape * len(TEXTURES) + texture


CLASS_KINDS = tuple(_class_kind(c) for c in range(1, N_CLASSES + 1))  # CLASS_KINDS[c - 1] = kind of c
EXTRA_KINDS = tuple(k for k in range(N_KINDS) if k not in CLASS_KINDS)

PALETTE = np.array([(220, 40, 40), (40, 170, 60), (40, 70, 220), (240, 220, 50), (60, 200, 220),
                    (200, 60, 200), (240, 140, 30), (235, 235, 235), (30, 30, 30)], np.float32)
_LUMA = PALETTE @ np.array([0.299, 0.587, 0.114], np.float32)

# Partners of each class (VOC-like co-occurrence); a class listed as its own partner comes in groups.
COOCCURRENCE = {
    1: (1, 15), 2: (15, 7), 3: (3,), 4: (15, 4), 5: (11, 15, 9), 6: (7, 15), 7: (6, 15, 14, 2),
    8: (12, 18), 9: (11, 18, 16, 20, 15), 10: (10, 17, 13), 11: (9, 5, 15, 16), 12: (15, 8, 18),
    13: (15, 10), 14: (15, 7), 15: (2, 14, 13, 4, 9, 18, 11, 7, 12, 5), 16: (9, 11), 17: (17, 10),
    18: (9, 20, 15, 12, 8), 19: (15,), 20: (18, 9, 15)}

WORLD_VERSION = 1


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Parameters of a generated world (recorded in `world.json` beside it).

    Attributes:
      seed: master seed.
      image_size: side of the square images, pixels.
      train_per_class: training images whose primary class is each class (20x this many in all).
      val_per_class: validation images per primary class.
      min_scale, max_scale: object radius as a fraction of the image size.
      max_aspect: objects are stretched by an aspect ratio in [1/max_aspect, max_aspect].
      object_count_probs: probabilities of 1, 2 and 3 objects in an image.
      cooccurrence_prob: probability that a further object comes from the primary's partners.
      min_visible: fraction of an object's area that must stay visible after occlusion.
      texture_period: texture period as a fraction of the object radius (range).
      class_colours: palette colours a kind's main colour is drawn from (0 = any colour).
      jpeg_quality: quality of the written JPEG images (chroma is not subsampled).
    """
    seed: int = 0
    image_size: int = 64
    train_per_class: int = 100
    val_per_class: int = 20
    min_scale: float = 0.2
    max_scale: float = 0.34
    max_aspect: float = 1.35
    object_count_probs: tuple = (0.5, 0.35, 0.15)
    cooccurrence_prob: float = 0.7
    min_visible: float = 0.4
    texture_period: tuple = (0.4, 0.55)
    class_colours: int = 2
    jpeg_quality: int = 95

    def __post_init__(self):
        checks = {"image_size >= 16": self.image_size >= 16,
                  "train_per_class >= 1": self.train_per_class >= 1,
                  "val_per_class >= 1": self.val_per_class >= 1,
                  "0 < min_scale <= max_scale <= 0.5": 0 < self.min_scale <= self.max_scale <= 0.5,
                  "object_count_probs summing to 1": abs(sum(self.object_count_probs) - 1) < 1e-6,
                  f"0 <= class_colours <= {len(PALETTE)}": 0 <= self.class_colours <= len(PALETTE)}
        failed = [k for k, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"WorldConfig {self}: expected {', '.join(failed)}")


# ------------------------------------------------------------------------------------------ drawing


def _shape_mask(shape, x, y):
    """Boolean mask of a shape in normalised object coordinates (the shape fits in the unit disk)."""
    r2 = x * x + y * y
    if shape == "disk":
        return r2 <= 1.0
    if shape == "box":
        return (np.abs(x) <= 0.8) & (np.abs(y) <= 0.8)
    if shape == "triangle":
        return (y >= -1.0) & (y <= 0.7) & (np.abs(x) <= (y + 1.0) * 0.62)
    if shape == "cross":
        return (((np.abs(x) <= 0.34) & (np.abs(y) <= 1.0)) | ((np.abs(y) <= 0.34) & (np.abs(x) <= 1.0)))
    if shape == "ring":
        return (r2 <= 1.0) & (r2 >= 0.45 ** 2)
    if shape == "star":
        phi = np.arctan2(y, x)
        return np.sqrt(r2) <= 0.42 + 0.58 * ((np.cos(5 * phi) + 1) / 2) ** 2
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _texture_weight(texture, u, v, period):
    """Weight in [0, 1] of the second colour, from object-frame pixel coordinates u, v."""
    if texture == "plain":
        return np.zeros_like(u)
    if texture == "stripes":
        return (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    if texture == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if texture == "dots":
        du, dv = (u / period) % 1.0 - 0.5, (v / period) % 1.0 - 0.5
        return (du * du + dv * dv <= 0.32 ** 2).astype(np.float32)
    if texture == "grid":
        return (((u / period) % 1.0 < 0.3) | ((v / period) % 1.0 < 0.3)).astype(np.float32)
    raise ValueError(f"unknown texture {texture!r}; expected one of {TEXTURES}")


def kind_colours(kind, n):
    """Palette indices a kind's main colour is drawn from: n of them, shifted from kind to kind."""
    rank = CLASS_KINDS.index(kind) if kind in CLASS_KINDS else N_CLASSES + EXTRA_KINDS.index(kind)
    return [(rank + o) % len(PALETTE) for o in (0, 1, 4, 6, 2, 3, 5, 7, 8)[:n]]


def _two_colours(rng, choices=None):
    """Two palette colours with a clear luminance difference (textures survive JPEG chroma loss)."""
    a = int(rng.choice(choices)) if choices else int(rng.integers(len(PALETTE)))
    candidates = np.flatnonzero(np.abs(_LUMA - _LUMA[a]) >= 60)
    b = int(rng.choice(candidates))
    return PALETTE[a], PALETTE[b]


def _smooth_noise(size, cells, rng):
    """Float32 [size, size] in [0, 1]: a random cells x cells grid upsampled bilinearly."""
    grid = Image.fromarray(rng.random((cells, cells)).astype(np.float32), mode="F")
    return np.asarray(grid.resize((size, size), Image.BILINEAR), np.float32)


def render_background(size, rng):
    """A textured background with clutter that is no object.

    Args:
      size: side in pixels.
      rng: numpy Generator.
    Returns:
      float32 [size, size, 3] in 0..255.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c1, c2 = PALETTE[rng.choice(len(PALETTE), 2, replace=False)]
    grey = np.float32(128)
    c1, c2 = 0.45 * c1 + 0.55 * grey, 0.45 * c2 + 0.55 * grey  # muted, unlike objects
    style = rng.integers(3)
    if style == 0:  # colour noise
        t = _smooth_noise(size, int(rng.integers(3, 7)), rng)
    elif style == 1:  # gradient
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * xx + np.sin(angle) * yy
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    else:  # horizon split, softened by noise
        level = rng.uniform(0.3, 0.7) + 0.15 * (_smooth_noise(size, 4, rng) - 0.5)
        t = (yy > level).astype(np.float32)
    img = c1 + t[..., None] * (c2 - c1)
    img *= (0.8 + 0.4 * _smooth_noise(size, int(rng.integers(6, 12)), rng))[..., None]
    img += rng.normal(0, 6, (size, size, 1)).astype(np.float32)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 7))):
        colour = tuple(int(c) for c in PALETTE[rng.integers(len(PALETTE))])
        x0, y0 = rng.uniform(0, size, 2)
        if rng.random() < 0.5:  # a thin line or twig
            length, angle = rng.uniform(0.2, 0.6) * size, rng.uniform(0, 2 * np.pi)
            draw.line([(x0, y0), (x0 + length * np.cos(angle), y0 + length * np.sin(angle))], fill=colour,
                      width=1)
        else:  # a small blob
            r = rng.uniform(0.02, 0.05) * size
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=colour)
    return np.asarray(canvas, np.float32)


def _object_geometry(size, rng, cfg, scale=None):
    """Random centre, radius, rotation and aspect of one object."""
    radius = size * (rng.uniform(cfg.min_scale, cfg.max_scale) if scale is None else rng.uniform(*scale))
    margin = 0.6 * radius
    return dict(cx=rng.uniform(margin, size - margin), cy=rng.uniform(margin, size - margin),
                radius=radius, angle=rng.uniform(0, 2 * np.pi),
                aspect=math.exp(rng.uniform(-1, 1) * math.log(cfg.max_aspect)))


def _render_kind_layer(kind, geometry, size, rng, cfg):
    """One object of a kind: (mask bool [S,S], pixels float32 [S,S,3])."""
    shape, texture = SHAPES[kind // len(TEXTURES)], TEXTURES[kind % len(TEXTURES)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xx - geometry["cx"], yy - geometry["cy"]
    cos, sin = math.cos(geometry["angle"]), math.sin(geometry["angle"])
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    stretch = math.sqrt(geometry["aspect"])
    mask = _shape_mask(shape, u / (geometry["radius"] * stretch), v * stretch / geometry["radius"])
    period = max(3.0, geometry["radius"] * rng.uniform(*cfg.texture_period))
    phase = rng.uniform(0, period, 2)
    weight = _texture_weight(texture, u + phase[0], v + phase[1], period)[..., None]
    ca, cb = _two_colours(rng, kind_colours(kind, cfg.class_colours) if cfg.class_colours else None)
    pixels = ca + weight * (cb - ca)
    # Shading: a linear light ramp across the object, so "plain" is not a flat colour either.
    light = rng.uniform(0, 2 * np.pi)
    ramp = (math.cos(light) * dx + math.sin(light) * dy) / geometry["radius"]
    pixels = pixels * (rng.uniform(0.9, 1.1) + 0.15 * ramp)[..., None]
    return mask, pixels


def _void_band(depth, width):
    """Pixels within `width` (Chebyshev) of a nearer object: the band lies on the far side of outlines.

    Args:
      depth: int [S, S], -1 for background, else the drawing order of the visible object.
      width: band width in pixels.
    Returns:
      bool [S, S].
    """
    size = depth.shape[0]
    padded = np.pad(depth, width, mode="edge")  # the image border is no outline
    band = np.zeros(depth.shape, bool)
    for oy in range(-width, width + 1):
        for ox in range(-width, width + 1):
            if oy or ox:
                band |= padded[width + oy:width + oy + size, width + ox:width + ox + size] > depth
    return band


def compose(kinds, values, size, rng, cfg, scale=None, background=None):
    """Draws objects of the given kinds back to front on a background, with occlusion checks.

    Args:
      kinds: kind index of each object (0..N_KINDS-1), drawing order.
      values: label value of each object.
      size: image side.
      rng: numpy Generator.
      cfg: WorldConfig (scale, aspect and visibility ranges).
      scale: optional (low, high) radius range as a fraction of size, overriding cfg.
      background: optional float32 [S, S, 3]; a new one is rendered when None.
    Returns:
      (image uint8 [S, S, 3], label uint8 [S, S], n_drawn) where objects that could not be placed visibly
      after several tries are dropped from the end of the list (the first one never is).
    """
    img = render_background(size, rng) if background is None else background.copy()
    n = len(kinds)
    while True:
        for _ in range(25):
            layers = [_render_kind_layer(k, _object_geometry(size, rng, cfg, scale), size, rng, cfg)
                      for k in kinds[:n]]
            depth = np.full((size, size), -1, np.int32)
            for i, (mask, _) in enumerate(layers):
                depth[mask] = i
            visible = [np.count_nonzero(depth == i) for i in range(n)]
            if all(vis >= max(cfg.min_visible * np.count_nonzero(m), 12)
                   for vis, (m, _) in zip(visible, layers)):
                break
        else:
            if n > 1:
                n -= 1
                continue
        break
    label = np.zeros((size, size), np.uint8)
    for i, (mask, pixels) in enumerate(layers):
        img[mask] = pixels[mask]
        label[depth == i] = values[i]
    label[_void_band(depth, int(rng.integers(1, 3)))] = DATASET.void
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), label, n


def _domain_shift(img, amount, rng):
    """Web-like appearance change of strength `amount` in [0, 1]: colour cast, contrast, blur, noise."""
    if amount <= 0:
        return img
    x = img.astype(np.float32)
    x = x * (1 + amount * rng.uniform(-0.35, 0.35, 3)) + amount * rng.uniform(-30, 30, 3)
    x = x.mean() + (1 - 0.4 * amount * rng.random()) * (x - x.mean())
    x = np.asarray(Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(1.2 * amount * rng.random())), np.float32)
    x += rng.normal(0, 8 * amount, x.shape)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def render_kind(kind, size=64, rng=None, scale=(0.25, 0.42), domain_shift=0.0, config=None):
    """One object of any of the N_KINDS kinds on a textured background (a class-conditional sample).

    Args:
      kind: 0..N_KINDS-1 (`CLASS_KINDS[c - 1]` is the kind of class c; `EXTRA_KINDS` never occur in
        the world).
      size: image side in pixels.
      rng: numpy Generator (or a seed); None means a fresh unseeded one.
      scale: (low, high) object radius as a fraction of size; larger than in scenes (a photo of one
        thing).
      domain_shift: 0 for the world's look; up to 1 for a colour cast, lower contrast, blur and noise.
      config: WorldConfig for the aspect and visibility ranges (default WorldConfig()).
    Returns:
      (image uint8 [size, size, 3], mask uint8 [size, size]: 1 object, 0 background, 255 void band).
    """
    if not 0 <= kind < N_KINDS:
        raise ValueError(f"kind {kind} out of range; expected 0..{N_KINDS - 1}")
    rng = np.random.default_rng(rng)
    img, mask, _ = compose([kind], [1], size, rng, config or WorldConfig(), scale=scale)
    return _domain_shift(img, domain_shift, rng), mask


def render_object(class_id, size=64, rng=None, scale=(0.25, 0.42), domain_shift=0.0, config=None):
    """One object of a world class on a textured background, labelled with its class id.

    Args:
      class_id: 1..20.
      size, rng, scale, domain_shift, config: as in `render_kind`.
    Returns:
      (image uint8 [size, size, 3], label uint8 [size, size]: class_id, 0 background, 255 void).
    """
    if not 1 <= class_id <= N_CLASSES:
        raise ValueError(f"class_id {class_id} out of range; expected 1..{N_CLASSES}")
    img, mask = render_kind(CLASS_KINDS[class_id - 1], size, rng, scale, domain_shift, config)
    return img, np.where(mask == 1, np.uint8(class_id), mask).astype(np.uint8)


def render_scene(primary_class, rng, config=None):
    """One world image: the primary class plus 0-2 co-occurring objects.

    Args:
      primary_class: 1..20, always visible in the result.
      rng: numpy Generator.
      config: WorldConfig.
    Returns:
      (image uint8 [S, S, 3], label uint8 [S, S]) with S = config.image_size.
    """
    cfg = config or WorldConfig()
    n = int(rng.choice(len(cfg.object_count_probs), p=cfg.object_count_probs)) + 1
    classes = [primary_class]
    for _ in range(n - 1):
        if rng.random() < cfg.cooccurrence_prob:
            classes.append(int(rng.choice(COOCCURRENCE[primary_class])))
        else:
            classes.append(int(rng.integers(1, N_CLASSES + 1)))
    # The primary stays first (the back of the scene): `compose` drops objects from the end only.
    order = [0] + list(1 + rng.permutation(n - 1))
    classes = [classes[i] for i in order]
    kinds = [CLASS_KINDS[c - 1] for c in classes]
    img, label, _ = compose(kinds, classes, cfg.image_size, rng, cfg)
    return img, label


# ------------------------------------------------------------------------------------------ folder


def _atomic_save(pil_image, path, **kwargs):
    with artifacts.atomic_path(path) as tmp:
        pil_image.save(tmp, **kwargs)


def image_ids(split, count):
    """Ids of a split: e.g. train_000000 .. train_{count-1}."""
    return [f"{split}_{i:06d}" for i in range(count)]


def generate_world(root, seed=0, image_size=64, train_per_class=100, val_per_class=20, overwrite=False,
                   **kwargs):
    """Writes a generated world in Pascal VOC layout (skipped when `root` already holds the same world).

    Args:
      root: output folder; gets JPEGImages/, SegmentationClassAug/, ImageSets/Segmentation/{train,val}.txt
        and world.json (the settings, written last: its presence marks a complete world).
      seed, image_size, train_per_class, val_per_class: see WorldConfig.
      overwrite: replace a world of different settings instead of failing.
      **kwargs: further WorldConfig fields.
    Returns:
      dict: the settings, counts and whether the world was reused.
    Raises:
      ValueError: `root` holds a world of other settings and overwrite is False.
    """
    cfg = WorldConfig(seed=seed, image_size=image_size, train_per_class=train_per_class,
                      val_per_class=val_per_class, **kwargs)
    settings = {"version": WORLD_VERSION, **dataclasses.asdict(cfg)}
    settings = json.loads(json.dumps(settings))  # tuples as lists, as they come back from the file
    meta_path = os.path.join(root, "world.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            old = json.load(f)
        if old.get("settings") == settings:
            logging.info("World in %s already complete (seed %d); reused.", root, seed)
            return {**old, "reused": True}
        if not overwrite:
            raise ValueError(f"{meta_path} holds a world with settings {old.get('settings')}, expected "
                             f"{settings}; pass overwrite=True or choose another folder")
        os.remove(meta_path)
    layout = DATASET.layout
    image_dir, label_dir = os.path.join(root, layout.image_dir), os.path.join(root, layout.label_dirs[0])
    lists = {"train": os.path.join(root, layout.train_list), "val": os.path.join(root, layout.val_list)}
    for d in (image_dir, label_dir, *map(os.path.dirname, lists.values())):
        os.makedirs(d, exist_ok=True)
    start = time.time()
    counts = {}
    for split_code, (split, per_class) in enumerate((("train", train_per_class), ("val", val_per_class))):
        # Class balance: each class is primary in exactly per_class images, in a seeded random order.
        primaries = np.random.default_rng([seed, split_code, 10 ** 9]).permutation(
            np.repeat(np.arange(1, N_CLASSES + 1), per_class))
        ids = image_ids(split, len(primaries))
        for index, (image_id, primary) in enumerate(tqdm(list(zip(ids, primaries)), desc=f"world {split}",
                                                         leave=False)):
            rng = np.random.default_rng([seed, split_code, index])
            img, label = render_scene(int(primary), rng, cfg)
            image_path, label_path = layout.example_paths(image_dir, label_dir, image_id)
            _atomic_save(Image.fromarray(img), image_path, format="JPEG", quality=cfg.jpeg_quality, subsampling=0)
            _atomic_save(Image.fromarray(label, mode="L"), label_path, format="PNG")
        artifacts.write_text(lists[split], "".join(i + "\n" for i in ids))
        counts[split] = len(ids)
    meta = {"settings": settings, "counts": counts,
            "classes": {DATASET.class_names[c]: describe_class(c) for c in range(1, N_CLASSES + 1)}}
    artifacts.write_json(meta_path, meta)
    logging.info("World written to %s: %d train, %d val images of %dx%d in %.1f s.", root, counts["train"],
                 counts["val"], image_size, image_size, time.time() - start)
    return {**meta, "reused": False}


def describe_class(class_id):
    """E.g. 'striped disk' style description: '<texture> <shape>' of a class 1..20."""
    kind = CLASS_KINDS[class_id - 1]
    return f"{TEXTURES[kind % len(TEXTURES)]} {SHAPES[kind // len(TEXTURES)]}"


def save_sample_grid(root, out_png, n=16, split="train", columns=8, zoom=2):
    """Writes a picture of the first `n` images of a split, each above its VOC-coloured label.

    Args:
      root: a VOC-layout folder (e.g. a generated world).
      out_png: output path (PNG).
      n: number of samples; columns: samples per row; zoom: integer upscaling (nearest).
    Returns:
      The output path.
    """
    layout = DATASET.layout
    list_path = os.path.join(root, {"train": layout.train_list, "val": layout.val_list}[split])
    with open(list_path) as f:
        ids = f.read().split()[:n]
    palette = DATASET.palette()
    tiles = []
    for image_id in ids:
        image_path, label_path = layout.example_paths(os.path.join(root, layout.image_dir),
                                                      os.path.join(root, layout.label_dirs[0]), image_id)
        img = np.asarray(Image.open(image_path).convert("RGB"))
        label = np.asarray(Image.open(label_path))
        tile = Image.fromarray(np.concatenate([img, palette[label]], axis=0))
        tile = tile.resize((tile.width * zoom, tile.height * zoom), Image.NEAREST)
        names = [DATASET.class_names[c] for c in np.unique(label) if 0 < c <= N_CLASSES]
        canvas = Image.new("RGB", (tile.width, tile.height + 12), (255, 255, 255))
        canvas.paste(tile, (0, 0))
        ImageDraw.Draw(canvas).text((2, tile.height), "+".join(names)[:tile.width // 6], fill=(0, 0, 0))
        tiles.append(canvas)
    if not tiles:
        raise ValueError(f"{list_path} lists no image")
    tw, th = tiles[0].size
    rows = math.ceil(len(tiles) / columns)
    grid = Image.new("RGB", (min(columns, len(tiles)) * (tw + 4), rows * (th + 4)), (255, 255, 255))
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % columns) * (tw + 4), (i // columns) * (th + 4)))
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    _atomic_save(grid, out_png, format="PNG")
    return out_png
