"""The embedded benchmark: a generated VOC-like world, its tfrecords and both replay sources, in one folder.

    python embedded.py [--base embedded] [--seed 0]   (main.py calls build() when ./data holds no VOC data)

`build(base)` runs the same tools as the real benchmark, on a world that needs no download:

  1. world    world.generate_world -> <base>/voc (Pascal VOC layout)
     data     prepare_data.prepare -> <base>/data (every training and validation tfrecord)
  2. generator  a class-conditional "GAN" with BigGAN's inputs -> <base>/models/generator (TF2 SavedModel,
              signature "default": z float [N, 128], y one-hot float [N, K], truncation float scalar ->
              "default" float [N, S, S, 3] in [-1, 1]). Its K generator classes hold the 20 world classes
              at positions given by a hidden seeded permutation, among distractors: the 10 shape/texture
              kinds the world never shows, background only, and pairs of unseen kinds. It draws from a bank
              of pre-rendered images per class; z picks the image and small augmentations (flip, shift,
              brightness), whose strength scales with the truncation.
  3. classifier  a small CNN over the K generator classes -> <base>/models/classifier (signature
              "serving_default": images float [N, C, C, 3] in [0, 1] -> "logits" [N, K]), trained on its
              own renders of the generator classes (as EfficientNet on ImageNet: it never sees the
              generator's samples).
     gan_replay  gan/generate_gan.generate: the classifier maps every world class to a generator class from
              the world's training images (the permutation is never read), then samples
              <base>/data/replay_images/gan/{cc}.tfrecord. How many of the 20 classes the mapping got right
              is recorded in world_settings.json.
  4. web_replay  "search results" per class in <base>/web/{cc}/ (0000.jpg ..., manifest.json in the format
              of flickr/download_flickr.py): the class's objects with a domain shift, plus wrong-class and
              object-less images as web search returns; flickr's folders_to_tfrecords makes
              <base>/data/replay_images/flickr/{cc}.tfrecord.

`<base>/world_settings.json` records the settings (written first) and each finished phase (its time and
report). A phase whose outputs are complete is skipped, so a second build returns at once and an interrupted
one goes on where it stopped; a phase that runs again invalidates the phases that depend on it. Other
settings than the recorded ones are an error: delete the folder to rebuild. Everything is a function of the
seed: the same seed gives the same bytes.
"""

import runtime  # first: oneDNN kernels before TensorFlow loads; worker processes
import dataclasses
import hashlib
import io
import itertools
import json
import os
import shutil
import time

from absl import app
from absl import flags
from absl import logging
import gin
import numpy as np
from PIL import Image
from tqdm import tqdm

import artifacts
import data_loader
import world

ROOT = os.path.dirname(os.path.abspath(__file__))
EMBEDDED_VERSION = 1
SETTINGS_FILE = "world_settings.json"
CLASSES = tuple(range(1, world.N_CLASSES + 1))
Z_DIM = 128  # BigGAN's latent size
PHASES = ("world", "data", "encoder", "generator", "classifier", "gan_replay", "web_replay")
PROGRESS_BARS = True  # False in the second process of a parallel build
# The embedded world: one main colour per class (shared by about two classes, so shape and texture still
# decide) and large objects, so that a small network learns it within the minutes-long benchmark; mostly one
# object per image (96%), so that the images of a new step rarely show old classes and fine-tuning forgets
# them as it does on VOC after its 1000 steps per class. With 2-3 objects in half of the images, in 20% or
# in 8% of them, fine-tuning's new images showed labelled old objects often enough (sequential protocol) to
# keep it within 20 points of RECALL on 10-1 within the few steps of the embedded benchmark.
WORLD_OPTIONS = {"class_colours": 1, "min_scale": 0.25, "max_scale": 0.4,
                 "object_count_probs": (0.96, 0.03, 0.01)}
