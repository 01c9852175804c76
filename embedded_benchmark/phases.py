"""The embedded benchmark's build: its settings, its phases, and the command line.

    python -m embedded_benchmark [--base embedded] [--seed 0]   (main.py calls build() without VOC data)

`build(base)` runs the same tools as the real benchmark, on a world that needs no download:

  1. world    world.generate_world -> <base>/voc (Pascal VOC layout)
     data     prepare_data.prepare -> <base>/data (every training and validation tfrecord)
     encoder  pretraining.pretrain_encoder -> <base>/checkpoints/encoders/pretrained (the encoder that step 0
              starts from, as the paper's ImageNet ResNet-101)
  2. generator  generator.build_generator: a class-conditional "GAN" with BigGAN's inputs ->
              <base>/models/generator (TF2 SavedModel, signature "default": z float [N, 128], y one-hot float
              [N, K], truncation float scalar -> "default" float [N, S, S, 3] in [-1, 1]). Its K generator
              classes hold the 20 world classes at positions given by a hidden seeded permutation, among
              distractors: the 10 shape/texture kinds the world never shows, background only, and pairs of
              unseen kinds. It draws from a bank of pre-rendered images per class; z picks the image and small
              augmentations (flip, shift, brightness), whose strength scales with the truncation.
  3. classifier  classifier.build_classifier: a small CNN over the K generator classes ->
              <base>/models/classifier (signature "serving_default": images float [N, C, C, 3] in [0, 1] ->
              "logits" [N, K]), trained on its own renders of the generator classes (as EfficientNet on
              ImageNet: it never sees the generator's samples).
     gan_replay  gan/generate_gan.generate: the classifier maps every world class to a generator class from
              the world's training images (the permutation is never read), then samples
              <base>/data/replay_images/gan/{cc}.tfrecord. How many of the 20 classes the mapping got right
              is recorded in world_settings.json.
  4. web_replay  web_replay.build_web_replay: "search results" per class in <base>/web/{cc}/ (0000.jpg ...,
              manifest.json in the format of flickr/download_flickr.py): the class's objects with a domain
              shift, plus wrong-class and object-less images as web search returns; flickr's
              folders_to_tfrecords makes <base>/data/replay_images/flickr/{cc}.tfrecord.

`<base>/world_settings.json` records the settings (written first) and each finished phase (its time and
report). A phase whose outputs are complete is skipped, so a second build returns at once and an interrupted
one goes on where it stopped; a phase that runs again invalidates the phases that depend on it. Other
settings than the recorded ones are an error: delete the folder to rebuild. Everything is a function of the
seed: the same seed gives the same bytes.
"""

import runtime  # first: oneDNN kernels before TensorFlow loads; worker processes
import dataclasses
import json
import os
import shutil
import time

from absl import app
from absl import flags
from absl import logging
import gin

import artifacts
import data_loader
import paths
from embedded_benchmark import classifier
from embedded_benchmark import generator
from embedded_benchmark import pretraining
from embedded_benchmark import web_replay
from embedded_benchmark import world

EMBEDDED_VERSION = 1
SETTINGS_FILE = "world_settings.json"
PHASES = ("world", "data", "encoder", "generator", "classifier", "gan_replay", "web_replay")
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
CLASSES = generator.CLASSES  # the 20 world classes
# The gin file main.py parses for the embedded benchmark (the command line parses it too: without it the encoder
# would be pretrained at backbone.*'s default, the full ResNet-101).
EMBEDDED_GIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "embedded",
                            "embedded.gin")


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
        if not len(CLASSES) < cfg.generator_classes <= generator.MAX_GENERATOR_CLASSES:
            raise ValueError(f"generator_classes {cfg.generator_classes}: expected more than {len(CLASSES)} "
                             f"and at most {generator.MAX_GENERATOR_CLASSES}")
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


# ------------------------------------------------------------------------------------------ gan replay


def build_gan_replay(cfg, base):
    """Runs gan/generate_gan.generate with the embedded generator and classifier; reports the mapping."""
    from gan import generate_gan  # pylint: disable=g-import-not-at-top  (TensorFlow Hub)
    data = os.path.join(base, paths.DATA_DIR)
    mapping = generate_gan.generate(
        os.path.join(base, "models", "generator"), CLASSES, paths.replay_dir(data, "gan"),
        images_per_class=cfg.replay_per_class, batch_size=64, truncation=cfg.truncation, seed=cfg.seed,
        image_size=cfg.image_size, dataset=world.DATASET, classifier_handle=os.path.join(base, "models", "classifier"),
        mapping_tfrecords=list(generate_gan.default_mapping_tfrecords(world.DATASET, data)))
    truth = generator.hidden_mapping(cfg.seed, cfg.generator_classes)
    correct = [c for c in CLASSES if mapping[c] == truth[c]]
    logging.info("GAN class mapping: %d of %d world classes mapped to their own generator class%s.",
                 len(correct), len(CLASSES),
                 "" if len(correct) == len(CLASSES) else
                 f" (wrong: {[world.DATASET.class_name(c) for c in CLASSES if c not in correct]})")
    return {"mapping_correct": len(correct), "mapping": {str(c): mapping[c] for c in CLASSES},
            "hidden_mapping": {str(c): truth[c] for c in CLASSES},
            "wrong_classes": [c for c in CLASSES if c not in correct]}


