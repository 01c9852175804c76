"""The embedded benchmark's class-conditional "GAN": a TF2 SavedModel with BigGAN's inputs.

Signature "default": z float [N, 128], y one-hot float [N, K], truncation float scalar -> "default" float
[N, S, S, 3] in [-1, 1]. Its K generator classes hold the 20 world classes at positions given by a hidden
seeded permutation, among distractors: the 10 shape/texture kinds the world never shows, background only, and
pairs of unseen kinds. It draws from a bank of pre-rendered images per class; z picks the image and small
augmentations (flip, shift, brightness), whose strength scales with the truncation.

The classifier (classifier.py) trains on its own renders of the same generator classes (render_bank with
another stream), and gan/generate_gan.py finds the class mapping with it: the permutation is never read.
"""

import itertools

import numpy as np
from tqdm import tqdm

import artifacts
from embedded_benchmark import world

CLASSES = tuple(range(1, world.N_CLASSES + 1))
Z_DIM = 128  # BigGAN's latent size
BANK_SCALE = (0.16, 0.42)  # object radius / image side of generator and classifier images
SECOND_OBJECT_PROB = 0.35  # a "photo of X" sometimes shows something else too
MAX_GENERATOR_CLASSES = 20 + 10 + 1 + 45  # world classes, unseen kinds, background, pairs of unseen kinds