# Phases whose outputs a phase reads: when a phase runs, the phases that depend on it are made again.
DEPENDS = {"data": ("world",), "gan_replay": ("data", "generator", "classifier")}
BANK_SCALE = (0.16, 0.42)  # object radius / image side of generator and classifier images
SECOND_OBJECT_PROB = 0.35  # a "photo of X" sometimes shows something else too
WEB_MANIFEST = "manifest.json"  # flickr/download_flickr.py's MANIFEST (checked in build_web_replay)
MAX_GENERATOR_CLASSES = 20 + 10 + 1 + 45  # world classes, unseen kinds, background, pairs of unseen kinds


@dataclasses.dataclass(frozen=True)
class EmbeddedConfig:
    """Settings of an embedded benchmark (recorded in world_settings.json).

    Attributes:
      seed: master seed of everything.
      image_size, train_per_class, val_per_class: of the world (world.WorldConfig); None = its default.
      world_options: further world.WorldConfig fields, e.g. {"max_scale": 0.35}.
      replay_per_class: images per class of each replay source; None = train_per_class.
      generator_classes: K, the generator's class space (21..76; the 20 world classes are among them).
      bank_per_class: pre-rendered images per generator class inside the generator.
      classifier_size: side C of the classifier input; None = image_size.
      classifier_images_per_class: renders per generator class in the classifier's training set.
      classifier_steps, classifier_batch, classifier_lr: its training (Adam, cosine decay).
      truncation: of the GAN replay sampling.
      pretrain_steps, pretrain_per_kind: the encoder's pretraining (steps of batch 32; renders per kind).
      web_wrong_class, web_no_object: fractions of web images showing another class / no object.
      web_domain_shift: strength (0..1) of the web look (world.render_object's domain_shift).
    """
    seed: int = 0
    image_size: int = None
    train_per_class: int = None
    val_per_class: int = None
    world_options: dict = dataclasses.field(default_factory=dict)
    replay_per_class: int = None
    generator_classes: int = 48
    bank_per_class: int = 40
    classifier_size: int = None
    classifier_images_per_class: int = 128
    classifier_steps: int = 2000
    classifier_batch: int = 32
    classifier_lr: float = 3e-3
    truncation: float = 1.0
    pretrain_steps: int = 3000
    pretrain_per_kind: int = 60
    web_wrong_class: float = 0.06
    web_no_object: float = 0.05
    web_domain_shift: float = 0.6

    def resolved(self):
        """A copy with every None replaced by its default, checked."""
        defaults = world.WorldConfig()
        reserved = {"seed", "image_size", "train_per_class", "val_per_class"}
        unknown = sorted(set(self.world_options) - ({f.name for f in dataclasses.fields(world.WorldConfig)}
                                                    - reserved))
        if unknown:
            raise ValueError(f"world_options {unknown}: expected further world.WorldConfig fields")
        cfg = dataclasses.replace(
            self,
            image_size=self.image_size or defaults.image_size,
            train_per_class=self.train_per_class or defaults.train_per_class,
            val_per_class=self.val_per_class or defaults.val_per_class,
            world_options=dict(sorted(self.world_options.items())))
        cfg = dataclasses.replace(cfg, replay_per_class=cfg.replay_per_class or cfg.train_per_class,
                                  classifier_size=cfg.classifier_size or cfg.image_size)
        if not len(CLASSES) < cfg.generator_classes <= MAX_GENERATOR_CLASSES:
            raise ValueError(f"generator_classes {cfg.generator_classes}: expected more than {len(CLASSES)} "
                             f"and at most {MAX_GENERATOR_CLASSES}")
        for name in ("replay_per_class", "bank_per_class", "classifier_size", "classifier_images_per_class",
                     "classifier_steps", "classifier_batch", "pretrain_steps", "pretrain_per_kind"):
            if not (isinstance(getattr(cfg, name), int) and getattr(cfg, name) > 0):
                raise ValueError(f"{name} {getattr(cfg, name)!r}: expected a positive int")
        for name in ("web_wrong_class", "web_no_object"):
            if not 0 <= getattr(cfg, name) < 0.5:
                raise ValueError(f"{name} {getattr(cfg, name)}: expected a fraction in [0, 0.5)")
        if not 0 <= cfg.web_domain_shift <= 1 or not 0 < cfg.truncation <= 1:
            raise ValueError(f"web_domain_shift {cfg.web_domain_shift} / truncation {cfg.truncation}: "
                             "expected in [0, 1] / (0, 1]")
        cfg.world_config()  # lets world.WorldConfig check its own fields before anything is written
        return cfg

    def world_config(self):
        return world.WorldConfig(seed=self.seed, image_size=self.image_size,
                                 train_per_class=self.train_per_class, val_per_class=self.val_per_class,
                                 **self.world_options)


