"""Runs the stages of one RECALL experiment, as the original's `Training(manager).train()`.

1. step 0: encoder + decoder on the first-step classes;
2. helper decoders on the frozen step-0 encoder;
3. pseudo-labels of the replay images (step-0 model or helper);
4. incremental steps: background inpainting (label mixing) of the new data, then the decoder alone on
   new samples blended with replay, validated after every step. The baselines (TrainManager.method: LwF,
   ILT, MiB, PLOP; methods/) run through the same steps with their own loss, the previous step's
   network beside the trained one, and (train_encoder_incremental) the encoder trained and saved per step.

What each stage reads, trains and writes is the experiment's plan (TrainManager.plan: one record per stage);
every stage is skipped when its artifact is complete, so a killed run resumes where it stopped. All artifacts are
written under a temporary name and renamed. What other experiments may make too (step 0, helpers, labelled replay,
mixed labels) is made through the store the caller hands in (Store.ensure; a parallel sweep's waits for the
experiment that writes it: sweep.SweepStore). The records of labelled replay and mixed labels are labelling.py's;
validation is evaluation.py's; the devices and workers, distribute.py's.
"""
import contextlib
import functools
import os
import zlib

import gin
import keras
import tensorflow as tf
from absl import logging
from tqdm import tqdm

import artifacts
import behaviours
# By name: what a process keeps (Context) and where an experiment gets shared artifacts (Store) are context.py's.
from context import Store, default_context, file_identity
import data_loader
# By name: Training's argument `distribute` would shadow the module.
from distribute import STRATEGIES, detach, is_chief, writer_view
from evaluation import evaluate  # noqa: F401  (training.evaluate: validation, evaluation.py)
import labelling
# Re-exported for the tests and notebooks that use them from here; their owner is labelling.py.
from labelling import (DEBUG_EVERY, FOLDER_PAIRINGS, folder_examples, folder_pairs, mix_labels,  # noqa: F401
                       replay_leftovers)
from labelling import predicted as _predicted, png as _png, save_debug as _save_debug  # noqa: F401
import methods
import metrics
import model
import results
from results_matrices import matrices_path
import train_manager

methods.load_all()  # every method's gin configurable (lwf.*, ...): a config binding one parses

REPLAY_LABEL_INPUTS = ("raw", "mean_subtracted")
INPUT_ORDERS = ("original", "balanced")
ORIGINAL_BUFFER_PER_OLD_CLASS = 400  # the original's incremental shuffle buffer: 400 x (old classes) records



def check_values(**values):
    """Checks the values of Training's bindings that must be one of a few (the switches, precision, distribute):
    ValueError naming the binding, the value and what is expected. Training's constructor calls it, and main.py
    with the values bound in a config, before any work. Bindings not given are not checked."""
    choices = {"precision": model.PRECISIONS, "momentum_rule": model.MOMENTUM_RULES,
               "replay_label_input": REPLAY_LABEL_INPUTS, "input_order": INPUT_ORDERS,
               "folder_pairing": FOLDER_PAIRINGS, "distribute": STRATEGIES}
    for name, value in values.items():
        if name in choices and value not in choices[name]:
            raise ValueError(f"Training.{name}: {value!r} is not one of {choices[name]}")
        if name in ("train_batch_norm", "reencode_jpeg") and not isinstance(value, bool):
            raise ValueError(f"Training.{name}: expected True or False, got {value!r}")