# ------------------------------------------------------------------------------------------ build


def _replay_complete(data, source, n):
    """Whether a replay source's folder holds n records for every class."""
    return all(data_loader.framed_record_count(paths.replay_file(data, source, c)) == n for c in CLASSES)


def _phase_outputs_complete(name, cfg, base, record):
    """Whether the outputs of a recorded phase are still all there."""
    data = os.path.join(base, paths.DATA_DIR)
    if name == "world":
        return os.path.exists(os.path.join(base, "voc", "world.json"))
    if name == "data":
        files = record.get("files")
        return bool(files) and all(os.path.exists(os.path.join(base, p)) for p in files)
    if name in ("generator", "classifier"):
        return os.path.exists(os.path.join(base, "models", name, "saved_model.pb"))
    if name == "encoder":
        import model  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
        return (os.path.exists(pretraining.pretrained_encoder_path(base) + model.CHECKPOINT_SUFFIX)
                and record.get("backbone") == pretraining.backbone_size())
    if name == "gan_replay":
        return _replay_complete(data, "gan", cfg.replay_per_class)
    if name == "web_replay":
        return (all(web_replay.web_class_complete(paths.web_class_dir(web_replay.web_dir(base), c),
                                                  cfg.replay_per_class) for c in CLASSES)
                and _replay_complete(data, "flickr", cfg.replay_per_class))
    raise AssertionError(name)


def _run_phase(name, cfg, base, progress_bars=True):
    """Runs one phase; returns its report (a JSON-able dict). progress_bars: of the encoder's pretraining."""
    if name == "world":
        meta = world.generate_world(os.path.join(base, "voc"), **dataclasses.asdict(cfg.world_config()))
        return {"counts": meta["counts"]}
    if name == "data":
        import prepare_data  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
        summary = prepare_data.prepare(os.path.join(base, "voc"), os.path.join(base, paths.DATA_DIR),
                                       dataset=world.DATASET)
        return {"n_train": summary["n_train"], "n_val": summary["n_val"],
                "files": sorted(os.path.relpath(p, base) for p in summary["files"])}
    if name in ("generator", "classifier"):
        os.makedirs(os.path.join(base, "models"), exist_ok=True)
        make = generator.build_generator if name == "generator" else classifier.build_classifier
        return make(cfg, os.path.join(base, "models", name))
    if name == "encoder":
        return pretraining.pretrain_encoder(cfg, pretraining.pretrained_encoder_path(base),
                                           progress_bars=progress_bars)
    if name == "gan_replay":
        return build_gan_replay(cfg, base)
    if name == "web_replay":
        return web_replay.build_web_replay(cfg, base)
    raise AssertionError(name)


def _run_phase_in_process(gin_config, name, cfg, base):
    """_run_phase in a spawned process, with the caller's gin bindings (the encoder's size) and no progress
    bars (they would overwrite the caller's). Its report holds its own time ("seconds")."""
    import model  # pylint: disable=g-import-not-at-top,unused-import  (registers the backbone's bindings)
    gin.parse_config(gin_config, skip_unknown=True)
    start = time.time()
    report = _run_phase(name, cfg, base, progress_bars=False)
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
                shutil.rmtree(paths.replay_dir(os.path.join(base, paths.DATA_DIR), "gan"), ignore_errors=True)


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


# ------------------------------------------------------------------------------------------ command line


def define_flags():
    """Defines the command-line flags (only for the command line: main.py imports this module)."""
    flags.DEFINE_string("base", "embedded", "Output folder.")
    flags.DEFINE_string("gin_file", EMBEDDED_GIN, "The embedded benchmark's gin file: its network size (backbone.*) "
                        "and world settings (embedded.*), as main.py parses it; --base and --seed override it.")
    flags.DEFINE_integer("seed", 0, "Master seed.")
    flags.DEFINE_string("samples", None, "Also write a picture of 16 training images above their labels to this "
                        "PNG (the README's docs/world_samples.png).")


def main(argv):
    del argv
    import model  # pylint: disable=g-import-not-at-top,unused-import  (registers the backbone's bindings)
    gin.parse_config_file(flags.FLAGS.gin_file, skip_unknown=True)
    for phase, seconds in build(flags.FLAGS.base, flags.FLAGS.seed).items():
        logging.info("time: %s %.1f s", phase, seconds)
    if flags.FLAGS.samples:
        logging.info("samples: %s", world.save_sample_grid(os.path.join(flags.FLAGS.base, "voc"),
                                                           flags.FLAGS.samples))


def cli():
    """The command line, `python -m embedded_benchmark` (embedded_benchmark/__main__.py)."""
    define_flags()
    app.run(main)