def _json_safe(value):
    return json.loads(json.dumps(value))


# ------------------------------------------------------------------------------------------ settings file


def _open_settings(base, cfg):
    """Reads <base>/world_settings.json (or starts it); raises ValueError when it holds other settings."""
    path = os.path.join(base, SETTINGS_FILE)
    wanted = {"embedded_version": EMBEDDED_VERSION, "world_version": world.WORLD_VERSION,
              "settings": _json_safe(dataclasses.asdict(cfg))}
    if os.path.exists(path):
        with open(path) as f:
            doc = json.load(f)
        old = {k: doc.get(k) for k in wanted}
        if old != wanted:
            changed = sorted(k for k in set(old["settings"] or {}) | set(wanted["settings"])
                             if (old["settings"] or {}).get(k) != wanted["settings"].get(k))
            changed += [k for k in ("embedded_version", "world_version") if old[k] != wanted[k]]
            raise ValueError(
                f"{path} records an embedded benchmark built with other settings (changed: {changed}; "
                f"recorded {old}, asked {wanted}). Delete the folder {base!r} to rebuild it, or choose "
                "another base folder.")
        return doc
    os.makedirs(base, exist_ok=True)
    doc = dict(wanted, phases={})
    artifacts.write_json(path, doc)
    return doc


# ------------------------------------------------------------------------------------------ helpers


def _replay_complete(folder, n):
    return all(data_loader.framed_record_count(os.path.join(folder, f"{c:02d}.tfrecord")) == n for c in CLASSES)


def _save_model(module, path, signatures):
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


def _background(size, rng):
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
        return _background(size, rng)
    if item[0] == "pair":
        return world.compose(list(item[1:]), [1, 2], size, rng, world_config, scale=(0.16, 0.3))[0]
    kind = world.CLASS_KINDS[item[1] - 1] if item[0] == "class" else item[1]
    if rng.random() < SECOND_OBJECT_PROB:  # the main object stays first: compose drops from the end only
        other = int(rng.integers(world.N_KINDS))
        return world.compose([kind, other], [1, 2], size, rng, world_config, scale=(0.16, 0.36))[0]
    return world.render_kind(kind, size, rng, scale=BANK_SCALE, config=world_config)[0]


def render_bank(cfg, stream, per_class, desc):
    """uint8 [K, per_class, S, S, 3]: images of every generator class, seeded by (seed, stream, class, i)."""
    contents = generator_contents(cfg.seed, cfg.generator_classes)
    wcfg = cfg.world_config()
    bank = np.zeros((len(contents), per_class, cfg.image_size, cfg.image_size, 3), np.uint8)
    for k, item in enumerate(tqdm(contents, desc=desc, leave=False)):
        for i in range(per_class):
            bank[k, i] = render_content(item, cfg.image_size, np.random.default_rng([cfg.seed, stream, k, i]),
                                        wcfg)
    return bank


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
    _save_model(module, path, {"default": module.generate})
    return {"classes": cfg.generator_classes, "bank_per_class": cfg.bank_per_class,
            "megabytes": round(bank.nbytes / 2 ** 20, 1)}


# ------------------------------------------------------------------------------------------ classifier