def save_model(module, path, signatures):
    """tf.saved_model.save into a temporary folder, renamed to `path` when complete (replacing an old one)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    with artifacts.atomic_path(path) as tmp:
        tf.saved_model.save(module, tmp, signatures=signatures)


# ------------------------------------------------------------------------------------------ generator classes


def _distractors(seed, k):
    """The first k distractor contents: unseen kinds, background only, then pairs of unseen kinds."""
    pairs = list(itertools.combinations(world.EXTRA_KINDS, 2))
    order = np.random.default_rng([seed, 2, 0]).permutation(len(pairs))
    items = ([("kind", kind) for kind in world.EXTRA_KINDS] + [("background",)]
             + [("pair",) + pairs[i] for i in order])
    return items[:k]


def generator_contents(seed, n_classes):
    """What each generator class shows (hidden from the mapping).

    Returns:
      list of n_classes tuples, index = generator class: ("class", c) for world class c, ("kind", kind) for a
      kind the world never shows, ("background",), or ("pair", kind_a, kind_b). The 20 world classes sit
      at positions given by a seeded permutation.
    """
    contents = [("class", c) for c in CLASSES] + _distractors(seed, n_classes - len(CLASSES))
    order = np.random.default_rng([seed, 2, 1]).permutation(n_classes)
    return [contents[i] for i in order]


def hidden_mapping(seed, n_classes):
    """{world class: its generator class}: the answer the classifier-based mapping should find."""
    return {item[1]: k for k, item in enumerate(generator_contents(seed, n_classes)) if item[0] == "class"}


def background(size, rng):
    """uint8 [size, size, 3]: a world background with pixel noise, no object (also the web's empty images)."""
    noise = rng.normal(0, 3, (size, size, 3))
    return np.clip(world.render_background(size, rng) + noise + 0.5, 0, 255).astype(np.uint8)


def render_content(item, size, rng, world_config):
    """One image of a generator class: its object (sometimes with another one), a background, or a pair.

    Args:
      item: an entry of generator_contents.
      size: image side.
      rng: numpy Generator.
      world_config: world.WorldConfig (aspect and visibility ranges).
    Returns:
      uint8 [size, size, 3].
    """
    if item[0] == "background":
        return background(size, rng)
    if item[0] == "pair":
        return world.compose(list(item[1:]), [1, 2], size, rng, world_config, scale=(0.16, 0.3))[0]
    kind = world.CLASS_KINDS[item[1] - 1] if item[0] == "class" else item[1]
    if rng.random() < SECOND_OBJECT_PROB:  # the main object stays first: compose drops from the end only
        other = int(rng.integers(world.N_KINDS))
        return world.compose([kind, other], [1, 2], size, rng, world_config, scale=(0.16, 0.36))[0]
    return world.render_kind(kind, size, rng, scale=BANK_SCALE, config=world_config)[0]


def render_bank(cfg, stream, per_class, desc):
    """uint8 [K, per_class, S, S, 3]: images of every generator class, seeded by (seed, stream, class, i).

    cfg: a resolved build.EmbeddedConfig (seed, generator_classes, image_size, world_config()).
    """
    contents = generator_contents(cfg.seed, cfg.generator_classes)
    wcfg = cfg.world_config()
    bank = np.zeros((len(contents), per_class, cfg.image_size, cfg.image_size, 3), np.uint8)
    for k, item in enumerate(tqdm(contents, desc=desc, leave=False)):
        for i in range(per_class):
            bank[k, i] = render_content(item, cfg.image_size, np.random.default_rng([cfg.seed, stream, k, i]),
                                        wcfg)
    return bank


# ------------------------------------------------------------------------------------------ the SavedModel


def make_generator_module(bank, seed):
    """A tf.Module whose `generate` has BigGAN's signature and samples the bank.

    Args:
      bank: uint8 [K, B, S, S, 3].
      seed: seeds the fixed projection that turns z into an image index and augmentation values.
    Returns:
      the module; generate(z float32 [N, 128], y float32 [N, K], truncation float32 []) ->
      {"default": float32 [N, S, S, 3] in [-1, 1]}: the bank image of class argmax(y) picked by z, mirrored,
      shifted (up to S/8 pixels) and brightened (up to 10 %) by amounts from z, scaled by the truncation.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    n_classes, per_class, size = bank.shape[0], bank.shape[1], bank.shape[2]
    projection = np.random.default_rng([seed, 2, 2]).normal(size=(Z_DIM, 5)) / np.sqrt(Z_DIM)

    class BankGenerator(tf.Module):

        def __init__(self):
            super().__init__(name="bank_generator")
            self.bank = tf.Variable(bank, trainable=False, name="bank")
            self.projection = tf.Variable(projection.astype(np.float32), trainable=False, name="projection")

        @tf.function(input_signature=[tf.TensorSpec([None, Z_DIM], tf.float32, name="z"),
                                      tf.TensorSpec([None, n_classes], tf.float32, name="y"),
                                      tf.TensorSpec([], tf.float32, name="truncation")])
        def generate(self, z, y, truncation):
            t = tf.maximum(truncation, 1e-3)
            h = tf.matmul(z / t, self.projection)  # [N, 5], about standard normal whatever the truncation
            index = tf.cast(tf.math.floormod(tf.abs(h[:, 0]) * 997.0, 1.0) * per_class, tf.int32)
            index = tf.minimum(index, per_class - 1)
            cls = tf.argmax(y, axis=1, output_type=tf.int32)
            images = tf.cast(tf.gather_nd(self.bank, tf.stack([cls, index], axis=1)), tf.float32)
            images = tf.where((h[:, 1] > 0)[:, None, None, None], tf.reverse(images, [2]), images)
            strength = tf.minimum(truncation, 1.0)
            shift = tf.cast(tf.round(tf.clip_by_value(h[:, 2:4], -2.0, 2.0) * strength * size / 16), tf.int32)
            grid = tf.range(size)[None, :]
            rows = tf.clip_by_value(grid + shift[:, :1], 0, size - 1)
            cols = tf.clip_by_value(grid + shift[:, 1:], 0, size - 1)
            images = tf.gather(images, rows, axis=1, batch_dims=1)
            images = tf.gather(images, cols, axis=2, batch_dims=1)
            images *= (1.0 + 0.1 * strength * tf.tanh(h[:, 4]))[:, None, None, None]
            return {"default": tf.clip_by_value(images / 127.5 - 1.0, -1.0, 1.0)}

    return BankGenerator()


def build_generator(cfg, path):
    """Renders the bank and saves the generator SavedModel at `path` (signature "default")."""
    bank = render_bank(cfg, 3, cfg.bank_per_class, "generator bank")
    module = make_generator_module(bank, cfg.seed)
    save_model(module, path, {"default": module.generate})
    return {"classes": cfg.generator_classes, "bank_per_class": cfg.bank_per_class,
            "megabytes": round(bank.nbytes / 2 ** 20, 1)}