@gin.configurable("Training", denylist=["manager", "context", "store"])
class Training:
    """Trains, labels and validates one experiment planned by a TrainManager.

    Args:
      manager: the TrainManager of the experiment.
      require_pretrained: True: step 0 fails when checkpoints/encoders/pretrained is missing (what a real VOC
        run wants); False: it starts from random weights with a warning (the embedded benchmark).
      reproduce_lr_floor: True reproduces the original's learning-rate slip (every stage's decay ends at the
        first step's final value); False uses each stage's own final value.
      seed: seed of the input pipelines (shuffling, augmentation); the same seed repeats a run.
      distribute: "default" (one device), "mirrored" (all local GPUs) or "multi_worker" (TF_CONFIG).
      peer_timeout: seconds a multi-worker process waits for the other workers of TF_CONFIG to start before
        it ends (exit status 1; see make_strategy).
      global_batch: False: TrainManager.batch_size is per replica, as in the paper; True: it is the global batch.
      jit_compile: compile the training step's forward and backward pass with XLA.
      precision: "float32", "mixed_float16" (with loss scaling) or "mixed_bfloat16": the Keras dtype policy of
        every network built; variables, checkpoints and the loss stay float32.
      log_every: steps between TensorBoard points.
      validation_batch: images per forward pass in validation, replay labelling and label mixing (1: the
        original; larger batches pad images of different sizes and give the same predictions).

    Switches between the original's behaviour (the default) and a corrected one (README, "Behaviours of the
    original"):
      train_batch_norm: True (original): step 0 also trains every batch norm's gamma and beta (the original's
        step-0 var_list holds every resnet_v1_101 variable); False keeps them at the pretrained values.
      momentum_rule: "tf1" (original: tf.train.MomentumOptimizer, the rate scales the accumulator) or "keras"
        (Keras SGD: the rate is folded into the velocity at every step).
      replay_label_input: "raw" (original: replay images are labelled from raw 0..255 pixels, without the
        mean subtraction the network was trained with) or "mean_subtracted".
      input_order: "original": the first step and helpers shuffle whole batches of consecutive records
        (buffer 1000 batches); an incremental step reads the replay files one after another in class order,
        each stream shuffled with a buffer of 400 x (old classes) records, so large replay files are drawn
        mostly from the first classes; an incremental step without replay (ratio_old 0) is batched by
        interleave_ratio_new, not batch_size (the same in the paper's configs: 4 and 4). "balanced": every
        stage shuffles records (buffer 1000), reads the replay files round-robin, one record of each class in
        turn, and batches by batch_size.
      reencode_jpeg: True (original): the images of labelled replay and mixed-label files are stored
        re-encoded as JPEG at Pillow's default quality (75), as the original's compute_labels / mix_label
        wrote them through image files; False keeps the source JPEG bytes.
      folder_pairing: how the original's image-folder round trip pairs the images and labels of a labelled
        replay or mixed-label file (its tfrecord_from_folder pairs two unsorted directory listings by
        position; see folder_pairs). "creation_order" (default; what a file system that lists a directory in
        creation order, such as XFS or btrfs, gives): every image keeps its own label. "hash_order" (what
        ext4 gives: it lists in the order of a hash of the names): within each file, image k of the listing
        gets the label at position k of the other listing, i.e. mostly another image's label.
      context: the Context shared with the process's other experiments (progress bars, times, strategies);
        None: the process's default one. Not a gin binding.
      store: what makes the artifacts other experiments may make too (Store.ensure; a parallel sweep hands in
        sweep.SweepStore, which waits for the experiment that writes one); None: a Store (builds what is
        missing). Not a gin binding.

    With distribute = "multi_worker", every worker runs every stage (training steps are synchronous). Only
    the chief writes into the base folder; another worker works in a scratch folder of links to the base
    folder's files (so it sees the same inputs and finished stages), deleted when the process ends.
    """

    def __init__(self, manager, require_pretrained=True, reproduce_lr_floor=True, seed=0, distribute="default",
                 global_batch=False, jit_compile=False, log_every=10, validation_batch=1, precision="float32",
                 train_batch_norm=True, momentum_rule="tf1", replay_label_input="raw", input_order="original",
                 reencode_jpeg=True, peer_timeout=600, context=None, folder_pairing="creation_order", store=None):
        check_values(precision=precision, momentum_rule=momentum_rule, replay_label_input=replay_label_input,
                     input_order=input_order, folder_pairing=folder_pairing, train_batch_norm=train_batch_norm,
                     reencode_jpeg=reencode_jpeg, distribute=distribute)
        self.reencode_jpeg = reencode_jpeg
        self.folder_pairing = folder_pairing
        self.train_batch_norm = train_batch_norm
        self.momentum_rule = momentum_rule
        self.replay_label_input = replay_label_input
        self.input_order = input_order
        self.require_pretrained = require_pretrained
        self.reproduce_lr_floor = reproduce_lr_floor
        self.seed = int(seed)
        # The switches decide the names of the artifacts they change (TrainManager.set_behaviours): the caller's
        # manager is told too, so that it names the files this run writes.
        manager.set_behaviours({name: getattr(manager if name.startswith("TrainManager.") else self,
                                              name.split(".", 1)[1]) for name in behaviours.SWITCHES})
        self.context = context or default_context()
        self.strategy = self.context.strategy(distribute, peer_timeout)
        self.store = store or Store()
        self.chief = is_chief(self.strategy)
        self.manager = writer_view(manager, self.strategy)  # a non-chief worker writes into a scratch folder
        self.plan = self.manager.plan()  # every stage's classes, files and schedule (TrainManager.plan)
        self.precision = precision
        self.global_batch = global_batch
        self.jit_compile = jit_compile
        self.log_every = int(log_every)
        self.validation_batch = int(validation_batch)
        self.n_classes = int(self.manager.common.n_classes)
        self.results_file = self.manager.get_validation_file_path()
        self.tensorboard_dir = os.path.join(self.manager.base_folder_path, "outputs", "tensorboard",
                                            self.manager.get_validation_file_name())
        # A network whose weights a stage loads is the context's of its architecture (Context.kept_network), which
        # holds the checkpoints it read last (its `holds`) and keeps its traced steps (the decoder trainer among
        # them): later stages and experiments neither reload it nor trace its steps again.
        # The method of the incremental steps (TrainManager.method) with its gin-bound weights, made here so that
        # the operative config records them, and the frozen network of the previous step a baseline's loss reads.
        self.method = methods.make(self.manager.incremental.method)
        self._previous = None

      # ------------------------------------------------------------------------------------------- the stages

    def train(self):
        """Runs every stage that is not complete yet, then, when it validated a step, writes the operative gin
        config and the description (results.write_description) beside the results file."""
        m = self.manager
        logging.info("experiment %s (%s, %s)", m.get_validation_file_name(), m.short_name(), m.replay_source)
        validated_before = _steps_in(self.results_file)
        if self.chief:
            artifacts.remove_stale_temporaries(*(os.path.join(m.base_folder_path, f)
                                                  for f in ("checkpoints", "data", "outputs")))
        if m.get_validate():  # a bad validation file fails now, not after step 0 has trained
            for path in sorted({p for stage in self.plan.steps for p in stage.val_paths}):
                self.context.check_once(path, self.n_classes, allow_empty=True)  # val_k: maybe no image
        self.first_step()
        if m.find_step() == -1:  # e.g. the original's trained checkpoints: only validation is left to do
            logging.info("every decoder exists: no helper or replay label is needed")
        else:
            with self.context.timed("helpers"):
                self.helpers()
            with self.context.timed("replay labelling"):
                self.replay_labels()
        self.incremental_steps()
        # The operative config and the description go with the results they describe: written when this run
        # validated a step (or when they are missing), never over a finished experiment's (a rerun with other
        # switches writes under other names, behaviours.tag; other values under the same names fail the records'
        # check before anything is validated). So a finished folder is only read, and may be read-only.
        described = all(os.path.exists(p) for p in (results.gin_path(self.results_file),
                                                    results.description_path(self.results_file)))
        if self.chief and (_steps_in(self.results_file) != validated_before or not described):
            artifacts.write_text(results.gin_path(self.results_file), gin.operative_config_str())
            results.write_description(self.manager)
        else:
            logging.info("finished before: %s and its description left as they are", self.results_file)

    def first_step(self):
        """Step 0: encoder + decoder on classes 0..N0, from the pretrained encoder."""
        first = self.plan.first_step

        def complete(_):  # the encoder is saved after the decoder: a complete one marks step 0 done
            return artifacts.checkpoint_exists(first.encoder_path) and artifacts.checkpoint_exists(first.decoder_path)

        def train():
            with self.context.timed("step 0"):
                self._train_first_step(first)

        if not self.store.ensure(first.encoder_path, train, complete):
            self._check_made(first.encoder_path, "step0")
            self._check_made(first.decoder_path, "step0")
            logging.info("step 0: reused %s and %s (complete checkpoints)", first.encoder_path, first.decoder_path)
        self._validate_if_missing(first)

    def _train_first_step(self, first):
        seg = self._segmenter(self.n_classes)
        if artifacts.checkpoint_exists(first.pretrained_path):
            model.load_encoder(seg, first.pretrained_path)
        elif self.require_pretrained:
            raise FileNotFoundError(
                f"pretrained encoder not found: {first.pretrained_path}(.weights.h5 or .index). Put the original's "
                f"checkpoints/encoders/pretrained or TF-Slim's resnet_v1_101 checkpoint there, or bind "
                f"Training.require_pretrained = False to start from random weights.")
        else:
            logging.warning("step 0: no pretrained encoder at %s; starting from random weights", first.pretrained_path)
        dataset = self._dataset([first.train_path], None, stream=0, n_old=None)
        self._fit(seg, "step0", list(first.classes), dataset, first.schedule, train_encoder=True)
        self._record_made(first.decoder_path, "step0")
        self._record_made(first.encoder_path, "step0")
        model.save_decoder(seg, first.decoder_path)  # decoder first: a complete encoder marks step 0 done
        self._seal(first.decoder_path)
        model.save_encoder(seg, first.encoder_path)
        self._seal(first.encoder_path)
        self._keep(seg, self.n_classes, None, first.encoder_path, first.decoder_path)
        logging.info("step 0: trained and saved %s, %s", first.encoder_path, first.decoder_path)

    def helpers(self):
        """Helper decoders (background + a few classes) on the frozen step-0 encoder."""
        m, plan = self.manager, self.plan
        if not plan.helpers:
            logging.info("helpers: none needed (%s, replay %s)", m.short_name(), m.replay_source)
            return
        if not plan.uses_replay:
            logging.info("helpers: skipped, no replay in this config (interleave_ratio_old = 0)")
            return
        for helper in plan.helpers:
            if not self.store.ensure(helper.decoder_path, functools.partial(self._train_helper, helper),
                                     artifacts.checkpoint_exists):
                self._check_made(helper.decoder_path, "helpers")
                logging.info("helper %s: reused %s", list(helper.classes), helper.decoder_path)

    def _train_helper(self, helper):
        classes = list(helper.classes)
        seg = self._segmenter(len(classes) + 1, [0] + classes)
        model.load_encoder(seg, self.plan.first_step.encoder_path)
        dataset = self._dataset([helper.train_path], None, stream=100 + classes[0], n_old=None)
        self._fit(seg, f"helper_C{classes[0]}-{classes[-1]}", [0] + classes, dataset, helper.schedule,
                  train_encoder=False, helper=True)
        self._record_made(helper.decoder_path, "helpers")
        model.save_decoder(seg, helper.decoder_path)
        self._seal(helper.decoder_path)
        self._keep(seg, len(classes) + 1, [0] + classes, self.plan.first_step.encoder_path, helper.decoder_path)
        logging.info("helper %s: trained and saved %s", classes, helper.decoder_path)

    def replay_labels(self):
        """Pseudo-labels of the replay images: classes 1..N0 by the step-0 model, later ones by the helpers."""
        m, plan = self.manager, self.plan
        if not plan.uses_replay:
            logging.info("replay labels: skipped, no replay (source %s, interleave_ratio_old %s)",
                         m.replay_source, m.incremental.interleave_ratio_old)
            return
        # (the network that labels them, its ReplayFiles): the step-0 model's classes, then each helper's
        groups = [(lambda: self._load(self.n_classes, None, plan.first_step.decoder_path), plan.first_step.replay)]
        groups += [(lambda h=h: self._load(len(h.classes) + 1, [0, *h.classes], h.decoder_path), h.replay)
                   for h in plan.helpers]
        labelled = 0
        for build, files in groups:
            seg = []  # the group's network, loaded for the first file it labels
            for file in files:
                def label(file=file, build=build, seg=seg):
                    seg[:] = seg or [build()]
                    self._record_made(file.output, "replay")
                    self._label_replay(seg[0], file.source, file.output, file.debug_folder)
                    self._seal(file.output)

                if self.store.ensure(file.output, label):
                    labelled += 1
                else:
                    self._check_made(file.output, "replay")
        if not labelled:
            logging.info("replay labels: reused %d labelled replay files", len(plan.replay_files))

    def incremental_steps(self):
        """Incremental steps from the first missing decoder: label mixing, training (the decoder; encoder +
        decoder with train_encoder_incremental, saving the step's encoder too; the loss of TrainManager.method,
        which prepares each step itself: methods.Method.before_step), validation."""
        train_encoder = self.plan.train_encoder
        first = self.manager.find_step()
        for s in self.plan.incremental_steps:
            if first == -1 or s.step < first:
                self._check_made(s.decoder_path, "incremental")
                if train_encoder:
                    self._check_made(s.encoder_path, "incremental")
                logging.info("step %d: reused %s", s.step, s.decoder_path)
                self._validate_if_missing(s)
                continue
            old, new = list(s.old_classes), list(s.new_classes)
            if s.mix_labels and not self.store.ensure(s.mixed_path, functools.partial(self._mix_step, s)):
                self._check_made(s.mixed_path, "incremental")
                logging.info("step %d: reused mixed labels %s", s.step, s.mixed_path)
            with self.context.timed("incremental training"):
                seg = self._load(self.n_classes, None, s.previous_decoder_path, s.previous_encoder_path)
                dataset = self._dataset([s.data_path], list(s.replay_paths), stream=s.step, n_old=len(old) - 1)
                loss, previous = self._method_step(seg, s)
                self._fit(seg, f"step{s.step}", old + new, dataset, s.schedule, train_encoder=train_encoder,
                          loss=loss, previous=previous)
                self._record_made(s.decoder_path, "incremental")
                if train_encoder:  # first: a complete decoder marks the step done
                    self._record_made(s.encoder_path, "incremental")
                    model.save_encoder(seg, s.encoder_path)
                    self._seal(s.encoder_path)
                model.save_decoder(seg, s.decoder_path)
                self._seal(s.decoder_path)
                self._keep(seg, self.n_classes, None, s.encoder_path if train_encoder else None, s.decoder_path)
            logging.info("step %d: trained classes %s (old %s) and saved %s", s.step, new, old[1:], s.decoder_path)
            self._validate(seg, s)

    def _mix_step(self, s):
        """Writes the mixed labels of incremental step `s` (an IncrementalStepPlan): its training data with the
        background inpainted by the network after the step before (_mix_labels)."""
        with self.context.timed("label mixing"):
            previous = self._load(self.n_classes, None, s.previous_decoder_path, s.previous_encoder_path)
            self._record_made(s.mixed_path, "incremental")
            self._mix_labels(previous, s.train_path, s.mixed_path)
            self._seal(s.mixed_path)

    def _made_by(self, stage):
        """What makes an artifact of `stage` (behaviours.STAGES), {binding: value}: the TrainManager groups of
        TrainManager.made_by, the network's size, the seed, the switches that act on this stage or an earlier one
        and, for the incremental stage, the weights of its method (lwf.*, ...; methods.Method.weights)."""
        made = self.manager.made_by(stage)
        size = model.backbone_size()
        made.update({"backbone.units": size["units"], "backbone.width": size["width"], "Training.seed": self.seed})
        upto = behaviours.STAGES[:behaviours.STAGES.index(stage) + 1]
        made.update({name: value for name, value in self.manager.behaviours.items()
                     if behaviours.SWITCHES[name][1] in upto})
        if stage == "incremental":
            made.update(self.method.weights())
        return made

    def _record_made(self, path, stage):
        """Records what makes the artifact at `path` beside it (artifacts.write_record; the chief only)."""
        if self.chief:
            artifacts.write_record(path, self._made_by(stage))

    def _seal(self, path):
        """Adds the digest of the artifact just written at `path` to its record (artifacts.seal_record; chief)."""
        if self.chief:
            artifacts.seal_record(path)

    def _check_made(self, path, stage):
        """Before the artifact at `path` is reused: the values that made it must be this run's (artifacts.check_record:
        an error names the binding, both values and the index to change)."""
        artifacts.check_record(path, self._made_by(stage), train_manager.index_of)

    def _method_step(self, seg, s):
        """Incremental step `s` (an IncrementalStepPlan) as its method (self.method) prepares it before `seg` (the
        network after the step before) trains on the step's data: the frozen previous network when the method's loss
        reads it, then the method's own hook (methods.Method.before_step: PLOP's entropy thresholds from one pass of
        the previous network over the step's data, MiB's initialisation of seg). Returns (methods.StepLoss, the
        previous network or None)."""
        old, new = list(s.old_classes), list(s.new_classes)
        previous = None
        if self.method.needs_previous:
            previous = self._previous_network(seg, s.previous_encoder_path, s.previous_decoder_path)
        seg.holds = None  # the hook may change its weights (MiB's initialisation)
        logits = functools.partial(self._previous_logits, previous, s.data_path, old + new, len(old))
        return self.method.before_step(methods.Step(s.step, len(old), len(new), seg, previous, logits)), previous

    def _previous_network(self, seg, encoder_path, decoder_path):
        """The frozen network of the previous step that a method's loss reads: a second Segmenter (kept from
        step to step) with that step's decoder and encoder. When the incremental steps keep the step-0
        encoder, it shares seg's encoder (the same weights), so the step computes it once."""
        share = not self.plan.train_encoder
        if self._previous is None or (self._previous.encoder is seg.encoder) != share:
            with self.strategy.scope():
                self._previous = model.Segmenter(self.n_classes, encoder=seg.encoder if share else None,
                                                 precision=self.precision)
        if not share:
            model.load_encoder(self._previous, encoder_path)
        model.load_decoder(self._previous, decoder_path)
        return self._previous

    def _previous_logits(self, previous, path, classes, n_old):
        """Yields (previous network's logits of the n_old old outputs float32 [B, H, W, n_old], targets int32
        [B, H, W]) over one pass of a training tfrecord: whole images, mean subtracted, no augmentation,
        `validation_batch` at a time (padding labelled 255)."""
        label_map = tf.constant(model.make_label_map(classes), tf.int32)
        logits = previous.compiled.get(("old logits", n_old))
        if logits is None:  # traced once per network and number of old classes, not once per step
            logits = previous.compiled[("old logits", n_old)] = tf.function(
                lambda images: previous(images)[..., :n_old], reduce_retracing=True)
        dataset = data_loader.load_tfrecord([path], "validation", dataset_mean=self.manager.common.dataset_mean,
                                            n_classes=self.n_classes)
        dataset = dataset.padded_batch(self.validation_batch,
                                       padding_values={"input": 0.0, "label": tf.constant(255, tf.uint8)})
        for sample in dataset.prefetch(tf.data.AUTOTUNE):
            yield logits(sample["input"]), tf.gather(label_map, tf.cast(sample["label"], tf.int32))

        # ---------------------------------------------------------------------------------------- the runner

    def _seed(self, n_outputs, class_ids):
        # Initial weights depend on the seed and the network's outputs only, so a run repeats itself (and a
        # resumed run initialises a stage as an uninterrupted one would).
        keras.utils.set_random_seed(self.seed * 7919 + zlib.crc32(repr((n_outputs, class_ids)).encode()) % 7919)

    def _segmenter(self, n_outputs, class_ids=None):
        """A new Segmenter with seeded initial weights."""
        self._seed(n_outputs, class_ids)
        with self.strategy.scope():
            return model.Segmenter(n_outputs, class_ids, precision=self.precision)

    def _network_key(self, n_outputs, class_ids):
        """What makes two networks interchangeable once their weights are loaded: outputs, class ids, precision,
        backbone size and the strategy whose variables they are."""
        size = model.backbone_size()
        return (int(n_outputs), None if class_ids is None else tuple(int(c) for c in class_ids), self.precision,
                tuple(size["units"]), float(size["width"]), id(self.strategy))

    def _load(self, n_outputs, class_ids, decoder_path, encoder_path=None):
        """A Segmenter with the encoder at `encoder_path` (None: the step-0 encoder) and the decoder at
        `decoder_path`: the context's network of its architecture (Context.kept_network), which reads a checkpoint
        only when it does not hold that file's weights already (the same path, modification time and size)."""
        encoder_path = encoder_path or self.plan.first_step.encoder_path
        key = self._network_key(n_outputs, class_ids)
        seg = self.context.kept_network(key)
        if seg is None:
            seg = self._segmenter(n_outputs, class_ids)
            seg.holds = None
            self.context.keep(key, seg)
        else:
            self._seed(n_outputs, class_ids)  # the random state a new network would leave
        wanted = (_checkpoint_file(encoder_path), _checkpoint_file(decoder_path))
        held, seg.holds = seg.holds or (None, None), None  # a failed load leaves it holding nothing
        if held[0] != wanted[0]:
            model.load_encoder(seg, encoder_path)
        if held[1] != wanted[1]:
            model.load_decoder(seg, decoder_path)
        seg.holds = wanted
        return seg

    def _keep(self, seg, n_outputs, class_ids, encoder_path, decoder_path):
        """Makes `seg`, whose weights were just saved to these checkpoints (encoder None: the step-0 encoder), the
        context's network of its architecture, holding them."""
        seg.holds = (_checkpoint_file(encoder_path or self.plan.first_step.encoder_path),
                     _checkpoint_file(decoder_path))
        self.context.keep(self._network_key(n_outputs, class_ids), seg)

    def _batch_size(self, per_replica=None):
        b = int(self.manager.common.batch_size if per_replica is None else per_replica)
        return b if self.global_batch else b * self.strategy.num_replicas_in_sync

    def _dataset(self, new_paths, old_paths, stream, n_old):
        """The training input of a stage; n_old: old classes (background excluded) of an incremental step,
        None for the first step and helpers. See `input_order` for how the streams are ordered."""
        counts = [self.context.check_once(p, self.n_classes) for p in list(new_paths) + list(old_paths or [])]
        batch, options, inc = self._batch_size(), {}, self.manager.incremental
        if self.input_order == "original" and n_old is None:  # training.py _load_dataset_for_training
            options = dict(shuffle_batches=True, buffer_size=data_loader.DEFAULT_SHUFFLE_BUFFER)
            if min(counts) < self._batch_size():
                raise ValueError(f"{new_paths}: {min(counts)} records, fewer than one batch of "
                                 f"{self._batch_size()} (Training.input_order = 'original' shuffles whole batches)")
        elif self.input_order == "original":  # train_incremental_step -> _load_interleaved_datasets
            options = dict(sequential_files=True, buffer_size=ORIGINAL_BUFFER_PER_OLD_CLASS * max(n_old, 1))
            if not (old_paths and inc.interleave_ratio_old > 0):  # interleave_datasets batches a single
                batch = self._batch_size(inc.interleave_ratio_new)  # stream by its ratio, not batch_size
        return data_loader.training_dataset(
            new_paths, old_paths, inc.interleave_ratio_new, inc.interleave_ratio_old,
            batch, self.manager.common.train_image_size, self.manager.common.dataset_mean,
            seed=self.seed * 1000 + stream, n_classes=self.n_classes, **options)

    def _fit(self, seg, stage, classes, dataset, length, train_encoder, helper=False, loss=None, previous=None):
        """The one training loop of every stage: `length.steps` SGD updates of `seg` on `dataset`.

        Args:
          classes: the stage's classes (global ids; a helper's are [0, c1, ...]); the loss counts only their
            pixels (a helper maps every other pixel to background, as the original).
          length: the stage's train_manager.Schedule (steps and polynomial decay).
          train_encoder: True for step 0 (and incremental steps with train_encoder_incremental); False trains
            the decoder alone.
          loss, previous: the loss of an incremental step's method (methods.StepLoss) and the previous step's
            frozen network when it reads one (see model.Trainer); None: the original's loss.
        """
        common = self.manager.common
        floor = self.manager.first_step.lr_final_value if self.reproduce_lr_floor else None
        schedule = model.poly_schedule(length.lr_initial, length.lr_final, length.decay_steps, common.decay_power,
                                       common.start_decay_step, floor=floor)
        label_map = model.make_label_map(classes, helper=helper)
        seg.holds = None  # its weights leave the checkpoints' now
        loss = methods.recall.LOSS if loss is None else loss
        # A decoder trained with the original's loss: one traced step per network serves every stage (Trainer.reset)
        reuse = not train_encoder and loss is methods.recall.LOSS
        key = ("decoder trainer", common.momentum, common.l2_decay, self.jit_compile, self.momentum_rule)
        trainer = seg.compiled.get(key) if reuse else None
        if trainer is not None:
            trainer.reset(label_map, schedule)
        else:
            with self.strategy.scope():
                trainer = model.Trainer(seg, label_map, schedule, common.momentum, common.l2_decay,
                                        train_encoder=train_encoder, jit_compile=self.jit_compile,
                                        train_batch_norm=self.train_batch_norm, momentum_rule=self.momentum_rule,
                                        loss=loss, previous=previous)
            if reuse:
                seg.compiled[key] = trainer
        distributed = self.strategy.num_replicas_in_sync > 1 or self.strategy != tf.distribute.get_strategy()
        if distributed:
            # Each worker reads the whole stream and keeps its share of every global batch (a stage may read a
            # single file, so files cannot be split among workers).
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            dataset = self.strategy.experimental_distribute_dataset(dataset.with_options(options))
        writer = tf.summary.create_file_writer(os.path.join(self.tensorboard_dir, stage))
        bar = tqdm(total=length.steps, desc=f"{self.manager.short_name()} {stage}", unit="step", leave=False,
                   disable=not self.context.progress_bars)
        batches = iter(dataset)
        for i in range(length.steps):
            images, labels = next(batches)
            if distributed:
                out = trainer.distributed_train_step(self.strategy, images, labels)
            else:
                out = trainer.train_step(images, labels)
            if i % self.log_every == 0 or i == length.steps - 1:
                value = float(out["loss"])
                bar.set_postfix(loss=f"{value:.3f}")
                with writer.as_default():
                    tf.summary.scalar("loss", value, step=i)
                    tf.summary.scalar("learning_rate", float(out["lr"]), step=i)
                    for term in sorted(set(out) - {"loss", "lr", "l2"}):  # a baseline's terms (ce, kd, ...)
                        tf.summary.scalar(term, float(out[term]), step=i)
            bar.update(1)
        bar.close()
        writer.close()

        # ------------------------------------------------------------------------------ labelling and mixing

    def _label_replay(self, seg, source, output, debug_folder):
        """Writes `output`: every image of `source` with the label `seg` predicts (global class ids)."""
        count = self.context.check_once(source, None, require_labels=False)
        os.makedirs(debug_folder, exist_ok=True)
        leftovers = self._replay_leftovers(output)
        if leftovers:
            logging.warning("replay labels: %s holds %d images, %d fewer than an earlier file of its labelling "
                            "group; the original's file also held %d leftover records of earlier classes (its "
                            "temporary folder was not cleared in between), this one does not (README, \"Behaviours "
                            "of the original\")", source, count, leftovers, leftovers)
        # The original fed the decoded replay JPEG as raw 0..255 pixels (data_loader mode "images").
        mean = (0.0, 0.0, 0.0) if self.replay_label_input == "raw" else self.manager.common.dataset_mean
        examples = labelling.replay_examples(seg, source, mean, self.validation_batch, debug_folder, self.reencode_jpeg,
                                             total=count, desc=os.path.basename(output),
                                             progress=self.context.progress_bars)
        # The original saved image i as "{i}.jpg" and its label as "{i}.png" (compute_labels).
        n = data_loader.write_tfrecord(output, labelling.folder_examples(examples, self.folder_pairing, digits=0))
        self.context.note_written(output, n)
        logging.info("replay labels: %s (%d images, %s pairing) -> %s", source, n, self.folder_pairing, output)

    def _mix_labels(self, previous, source, output):
        """Background inpainting: ground-truth background and void pixels take the previous model's prediction."""
        count = self.context.check_once(source, self.n_classes)
        examples = labelling.mixed_examples(previous, source, self.manager.common.dataset_mean, self.validation_batch,
                                            self.reencode_jpeg, total=count, progress=self.context.progress_bars,
                                            n_classes=self.n_classes)
        # The original saved image i as "{i:04d}.jpg" and its mixed label as "{i:04d}.png" (mix_label).
        n = data_loader.write_tfrecord(output, labelling.folder_examples(examples, self.folder_pairing, digits=4))
        self.context.note_written(output, n)
        logging.info("label mixing: %s (%d images, %s pairing) -> %s", source, n, self.folder_pairing, output)

    def _replay_leftovers(self, output):
        """How many leftover records of earlier classes the original's labelled replay file `output` held
        (replay_leftovers over the files labelled into its temporary folder: the classes 1..N0 of the step-0
        model, or one helper's classes); 0 for a file of no such group or when a source of its group is missing."""
        for group in (self.plan.first_step.replay,) + tuple(h.replay for h in self.plan.helpers):
            outputs = [f.output for f in group]
            if output in outputs:
                sources = [f.source for f in group[:outputs.index(output) + 1]]
                if not all(os.path.exists(s) for s in sources):
                    return 0
                return labelling.replay_leftovers([self.context.check_once(s, None, require_labels=False)
                                                   for s in sources])[-1]
        return 0

        # ----------------------------------------------------------------------------------------- validation

    def _validate_if_missing(self, stage):
        """Validates `stage` (the plan's record of a step) from its checkpoints when the results file has no block
        for it (resume)."""
        if not self.manager.get_validate() or stage.step in _steps_in(self.results_file):
            return
        if stage.step > 0 and not artifacts.checkpoint_exists(stage.decoder_path):
            return
        self._validate(self._load(self.n_classes, None, stage.decoder_path, stage.encoder_path), stage)

    def _validate(self, seg, stage):
        """Validates `seg` on val_1..val_k of `stage` (the plan's record of a step) and appends the original's block
        to the results file."""
        with self.context.timed("validation"):
            self._run_validation(seg, stage)

    def _run_validation(self, seg, stage):
        """Validates `stage` and appends its block unless the results file holds it already. The check and the
        append happen under the experiment's lock (results.experiment_lock, re-entrant: sweep.run_experiment holds
        it for the whole experiment), so the file never holds a step twice, even when two processes run this
        experiment outside main.py. A non-chief worker takes no lock: it writes its own copy in a scratch folder,
        made its own (distribute.detach) where it was a link to the chief's file (distribute.worker_view)."""
        m, step = self.manager, stage.step
        if not m.get_validate():
            return
        if not self.chief:
            detach(self.results_file, matrices_path(self.results_file))
        with results.experiment_lock(self.results_file) if self.chief else contextlib.nullcontext():
            if step in _steps_in(self.results_file):
                logging.info("step %d: validated already in %s", step, self.results_file)
                return
            if step == 0:
                old, new = None, list(stage.classes)
            else:
                old, new = list(stage.old_classes), list(stage.new_classes)
            classes = new if old is None else old + new
            paths = list(stage.val_paths)
            missing = [p for p in paths if not os.path.exists(p)]
            if missing:
                raise FileNotFoundError(f"validation tfrecords not found: {missing}")
            def compute():
                return evaluate(seg, paths, classes, self.n_classes, self.manager.common.dataset_mean,
                                self.validation_batch, self.context.progress_bars, self.context)
            if step == 0 and seg.holds is not None:  # the same for every experiment of this first step
                key = (self._network_key(self.n_classes, None), seg.holds, tuple(map(file_identity, paths)),
                       tuple(classes), tuple(self.manager.common.dataset_mean), self.validation_batch)
                loss, cm = self.context.validated(key, compute)
            else:
                loss, cm = compute()
            results.append_results(self.results_file, step, loss, cm, old, new, lock=self.chief)  # + its matrix
        with tf.summary.create_file_writer(os.path.join(self.tensorboard_dir, "validation")).as_default():
            tf.summary.scalar("mIoU", metrics.get_mean_iou(cm, classes), step=step)
            for tag, value in metrics.validation_scalars(
                    cm, classes, m.test_structure[0], m.dataset.class_names,
                    background_labelled=metrics.background_in_validation(m.dataset)).items():
                tf.summary.scalar(tag, value, step=step)  # per-class IoU, the setup's old / new / all mIoU
        logging.info("step %d: validation mIoU %.4f -> %s", step, metrics.get_mean_iou(cm, classes),
                     self.results_file)


def _checkpoint_file(path):
    """context.file_identity of the checkpoint at `path` (ours, else a TF1 index): what a kept network's weights equal
    (Training._load)."""
    for file in (path + artifacts.CHECKPOINT_SUFFIX, path + artifacts.TF1_INDEX_SUFFIX):
        if os.path.exists(file):
            return file_identity(file)
    return path, None, None


def _steps_in(results_file):
    """The steps the results file holds (empty when it is missing). Raises results.RepeatedStepError, naming the
    file and the step, for a file that holds a step twice."""
    if not os.path.exists(results_file):
        return set()
    return {b["step"] for b in results.parse_results_file(results_file)}