def _features(images):
    """Colour-blind input of the classifier: grey level, chroma and distance from mid-grey, standardised.

    Objects and backgrounds differ in chroma and extremeness rather than hue (every class comes in every
    colour), so these three channels make shapes easy to see.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    grey = tf.image.rgb_to_grayscale(images)
    chroma = tf.reduce_max(images, -1, keepdims=True) - tf.reduce_min(images, -1, keepdims=True)
    extreme = tf.reduce_mean(tf.abs(images - 0.5), -1, keepdims=True)
    x = tf.concat([grey, chroma, extreme], -1)
    mean, var = tf.nn.moments(x, [1, 2], keepdims=True)
    return (x - mean) / tf.sqrt(var + 1e-4)


def _classifier_network(size, n_classes, seed):
    import keras  # pylint: disable=g-import-not-at-top
    layers = keras.layers
    inputs = keras.Input((size, size, 3))
    x = inputs
    # A strided 5x5 stem sees the fine textures at full resolution; three pooled stages see the shapes.
    for i, width in enumerate((32, 64, 128, 128)):
        if i:
            x = layers.MaxPool2D()(x)
        x = layers.Conv2D(width, 3 if i else 5, strides=1 if i else 2, padding="same", use_bias=False,
                          kernel_initializer=keras.initializers.HeNormal(seed=seed * 100 + i))(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(n_classes,
                           kernel_initializer=keras.initializers.GlorotUniform(seed=seed * 100 + 99))(x)
    return keras.Model(inputs, outputs, name="embedded_classifier")


def train_classifier(cfg, images, labels):
    """Trains the CNN on images (uint8 [N, S, S, 3]) with generator-class labels (int [N]).

    Returns:
      (keras model on _features of [B, C, C, 3] images, final mean loss).
    """
    import keras  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    size = cfg.classifier_size
    x = tf.image.resize(images.astype(np.float32) / 255.0, [size, size], antialias=True).numpy()
    model = _classifier_network(size, cfg.generator_classes, cfg.seed)
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(cfg.classifier_lr,
                                                                             cfg.classifier_steps))

    @tf.function
    def step(batch, target):
        with tf.GradientTape() as tape:
            logits = model(_features(batch), training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(target, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    rng = np.random.default_rng([cfg.seed, 5, 0])
    n, losses = cfg.classifier_batch, []
    for _ in tqdm(range(cfg.classifier_steps), desc="classifier", leave=False):
        pick = rng.integers(0, len(x), n)
        batch = x[pick]
        batch = np.where((rng.random(n) < 0.5)[:, None, None, None], batch[:, :, ::-1], batch)
        batch = np.where((rng.random(n) < 0.5)[:, None, None, None], batch.transpose(0, 2, 1, 3), batch)
        batch = batch * rng.uniform(0.8, 1.2, (n, 1, 1, 1)) + rng.uniform(-0.08, 0.08, (n, 1, 1, 3))
        losses.append(float(step(np.clip(batch, 0, 1).astype(np.float32), labels[pick].astype(np.int32))))
    return model, float(np.mean(losses[-50:]))


def build_classifier(cfg, path):
    """Trains the classifier over the generator classes and saves it at `path` (signature with `images`)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    bank = render_bank(cfg, 4, cfg.classifier_images_per_class, "classifier images")
    labels = np.repeat(np.arange(cfg.generator_classes), cfg.classifier_images_per_class)
    model, loss = train_classifier(cfg, bank.reshape((-1,) + bank.shape[2:]), labels)
    size = cfg.classifier_size

    class Classifier(tf.Module):

        def __init__(self):
            super().__init__(name="embedded_classifier")
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
        def classify(self, images):
            return {"logits": self.model(_features(images), training=False)}

    module = Classifier()
    _save_model(module, path, {"serving_default": module.classify})
    return {"input_size": size, "train_images": int(len(labels)), "steps": cfg.classifier_steps,
            "final_loss": round(loss, 4)}


# ------------------------------------------------------------------------------------------ replay


def pretrained_encoder_path(base):
    """Where TrainManager looks for the encoder that step 0 starts from (extension-less)."""
    return os.path.join(base, "checkpoints", "encoders", "pretrained")


def _backbone():
    """The gin-configured backbone size (model.build_encoder's units and width), as recorded."""
    import inspect  # pylint: disable=g-import-not-at-top
    import gin  # pylint: disable=g-import-not-at-top
    import model  # pylint: disable=g-import-not-at-top
    size = {k: p.default for k, p in inspect.signature(model.build_encoder).parameters.items()}
    size.update(gin.get_bindings("backbone"))
    return {"units": [int(u) for u in size["units"]], "width": float(size["width"])}


def pretrain_encoder(cfg, path):
    """The embedded stand-in for ImageNet pretraining (the paper starts step 0 from an ImageNet ResNet-101).

    The segmentation encoder (model.build_encoder, size from gin) with a pooled linear head learns to name
    single-object renders of all 30 shape/texture kinds (the 20 world classes and the 10 kinds the world never
    shows, as ImageNet holds far more than VOC's classes), with batch norm in training mode (batch statistics,
    moving statistics updated); then it is saved where step 0 looks for a pretrained encoder.

    Returns:
      dict report: backbone, final accuracy on the last batches, steps.
    """
    import keras  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import model  # pylint: disable=g-import-not-at-top
    import data_loader  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng([cfg.seed, 7])
    kinds = np.repeat(np.arange(world.N_KINDS), cfg.pretrain_per_kind)
    images = np.stack([world.render_kind(int(k), cfg.image_size, rng)[0]
                       for k in tqdm(kinds, desc="pretraining images", leave=False, disable=not PROGRESS_BARS)])
    x = images.astype(np.float32) - np.asarray(data_loader.DEFAULT_MEAN, np.float32)
    keras.utils.set_random_seed(cfg.seed)
    encoder = model.build_encoder()
    head = keras.layers.Dense(world.N_KINDS)
    optimizer = keras.optimizers.Adam(2e-3)

    @tf.function
    def step(batch, target):
        with tf.GradientTape() as tape:
            logits = head(tf.reduce_mean(encoder(batch, training=True), axis=[1, 2]))
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(target, logits))
        variables = encoder.trainable_variables + head.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return tf.reduce_mean(tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == target, tf.float32))

    accuracy = []
    for _ in tqdm(range(cfg.pretrain_steps), desc="pretraining the encoder", leave=False,
                  disable=not PROGRESS_BARS):
        pick = rng.integers(0, len(x), 32)
        batch = np.where((rng.random(32) < 0.5)[:, None, None, None], x[pick][:, :, ::-1], x[pick])
        accuracy.append(float(step(batch, kinds[pick].astype(np.int32))))
    model.save_encoder(model.Segmenter(21, encoder=encoder), path)
    return {"backbone": _backbone(), "accuracy_last_50_steps": float(np.mean(accuracy[-50:])),
            "steps": cfg.pretrain_steps}


def build_gan_replay(cfg, base):
    """Runs gan/generate_gan.generate with the embedded generator and classifier; reports the mapping."""
    from gan import generate_gan  # pylint: disable=g-import-not-at-top  (TensorFlow Hub)
    out_dir = os.path.join(base, "data", "replay_images", "gan")
    mapping = generate_gan.generate(
        os.path.join(base, "models", "generator"), CLASSES, out_dir, images_per_class=cfg.replay_per_class,
        batch_size=64, truncation=cfg.truncation, seed=cfg.seed, image_size=cfg.image_size,
        classifier_handle=os.path.join(base, "models", "classifier"),
        mapping_tfrecords=[os.path.join(base, "data", "training_first_step",
                                        "train_sequential_1-20.tfrecord")])
    truth = hidden_mapping(cfg.seed, cfg.generator_classes)
    correct = [c for c in CLASSES if mapping[c] == truth[c]]
    logging.info("GAN class mapping: %d of %d world classes mapped to their own generator class%s.",
                 len(correct), len(CLASSES),
                 "" if len(correct) == len(CLASSES) else
                 f" (wrong: {[world.CLASS_NAMES[c] for c in CLASSES if c not in correct]})")
    return {"mapping_correct": len(correct), "mapping": {str(c): mapping[c] for c in CLASSES},
            "hidden_mapping": {str(c): truth[c] for c in CLASSES},
            "wrong_classes": [c for c in CLASSES if c not in correct]}


def _shift_look(image, amount, rng):
    """A web-like colour cast, contrast change and noise for images without an object."""
    x = image.astype(np.float32)
    x = x * (1 + amount * rng.uniform(-0.35, 0.35, 3)) + amount * rng.uniform(-30, 30, 3)
    x = x.mean() + (1 - 0.4 * amount * rng.random()) * (x - x.mean()) + rng.normal(0, 8 * amount, x.shape)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def web_results(cfg, class_id):
    """The "search results" of one class, in order: list of (uint8 [S, S, 3], content, shown class).

    content is "class" (an object of class_id), "wrong_class" (an object of another class, shown class)
    or "no_object" (scenery only, shown class 0); the noisy ones sit at seeded random positions.
    """
    n = cfg.replay_per_class
    kinds = np.array(["class"] * n, dtype=object)
    order = np.random.default_rng([cfg.seed, 6, class_id]).permutation(n)
    n_wrong, n_empty = round(cfg.web_wrong_class * n), round(cfg.web_no_object * n)
    kinds[order[:n_wrong]] = "wrong_class"
    kinds[order[n_wrong:n_wrong + n_empty]] = "no_object"
    wcfg, results = cfg.world_config(), []
    for i, content in enumerate(kinds):
        rng = np.random.default_rng([cfg.seed, 7, class_id, i])
        shown = class_id
        if content == "wrong_class":
            shown = int(rng.choice([c for c in CLASSES if c != class_id]))
        if content == "no_object":
            image, shown = _shift_look(_background(cfg.image_size, rng), cfg.web_domain_shift, rng), 0
        else:
            image = world.render_object(shown, cfg.image_size, rng, domain_shift=cfg.web_domain_shift,
                                        config=wcfg)[0]
        results.append((image, str(content), shown))
    return results


def _write_web_class(cfg, folder, class_id, keyword):
    os.makedirs(folder, exist_ok=True)
    entries = []
    for i, (image, content, shown) in enumerate(web_results(cfg, class_id)):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=90)
        data, name = buf.getvalue(), f"{i:04d}.jpg"
        artifacts.write_bytes(os.path.join(folder, name), data)
        entries.append({"file": name, "photo_id": f"embedded-{class_id:02d}-{i:04d}", "owner": "embedded",
                        "owner_name": "embedded world", "license": "0",
                        "url": f"embedded://web/{class_id:02d}/{name}",
                        "sha1": hashlib.sha1(data).hexdigest(), "content": content, "shown_class": shown})
    manifest = {"class": class_id, "keyword": keyword, "next_page": 2, "images": entries, "rejected": {}}
    artifacts.write_json(os.path.join(folder, WEB_MANIFEST), manifest)


def _web_class_complete(folder, n):
    path = os.path.join(folder, WEB_MANIFEST)
    if not os.path.exists(path):
        return False
    with open(path) as f:
        names = [e["file"] for e in json.load(f)["images"]]
    return len(names) == n and all(os.path.exists(os.path.join(folder, name)) for name in names)


def build_web_replay(cfg, base):
    """Writes the web folders (skipping complete classes) and turns them into the flickr replay tfrecords."""
    from flickr import download_flickr  # pylint: disable=g-import-not-at-top  (flickrapi)
    assert download_flickr.MANIFEST == WEB_MANIFEST, download_flickr.MANIFEST
    web_dir = os.path.join(base, "web")
    out_dir = os.path.join(base, "data", "replay_images", "flickr")
    todo = []
    for c in tqdm(CLASSES, desc="web folders", leave=False):
        folder = os.path.join(web_dir, f"{c:02d}")
        if not _web_class_complete(folder, cfg.replay_per_class):
            _write_web_class(cfg, folder, c, download_flickr.KEYWORDS[c])
            todo.append(c)
        elif data_loader.framed_record_count(os.path.join(out_dir, f"{c:02d}.tfrecord")) != cfg.replay_per_class:
            todo.append(c)
    if todo:
        download_flickr.folders_to_tfrecords(web_dir, out_dir, todo)
    n_wrong, n_empty = round(cfg.web_wrong_class * cfg.replay_per_class), round(cfg.web_no_object
                                                                               * cfg.replay_per_class)
    return {"images_per_class": cfg.replay_per_class, "wrong_class_per_class": n_wrong,
            "no_object_per_class": n_empty}


# ------------------------------------------------------------------------------------------ build


def _phase_outputs_complete(name, cfg, base, record):
    """Whether the outputs of a recorded phase are still all there."""
    data = os.path.join(base, "data")
    if name == "world":
        return os.path.exists(os.path.join(base, "voc", "world.json"))
    if name == "data":
        files = record.get("files")
        return bool(files) and all(os.path.exists(os.path.join(base, p)) for p in files)
    if name in ("generator", "classifier"):
        return os.path.exists(os.path.join(base, "models", name, "saved_model.pb"))
    if name == "encoder":
        import model  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
        return (os.path.exists(pretrained_encoder_path(base) + model.CHECKPOINT_SUFFIX)
                and record.get("backbone") == _backbone())
    if name == "gan_replay":
        return _replay_complete(os.path.join(data, "replay_images", "gan"), cfg.replay_per_class)
    if name == "web_replay":
        return (all(_web_class_complete(os.path.join(base, "web", f"{c:02d}"), cfg.replay_per_class)
                    for c in CLASSES)
                and _replay_complete(os.path.join(data, "replay_images", "flickr"), cfg.replay_per_class))
    raise AssertionError(name)


def _run_phase(name, cfg, base):
    """Runs one phase; returns its report (a JSON-able dict)."""
    if name == "world":
        meta = world.generate_world(os.path.join(base, "voc"), **dataclasses.asdict(cfg.world_config()))
        return {"counts": meta["counts"]}
    if name == "data":
        import prepare_data  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
        summary = prepare_data.prepare(os.path.join(base, "voc"), os.path.join(base, "data"))
        return {"n_train": summary["n_train"], "n_val": summary["n_val"],
                "files": sorted(os.path.relpath(p, base) for p in summary["files"])}
    if name in ("generator", "classifier"):
        os.makedirs(os.path.join(base, "models"), exist_ok=True)
        build = build_generator if name == "generator" else build_classifier
        return build(cfg, os.path.join(base, "models", name))
    if name == "encoder":
        return pretrain_encoder(cfg, pretrained_encoder_path(base))
    if name == "gan_replay":
        return build_gan_replay(cfg, base)
    if name == "web_replay":
        return build_web_replay(cfg, base)
    raise AssertionError(name)


def _run_phase_in_process(gin_config, name, cfg, base):
    """_run_phase in a spawned process, with the caller's gin bindings (the encoder's size) and no progress
    bars (they would overwrite the caller's). Its report holds its own time ("seconds")."""
    global PROGRESS_BARS
    PROGRESS_BARS = False
    import model  # pylint: disable=g-import-not-at-top,unused-import  (registers the backbone's bindings)
    gin.parse_config(gin_config, skip_unknown=True)
    start = time.time()
    report = _run_phase(name, cfg, base)
    report["seconds"] = round(time.time() - start, 2)
    return report


def _invalidate(name, cfg, base, doc):
    """Drops the records (and replay outputs) of the phases that read what `name` is about to rewrite."""
    stale = {name}
    for phase in PHASES[PHASES.index(name) + 1:]:
        if stale & set(DEPENDS.get(phase, ())):
            stale.add(phase)
            if doc["phases"].pop(phase, None) is not None:
                logging.info("phase %s will be made again (it depends on %s)", phase, name)
            if phase == "gan_replay":
                shutil.rmtree(os.path.join(base, "data", "replay_images", "gan"), ignore_errors=True)


@gin.configurable("embedded", denylist=["base", "parallel"])
def build(base="embedded", seed=0, parallel=False, **sizes):
    """Builds (or completes, or reuses) the embedded benchmark under `base`.

    Args:
      base: output folder (the experiments' base_folder_path).
      seed: master seed.
      parallel: pretrain the encoder (the longest phase; it reads no other phase's output and none reads
        its) in a second process while the other phases are built. Same outputs; for a CPU with 2 or more
        cores (two processes on one GPU would compete for its memory).
      **sizes: EmbeddedConfig fields (image_size, train_per_class, val_per_class, replay_per_class,
        generator_classes, bank_per_class, classifier_*, truncation, web_*), or further world.WorldConfig
        fields (e.g. max_scale), which go to world_options.
    Returns:
      dict {phase: seconds} for the phases in PHASES (a skipped phase takes about 0 s), plus "total".
    Raises:
      ValueError: an unknown size name, a bad value, or `base` holds a benchmark of other settings.
    """
    start = time.time()
    own = {f.name for f in dataclasses.fields(EmbeddedConfig)} - {"seed", "world_options"}
    world_fields = {f.name for f in dataclasses.fields(world.WorldConfig)} - {"seed"}
    unknown = sorted(set(sizes) - own - world_fields)
    if unknown:
        raise ValueError(f"unknown embedded build setting(s) {unknown}; expected EmbeddedConfig fields "
                         f"{sorted(own)} or world.WorldConfig fields {sorted(world_fields - own)}")
    world_options = dict(WORLD_OPTIONS, **{k: v for k, v in sizes.items() if k not in own})
    world_options = {k: list(v) if isinstance(v, tuple) else v for k, v in world_options.items()}
    cfg = EmbeddedConfig(seed=seed, world_options=world_options,
                         **{k: v for k, v in sizes.items() if k in own}).resolved()
    doc = _open_settings(base, cfg)
    path = os.path.join(base, SETTINGS_FILE)
    timings, background = {}, None

    def record(name, report):
        doc["phases"][name] = _json_safe(report)
        artifacts.write_json(path, doc)
        logging.info("embedded %s: built in %.1f s", name, report["seconds"])
        timings[name] = report["seconds"]

    with runtime.worker_pool(1) as pool:
        for name in PHASES:
            t0 = time.time()
            done = doc["phases"].get(name)
            if done is not None and _phase_outputs_complete(name, cfg, base, done):
                logging.info("embedded %s: complete, skipped", name)
                timings[name] = time.time() - t0
                continue
            _invalidate(name, cfg, base, doc)
            if parallel and name == "encoder":
                logging.info("embedded %s: building in a second process", name)
                background = pool.submit(_run_phase_in_process, gin.config_str(), name, cfg, base)
                continue
            logging.info("embedded %s: building", name)
            report = _run_phase(name, cfg, base)
            report["seconds"] = round(time.time() - t0, 2)
            record(name, report)
        if background is not None:
            record("encoder", background.result())
    timings["total"] = time.time() - start
    gan = doc["phases"]["gan_replay"]
    logging.info("embedded benchmark in %s ready in %.1f s (GAN class mapping %d/%d correct)", base,
                 timings["total"], gan["mapping_correct"], len(CLASSES))
    return timings


def define_flags():
    """Defines the command-line flags (only when run as a script: main.py imports this module)."""
    flags.DEFINE_string("base", "embedded", "Output folder.")
    flags.DEFINE_integer("seed", 0, "Master seed.")


def main(argv):
    del argv
    for phase, seconds in build(flags.FLAGS.base, flags.FLAGS.seed).items():
        logging.info("time: %s %.1f s", phase, seconds)


if __name__ == "__main__":
    define_flags()
    app.run(main)
