"""Plans an experiment: the class steps of a setup, and the name and path of every artifact.

`TrainManager` is bound by gin under the name `TrainManager` with exactly the original's bindings
(see config/*.gin), so the original nine configs parse unchanged. Every artifact name of the project is
computed here from the four parameter indices and the test structure, and put in the folder that paths.py says;
the setups are datasets.SETUPS's. Nobody else builds these names.
Public methods keep the original's names and results, so notebooks written for the original still work.
"""
import dataclasses
import hashlib
import os

import gin

import behaviours
import datasets
import methods
import paths
# Re-exported for the original's code, notebooks and tests that import them from here; their owners are artifacts
# (checkpoints) and paths (names of class groups).
from artifacts import CHECKPOINT_SUFFIX, checkpoint_exists  # noqa: F401
from paths import class_range_str  # noqa: F401

FIRST_STEP_PROTOCOLS = ("sequential", "overlapped")
PROTOCOLS = ("sequential", "disjoint", "overlapped")
REPLAY_SOURCES = (None, "gan", "flickr")
# Configs may `include` a file of the project's config/ by its name there (gin looks a relative name up in the
# working folder, then in its search paths), e.g. the baselines' `include "bases/BASELINE_DISJOINT.gin"`.
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config")
gin.add_config_file_search_path(CONFIG_DIR)


_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Schedule:
    """One stage's training length and polynomial learning-rate decay."""
    steps: int
    lr_initial: float
    lr_final: float
    decay_steps: int


@dataclasses.dataclass(frozen=True)
class Common:
    """The bindings of `parameters_common_index`: shared by every stage."""
    batch_size: int
    n_classes: int
    dataset_mean: tuple
    train_image_size: int
    momentum: float
    start_decay_step: int
    decay_power: float
    l2_decay: float


@dataclasses.dataclass(frozen=True)
class Stage:
    """The bindings of one stage's parameter index (first step, helpers or incremental steps)."""
    protocol: str  # dataset_type_*
    lr_initial_value: float
    lr_final_value: float
    training_steps_per_class: int
    decay_steps_per_class: int


@dataclasses.dataclass(frozen=True)
class Incremental(Stage):
    """The incremental steps' bindings: a Stage, background inpainting, the replay ratio, and (not the
    original's) the loss and whether the encoder trains."""
    mix_labels: bool = False
    interleave_ratio_old: int = 0  # replay samples per interleave_ratio_new new ones; 0: no replay
    interleave_ratio_new: int = 1
    method: str = "recall"  # one of methods.names()
    train_encoder: bool = False  # True: every incremental step trains encoder + decoder and saves its encoder


# The plan of an experiment (TrainManager.plan): what each stage reads, trains and writes, one record per stage.
# Built from the getters below, so a name has one owner; Training reads these records, not the getters' lists.

@dataclasses.dataclass(frozen=True)
class ReplayFile:
    """One class's replay images and the labelled file they become (see TrainManager.plan)."""
    cls: int
    source: str  # raw images: data/replay_images/{gan|flickr}/{cc}.tfrecord
    output: str  # the labelled replay tfrecord (data/replay_images_and_labels/<name>.tfrecord)
    name: str  # the labelled file's name, without folder and extension
    debug_folder: str  # where every DEBUG_EVERY-th labelled sample is saved as images (training.py)


@dataclasses.dataclass(frozen=True)
class FirstStepPlan:
    """Step 0: encoder + decoder on background and classes 1..N0, from the pretrained encoder."""
    classes: tuple  # (0, 1, ..., N0)
    train_path: str
    pretrained_path: str
    encoder_path: str
    decoder_path: str
    val_paths: tuple  # val_1 .. val_N0
    schedule: Schedule
    replay: tuple  # ReplayFile of classes 1..N0, labelled by this step's network; () without a replay source
    step: int = 0


@dataclasses.dataclass(frozen=True)
class HelperPlan:
    """A helper decoder: background + `classes` on the frozen step-0 encoder; it labels the replay of its classes."""
    classes: tuple  # the helper's classes, background excluded, e.g. (11, 12, 13, 14, 15)
    train_path: str
    decoder_path: str
    schedule: Schedule
    replay: tuple  # ReplayFile of its classes


@dataclasses.dataclass(frozen=True)
class IncrementalStepPlan:
    """Incremental step `step`: the network after step - 1 learns new_classes on new data (the mixed labels when
    mix_labels) blended with the labelled replay of every class learned before."""
    step: int
    old_classes: tuple  # background and every class learned before the step
    new_classes: tuple
    train_path: str  # the step's training data as prepared
    mixed_path: str  # its background-inpainted copy (written and read only when mix_labels)
    mix_labels: bool
    val_paths: tuple  # val_1 .. val_(last class of the step)
    replay_paths: tuple  # labelled replay files the step reads, in class order; () when the experiment does not replay
    decoder_path: str
    encoder_path: str  # the step-0 encoder, or the step's own when the incremental steps train it
    previous_decoder_path: str  # the network after step - 1: where the step starts, and what mixes its labels
    previous_encoder_path: str
    schedule: Schedule

    @property
    def data_path(self):
        """The new data the step trains on: the mixed labels when it mixes them, else the prepared file."""
        return self.mixed_path if self.mix_labels else self.train_path


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every stage of one experiment, in the order Training runs them (TrainManager.plan)."""
    first_step: FirstStepPlan
    helpers: tuple  # HelperPlan of every helper group the setup names (trained only when uses_replay)
    incremental_steps: tuple  # IncrementalStepPlan of steps 1.. (none without a replay source: the original's)
    uses_replay: bool  # TrainManager.uses_replay: helpers, replay labels and replay in the incremental steps
    train_encoder: bool  # the incremental steps train the encoder too (TrainManager.train_encoder_incremental)

    @property
    def replay_files(self):
        """Every ReplayFile, in class order: classes 1..N0 (the step-0 network labels them), then the helpers'."""
        return self.first_step.replay + tuple(r for h in self.helpers for r in h.replay)

    @property
    def steps(self):
        """The records of every step the experiment trains and validates, in order: first_step, then the
        incremental steps (a record's `step` is its index here)."""
        return (self.first_step,) + self.incremental_steps


# Binding groups, in the order of the original's configs (SPEC.md, "Configuration").
BINDINGS = (
    "test_name", "helper_decoders_one_class", "base_folder_path", "validate",
    "parameters_common_index", "batch_size", "n_classes", "dataset_mean", "train_image_size", "momentum",
    "start_decay_step", "decay_power", "l2_decay",
    "parameters_fs_index", "dataset_type_first_step", "lr_initial_value", "lr_final_value",
    "training_steps_per_class", "decay_steps_per_class",
    "parameters_helper_index", "dataset_type_helpers", "lr_initial_value_helper", "lr_final_value_helper",
    "training_steps_per_class_helper", "decay_steps_per_class_helper",
    "parameters_incremental_index", "dataset_type_incremental", "mix_labels",
    "lr_initial_value_incremental", "lr_final_value_incremental", "training_steps_per_class_incremental",
    "decay_steps_per_class_incremental", "interleave_ratio_old", "interleave_ratio_new",
)


@gin.configurable("TrainManager")
class TrainManager:
    """Names, paths and class steps of one experiment (one config x one setup x one replay source).

    Args (all but test_type and replay_source are gin bindings `TrainManager.<name>`):
      test_type: one of the names of TESTS, e.g. "ADD_FIVE_ONE_TIME" (15-5).
      replay_source: None, "gan" or "flickr".
      mixed_labels_per_experiment: not the original's: False (default) names a mixed-label file as the
        original did, shared by every setup and replay source of the same protocol and indices; True names
        it per experiment (see get_mixed_train_paths).
      method: not the original's, incremental group: the loss of the incremental steps, "recall" (default: the
        original's cross-entropy) or a baseline's, one of methods.names() ("lwf", "ilt", "mib", "plop";
        their weights are the bindings lwf.*, ilt.*, mib.*, plop.*).
      train_encoder_incremental: not the original's, incremental group: False (default, the original) keeps
        the step-0 encoder in every incremental step; True trains encoder + decoder (batch norms in inference
        mode, as at step 0) and saves an encoder per step (get_encoder_paths).
      dataset: not the original's: the dataset (datasets.DATASETS: "voc", the default, or "ade20k") whose setups
        name test_type, whose class count n_classes must be (its classes + background) and whose protocols the
        dataset_type_* bindings must be among (ADE20K: "overlapped" only). config/ade20k/ binds it.
      web_replay_classes: not the original's, incremental group: classes whose replay is read from the web source
        ("flickr") in an experiment of replay_source "gan", for classes the GAN cannot draw (ADE20K's "stuff":
        gan/generate_gan.py reports the class mapping's confidence and can leave such classes out). Empty (the
        default) keeps every name the original's; a non-empty list names the incremental decoders and results
        "gan+flickr-<digest of the list>" and each class's labelled replay by the source it was read from.
      The other arguments are the bindings of SPEC.md, grouped by parameter index: test (name,
      helper_decoders_one_class, base_folder_path, validate), common (`parameters_common_index`), first step
      (`parameters_fs_index`), helpers (`parameters_helper_index`), incremental
      (`parameters_incremental_index`). Bump an index whenever a value of its group changes: the index is
      part of every artifact's name, and artifacts with the same name are reused.

    Raises:
      ValueError: unknown test_type, replay_source or protocol, or missing bindings.
    """

    # The original's test types, read from the setup table (datasets.SETUPS["voc"], in the original's order: the
    # position is the T{index} of the names): (name, classes added per step).
    DATASET = datasets.VOC
    TEST_0, TEST_1, TEST_2, TEST_3, TEST_4, TEST_5, TEST_6, TEST_7 = datasets.tests(DATASET)

    TESTS = [TEST_0, TEST_1, TEST_2, TEST_3, TEST_4, TEST_5, TEST_6, TEST_7]

    @staticmethod
    def setups(dataset=datasets.DEFAULT):
        """[(setup, [classes added per step])] of a dataset (name or record): VOC's are the class attribute TESTS
        (the original's, which notebooks and tests may extend), another dataset's datasets.tests(dataset)."""
        record = datasets.get(dataset)
        return TrainManager.TESTS if record is datasets.VOC else datasets.tests(record)

    def __init__(self, test_type, replay_source=None, *,
                 test_name=_MISSING, helper_decoders_one_class=_MISSING, base_folder_path=_MISSING,
                 validate=_MISSING,
                 parameters_common_index=_MISSING, batch_size=_MISSING, n_classes=_MISSING,
                 dataset_mean=_MISSING, train_image_size=_MISSING, momentum=_MISSING,
                 start_decay_step=_MISSING, decay_power=_MISSING, l2_decay=_MISSING,
                 parameters_fs_index=_MISSING, dataset_type_first_step=_MISSING, lr_initial_value=_MISSING,
                 lr_final_value=_MISSING, training_steps_per_class=_MISSING,
                 decay_steps_per_class=_MISSING,
                 parameters_helper_index=_MISSING, dataset_type_helpers=_MISSING,
                 lr_initial_value_helper=_MISSING, lr_final_value_helper=_MISSING,
                 training_steps_per_class_helper=_MISSING, decay_steps_per_class_helper=_MISSING,
                 parameters_incremental_index=_MISSING, dataset_type_incremental=_MISSING,
                 mix_labels=_MISSING, lr_initial_value_incremental=_MISSING,
                 lr_final_value_incremental=_MISSING, training_steps_per_class_incremental=_MISSING,
                 decay_steps_per_class_incremental=_MISSING, interleave_ratio_old=_MISSING,
                 interleave_ratio_new=_MISSING, mixed_labels_per_experiment=False, method="recall",
                 train_encoder_incremental=False, dataset=datasets.DEFAULT, web_replay_classes=()):
        values = dict(locals())
        self._bound = {b: values[b] for b in BINDINGS + ("method", "train_encoder_incremental")}
        missing = [f"TrainManager.{b}" for b in BINDINGS if values[b] is _MISSING]
        if missing:
            raise ValueError(f"TrainManager: missing gin binding(s) {', '.join(missing)}; parse a config such "
                             f"as config/DISJOINT.gin first, or bind them.")
        if dataset not in datasets.DATASETS:
            raise ValueError(f"TrainManager.dataset: unknown dataset {dataset!r}; expected one of "
                             f"{sorted(datasets.DATASETS)}.")
        self.dataset = datasets.get(dataset)
        self.tests = TrainManager.setups(self.dataset)
        names = [t[0] for t in self.tests]
        if test_type not in names:
            raise ValueError(f"TrainManager: unknown test_type {test_type!r} of dataset {dataset!r}; expected one "
                             f"of {names}.")
        if replay_source not in REPLAY_SOURCES:
            raise ValueError(f"TrainManager: unknown replay_source {replay_source!r}; expected one of "
                             f"{list(REPLAY_SOURCES)}.")
        protocols = self.dataset.protocols
        _check_choice("dataset_type_first_step", dataset_type_first_step,
                      [p for p in FIRST_STEP_PROTOCOLS if p in protocols], dataset)
        _check_choice("dataset_type_helpers", dataset_type_helpers, [p for p in PROTOCOLS if p in protocols], dataset)
        _check_choice("dataset_type_incremental", dataset_type_incremental, [p for p in PROTOCOLS if p in protocols],
                      dataset)
        _check_values(values)
        if n_classes != self.dataset.n_classes + 1:
            raise ValueError(f"TrainManager.n_classes = {n_classes!r}, but TrainManager.dataset = {dataset!r} has "
                             f"{self.dataset.n_classes} classes and background: expected "
                             f"{self.dataset.n_classes + 1}.")
        self.web_replay_classes = _check_web_replay_classes(web_replay_classes, self.dataset)

        self.test_name = test_name
        self.test_type = test_type
        self.base_folder_path = base_folder_path
        self.parameters_common_index = parameters_common_index
        self.parameters_fs_index = parameters_fs_index
        self.parameters_helper_index = parameters_helper_index
        self.parameters_incremental_index = parameters_incremental_index
        self.dataset_type_first_step = dataset_type_first_step
        self.dataset_type_helpers = dataset_type_helpers
        self.dataset_type_incremental = dataset_type_incremental
        self.mix_labels_incremental = mix_labels
        self.helper_decoders_one_class = helper_decoders_one_class
        self.replay_source = replay_source
        self.validate = validate
        if not isinstance(mixed_labels_per_experiment, bool):
            raise ValueError(f"TrainManager.mixed_labels_per_experiment: expected True or False, got "
                             f"{mixed_labels_per_experiment!r}")
        self.mixed_labels_per_experiment = mixed_labels_per_experiment
        if method not in methods.names():
            raise ValueError(f"TrainManager.method: unknown method {method!r}; expected one of {methods.names()}.")
        if not isinstance(train_encoder_incremental, bool):
            raise ValueError(f"TrainManager.train_encoder_incremental: expected True or False, got "
                             f"{train_encoder_incremental!r}")
        self.set_behaviours(behaviours.bound_values())
        self.test_index = names.index(test_type)
        self.test_structure = self.tests[self.test_index][1]

        # The bindings by parameter index, typed; get_parameters() below keeps the original's dictionary.
        self.common = Common(batch_size, n_classes, tuple(dataset_mean), train_image_size, momentum,
                             start_decay_step, decay_power, l2_decay)
        self.first_step = Stage(dataset_type_first_step, lr_initial_value, lr_final_value,
                                training_steps_per_class, decay_steps_per_class)
        self.helper = Stage(dataset_type_helpers, lr_initial_value_helper, lr_final_value_helper,
                            training_steps_per_class_helper, decay_steps_per_class_helper)
        self.incremental = Incremental(dataset_type_incremental, lr_initial_value_incremental,
                                       lr_final_value_incremental, training_steps_per_class_incremental,
                                       decay_steps_per_class_incremental, bool(mix_labels),
                                       interleave_ratio_old, interleave_ratio_new, method,
                                       train_encoder_incremental)

        self.parameters = {
            "batch_size": batch_size,
            "helper_size": self.get_helper_size(),
            "n_classes": n_classes,
            "dataset_mean": dataset_mean,
            "train_image_size": train_image_size,
            "helper_decoder_one_class": helper_decoders_one_class,
            "momentum": momentum,
            "start_decay_step": start_decay_step,
            "training_steps_per_class": training_steps_per_class,
            "decay_steps_per_class": decay_steps_per_class,
            "training_steps_per_class_incremental": training_steps_per_class_incremental,
            "decay_steps_per_class_incremental": decay_steps_per_class_incremental,
            "training_steps_per_class_helper": training_steps_per_class_helper,
            "decay_steps_per_class_helper": decay_steps_per_class_helper,
            "decay_power": decay_power,
            "l2_decay": l2_decay,
            "lr_initial_value": lr_initial_value,
            "lr_final_value": lr_final_value,
            "lr_initial_value_incremental": lr_initial_value_incremental,
            "lr_final_value_incremental": lr_final_value_incremental,
            "lr_initial_value_helper": lr_initial_value_helper,
            "lr_final_value_helper": lr_final_value_helper,
            "interleave_ratio_old": interleave_ratio_old,
            "interleave_ratio_new": interleave_ratio_new,
        }

    def set_behaviours(self, values):
        """Sets the switch values (behaviours.SWITCHES) the experiment runs with, as gin binds them by default
        (Training sets its own again). With every switch at its default the names are exactly the original's;
        a switch set otherwise ends the names of the artifacts it changes with behaviours.tag (e.g.
        "__replay_label_input-mean_subtracted"), so two runs that differ in a switch share no such artifact."""
        self.behaviours = dict(values)
        self._tags = {stage: behaviours.tag(self.behaviours, stage) for stage in behaviours.STAGES}

    def mix_labels(self):
        """True when background inpainting runs: disjoint/overlapped incremental data and mix_labels set."""
        return self.dataset_type_incremental in ("disjoint", "overlapped") and bool(self.mix_labels_incremental)

    def uses_replay(self):
        """True when the incremental steps blend in replay: a replay source, a replay ratio above 0 and at least
        one incremental step. The one place that says whether an experiment replays."""
        return (self.replay_source is not None and self.incremental.interleave_ratio_old > 0
                and len(self.test_structure) > 1)

    # The stages' lengths, as the original computes them (training.py there): the step count scales with the
    # classes a stage learns, the decay length with the classes its decoder outputs (background included for
    # step 0 and the helpers, not for an incremental step).

    def first_step_schedule(self):
        """Step 0: N0 x training_steps_per_class steps, decay over (N0 + 1) x decay_steps_per_class."""
        n0, s = self.test_structure[0], self.first_step
        return Schedule(n0 * s.training_steps_per_class, s.lr_initial_value, s.lr_final_value,
                        (n0 + 1) * s.decay_steps_per_class)

    def helper_schedule(self, n_classes):
        """A helper decoder of n_classes classes: n x steps per class, decay over (n + 1) x decay per class."""
        s = self.helper
        return Schedule(n_classes * s.training_steps_per_class, s.lr_initial_value, s.lr_final_value,
                        (n_classes + 1) * s.decay_steps_per_class)

    def incremental_schedule(self, n_new):
        """An incremental step adding n_new classes: n_new x steps per class, decay over n_new x decay."""
        s = self.incremental
        return Schedule(n_new * s.training_steps_per_class, s.lr_initial_value, s.lr_final_value,
                        n_new * s.decay_steps_per_class)

    def made_by(self, stage):
        """{"TrainManager.<binding>": value} of the parameter groups that make an artifact of `stage`
        (behaviours.STAGES): common and first step for step 0; the helpers' group too for the helpers and the
        labelled replay; every group for the incremental stage. The index bindings themselves are left out: they
        are part of the names. Recorded beside each artifact and checked when it is reused (Training)."""
        groups = {"step0": ("parameters_common_index", "parameters_fs_index"),
                  "helpers": ("parameters_common_index", "parameters_fs_index", "parameters_helper_index"),
                  "replay": ("parameters_common_index", "parameters_fs_index", "parameters_helper_index"),
                  "incremental": tuple(GROUPS)}[stage]
        made = {f"TrainManager.{b}": self._bound[b] for index in groups for b in GROUPS[index]}
        # Not the original's bindings: recorded only when set otherwise, so that the records of VOC runs keep
        # the keys they had (a record whose keys differ is a reuse error).
        if self.dataset.name != datasets.DEFAULT:
            made["TrainManager.dataset"] = self.dataset.name
        # a class's labelled replay names its source; only the decoders trained on the mix depend on the list
        if self.web_replay_classes and stage == "incremental":
            made["TrainManager.web_replay_classes"] = list(self.web_replay_classes)
        return made

      # ------------------------------------------------------------------------------------------------ plan

    def plan(self):
        """The experiment as records (Plan): its first step, its helpers and one record per incremental step, each
        with its classes, files, checkpoints and schedule. Every value comes from the getters below (which keep the
        original's names and lists): the plan only gathers them per stage, so a name has one owner.

        The incremental steps are those the experiment trains: the steps of get_decoder_paths (with no replay source
        the original names no incremental decoder, so there are none)."""
        decoders, encoders = self.get_decoder_paths(), self.get_encoder_paths()
        train, mixed, validation = self.get_train_paths(), self.get_mixed_train_paths(), self.get_val_paths()
        replays = self.uses_replay()

        def replay_files(classes, sources, outputs, names):
            return tuple(ReplayFile(c, source, output, name, os.path.join(self.get_replay_folder(), "debug", name))
                         for c, source, output, name in zip(classes, sources, outputs, names))

        first_replay = () if self.replay_source is None else replay_files(
            self.get_replay_classes_no_helper(), self.get_replay_source_no_helper_paths(),
            self.get_replay_output_no_helper_paths(), self.get_replay_no_helper_tfrecords_names())
        first = FirstStepPlan(
            classes=tuple(range(self.get_encoder_number() + 1)), train_path=train[0],
            pretrained_path=self.get_encoder_pretrained_path(), encoder_path=self.get_encoder_path(),
            decoder_path=decoders[0], val_paths=tuple(validation[0]), schedule=self.first_step_schedule(),
            replay=first_replay)
        helpers = tuple(
            HelperPlan(classes=tuple(classes), train_path=train_path, decoder_path=out_path,
                       schedule=self.helper_schedule(len(classes)),
                       replay=replay_files(classes, sources, outputs, names))
            for classes, train_path, out_path, sources, outputs, names in zip(
                self.get_helpers_classes(), self.get_helper_train_paths(), self.get_helper_out_paths(),
                self.get_replay_source_helper_paths() or [], self.get_replay_output_helper_paths(),
                self.get_replay_helper_tfrecords_names()))
        steps = []
        for k in range(1, len(decoders)):
            old, new = self.get_old_classes_for_incremental_step(k), self.get_new_classes_for_incremental_step(k)
            steps.append(IncrementalStepPlan(
                step=k, old_classes=tuple(old), new_classes=tuple(new), train_path=train[k], mixed_path=mixed[k],
                mix_labels=self.mix_labels(), val_paths=tuple(validation[k]),
                replay_paths=tuple(self.get_replay_tfrecords_for_step(k)) if replays else (),
                decoder_path=decoders[k], encoder_path=encoders[k], previous_decoder_path=decoders[k - 1],
                previous_encoder_path=encoders[k - 1], schedule=self.incremental_schedule(len(new))))
        return Plan(first_step=first, helpers=helpers, incremental_steps=tuple(steps), uses_replay=replays,
                    train_encoder=self.incremental.train_encoder)

      # ----------------------------------------------------------------------------------------------- paths

    def _data(self):
        return paths.data_dir(self.base_folder_path)

    def get_encoder_pretrained_path(self):
        """Checkpoint the step-0 encoder starts from."""
        return paths.checkpoint(self.base_folder_path, "encoders", "pretrained")

    def get_encoder_path(self):
        """Checkpoint of the step-0 encoder of this test (extension-less)."""
        return paths.checkpoint(self.base_folder_path, "encoders", self.get_encoder_name())

    def get_encoder_paths(self):
        """Encoder checkpoint of every step (index = step), as get_decoder_paths: the step-0 encoder, then the
        step's own encoder ('P{c}.{fs}.{h}.{i}_T{test}_S{step}_{source}', the decoder's name) when the
        incremental steps train it (train_encoder_incremental), else the step-0 encoder again."""
        names = self.get_decoders_names()
        if not self.incremental.train_encoder:
            return [self.get_encoder_path()] * len(names)
        return [self.get_encoder_path()] + [paths.checkpoint(self.base_folder_path, "encoders", n)
                                            for n in names[1:]]

    def get_decoder_paths(self):
        """Decoder checkpoints, one per step (index = step)."""
        return [paths.checkpoint(self.base_folder_path, "decoders", n) for n in self.get_decoders_names()]

    def get_helper_out_paths(self):
        """Helper decoder checkpoints, one per helper group."""
        return [paths.checkpoint(self.base_folder_path, "helper_decoders", n) for n in self.get_helper_names()]

    def get_validation_file_path(self):
        """The results text file of this experiment."""
        name = self.get_validation_file_name()
        # The original appends "_1" here too, after the name already ends in "_1)".
        if self.helper_decoders_one_class:
            name += "_1"
        return paths.results_file(self.base_folder_path, name)

    def get_train_paths(self):
        """Training tfrecord of every step (index = step): first-step file, then incremental files."""
        steps = self.test_structure_to_steps()
        return ([paths.first_step_file(self._data(), self.dataset_type_first_step, steps[0])] +
                [paths.incremental_file(self._data(), self.dataset_type_incremental, s) for s in steps[1:]])

    def get_mixed_train_paths(self):
        """Mixed-label (background-inpainted) tfrecord of every step; None for step 0.

        The original's name, `mixed/train_{protocol}_{cls}_P{c}.{fs}.{h}.{i}`, holds neither the setup nor the
        replay source, although the labels are the predictions of one setup's previous model: an existing file
        is reused, so 10-1 trains at class 16 on labels that 15-1 made with its 15-class model (and web replay
        on gan's), and results depend on which experiments ran before in the same folder. Kept by default;
        `mixed_labels_per_experiment = True` ends the name with the decoder's instead
        (`..._P{c}.{fs}.{h}.{i}_T{test}_S{step}_{source}[_1]`).
        """
        steps = self.test_structure_to_steps()
        return [None] + [paths.mixed_file(self._data(), self.dataset_type_incremental, s,
                                          "_" + (self._incremental_name(k) if self.mixed_labels_per_experiment
                                                 else "P" + self.parameter_to_str() + self._tags["incremental"]))
                         for k, s in enumerate(steps[1:], start=1)]

    def get_helper_train_paths(self):
        """Training tfrecord of every helper group."""
        return [paths.incremental_file(self._data(), self.dataset_type_helpers, h) for h in self.get_helpers_classes()]

    def get_val_paths(self):
        """Validation tfrecords of every step: val_1 .. val_(last class seen at that step)."""
        return [[paths.validation_file(self._data(), i + 1) for i in range(s[-1])]
                for s in self.test_structure_to_steps()]

    def replay_source_of(self, cls):
        """The source a class's replay images are read from: the experiment's, or "flickr" for a class of
        web_replay_classes in a GAN experiment."""
        if self.replay_source is None:
            raise ValueError("TrainManager: replay images need replay_source 'gan' or 'flickr', got None.")
        return "flickr" if self.replay_source == "gan" and cls in self.web_replay_classes else self.replay_source

    def _replay_name(self):
        """The replay source in the names of the incremental decoders and the results: the experiment's source,
        or 'gan+flickr-<digest>' when web_replay_classes sends some classes to the web source."""
        if self.replay_source != "gan" or not self.web_replay_classes:
            return self.replay_source
        listing = ",".join(map(str, self.web_replay_classes))
        return "gan+flickr-" + hashlib.sha1(listing.encode()).hexdigest()[:8]

    def _replay_source_path(self, cls):
        return paths.replay_file(self._data(), self.replay_source_of(cls), cls)

    def get_replay_source_helper_paths(self):
        """Raw replay tfrecords of the classes labelled by helpers, grouped by helper; None without replay."""
        if self.replay_source is None:
            return None
        return [[self._replay_source_path(c) for c in h] for h in self.get_helpers_classes()]

    def get_replay_source_no_helper_paths(self):
        """Raw replay tfrecords of the classes labelled by the step-0 model (1..N0)."""
        if self.replay_source is None:  # the original fails here too (it concatenates None)
            raise ValueError("TrainManager: replay images need replay_source 'gan' or 'flickr', got None.")
        return [self._replay_source_path(c) for c in self.get_replay_classes_no_helper()]

    def get_replay_output_helper_paths(self):
        """Labelled replay tfrecords of the helper classes, grouped by helper."""
        return [[self.get_replay_folder() + n + ".tfrecord" for n in h]
                for h in self.get_replay_helper_tfrecords_names()]

    def get_replay_output_no_helper_paths(self):
        """Labelled replay tfrecords of classes 1..N0."""
        return [self.get_replay_folder() + n + ".tfrecord" for n in self.get_replay_no_helper_tfrecords_names()]

    def get_replay_output_paths(self):
        """Every labelled replay tfrecord, in class order (index = class - 1)."""
        helper = [p for group in self.get_replay_output_helper_paths() for p in group]
        return self.get_replay_output_no_helper_paths() + helper

    def get_replay_folder(self):
        """Folder of the labelled replay tfrecords (ends with '/')."""
        return paths.labelled_replay_dir(self._data()) + "/"

      # ----------------------------------------------------------------------------------------------- names

    def get_encoder_name(self):
        """'P{c}.{fs}_E{N0}' (and the step-0 tag of behaviours.tag)."""
        return (f"P{self.parameters_common_index}.{self.parameters_fs_index}_E{self.get_encoder_number()}"
                + self._tags["step0"])

    def get_decoders_names(self):
        """Decoder name of every step; without a replay source only the step-0 decoder (as the original)."""
        names = [self.get_encoder_name()]
        if self.replay_source is None:
            return names
        return names + [self._incremental_name(i) for i in range(1, len(self.test_structure))]

    def _incremental_name(self, step):
        """'P{c}.{fs}.{h}.{i}_T{test}_S{step}_{source}[_1]': the decoder of an incremental step."""
        suffix = "_1" if self.helper_decoders_one_class else ""
        return (f"P{self.parameter_to_str()}_T{self.test_index}_S{step}_{self._replay_name()}{suffix}"
                + self._tags["incremental"])

    def _helper_prefix(self):
        return (f"P{self.parameters_common_index}.{self.parameters_fs_index}.{self.parameters_helper_index}"
                f"_E{self.get_encoder_number()}")

    def get_helper_names(self):
        """'P{c}.{fs}.{h}_E{N0}_C{first}-{last}' for every helper group (and the helpers' tag)."""
        return [f"{self._helper_prefix()}_C{h[0]}-{h[-1]}{self._tags['helpers']}" for h in self.get_helpers_classes()]

    def get_replay_helper_tfrecords_names(self):
        """Labelled replay names of helper classes, grouped by helper."""
        if self.replay_source is None or self.test_type == "JOINT":
            return []
        return [[f"{self._helper_prefix()}_H{self.get_helper_size()}_C{c}_{self.replay_source_of(c)}"
                 f"{self._tags['replay']}"
                 for c in h]
                for h in self.get_helpers_classes()]

    def get_replay_no_helper_tfrecords_names(self):
        """Labelled replay names of classes 1..N0 (helper size 0)."""
        if self.replay_source is None or self.test_type == "JOINT":
            return []
        return [f"{self._helper_prefix()}_H0_C{c}_{self.replay_source_of(c)}{self._tags['replay']}"
                for c in self.get_replay_classes_no_helper()]

    def parameter_to_str(self):
        """'{c}.{fs}.{h}.{i}'."""
        return (f"{self.parameters_common_index}.{self.parameters_fs_index}."
                f"{self.parameters_helper_index}.{self.parameters_incremental_index}")

    def get_validation_file_name(self):
        """'{test_name} (T{test}_P{c}.{fs}.{h}.{i}[_{source}][_1])' (and the incremental tag of behaviours.tag)."""
        name = f"{self.test_name} (T{self.test_index}_P{self.parameter_to_str()}"
        if self.replay_source is not None:
            name += "_" + self._replay_name()
        if self.helper_decoders_one_class:
            name += "_1"
        return name + ")" + self._tags["incremental"]

      # ------------------------------------------------------------------------------------------- test info

    def get_test_type(self):
        return self.test_type

    def get_test_index(self):
        return self.test_index

    def get_validate(self):
        return self.validate

    def get_test_structure(self):
        """Classes added per step, e.g. [15, 5]."""
        return self.test_structure

    def get_parameters(self):
        """Dictionary of the training parameters (same keys as the original)."""
        return self.parameters

    def get_encoder_number(self):
        """N0: the number of classes learned at step 0."""
        return self.test_structure[0]

    def get_helper_size(self):
        """Classes per helper: 0 with at most one incremental step, 1 if one-class helpers are forced,
        else the size of an incremental step.

        Raises:
          ValueError: incremental steps of unequal size (helpers cannot be grouped).
        """
        incremental = self.test_structure[1:]
        if len(set(incremental)) > 1:
            raise ValueError(f"TrainManager: incremental steps of {self.test_type} have unequal sizes "
                             f"{incremental}; helpers need equal steps.")
        if len(incremental) <= 1:
            return 0
        if self.helper_decoders_one_class:
            return 1
        return incremental[0]

      # --------------------------------------------------------------------------------------------- classes

    def get_replay_classes_no_helper(self):
        """Replay classes labelled by the step-0 model: 1..N0 ([] without replay or for JOINT)."""
        if self.replay_source is None or self.test_type == "JOINT":
            return []
        return list(range(1, self.get_encoder_number() + 1))

    def get_replay_classes_helper(self):
        """Replay classes labelled by helpers: those added in every incremental step but the last."""
        if self.replay_source is None or self.test_type == "JOINT":
            return []
        return list(range(self.get_encoder_number() + 1, sum(self.test_structure[:-1]) + 1))

    def get_helpers_classes(self):
        """The helper groups: the helper classes split into groups of the helper size."""
        size = self.get_helper_size()
        if self.replay_source is None or self.test_type == "JOINT" or size == 0:
            return []
        classes = self.get_replay_classes_helper()
        if len(classes) % size:
            raise ValueError(f"TrainManager: {len(classes)} helper classes cannot be split into helpers of "
                             f"size {size}.")
        return [classes[i:i + size] for i in range(0, len(classes), size)]

    def get_old_classes_for_incremental_step(self, step):
        """Background and every class learned before `step` (1 <= step <= incremental steps)."""
        self._check_step(step)
        return list(range(sum(self.test_structure[:step]) + 1))

    def get_new_classes_for_incremental_step(self, step):
        """Classes added at `step`."""
        self._check_step(step)
        first = sum(self.test_structure[:step]) + 1
        return list(range(first, first + self.test_structure[step]))

    def get_incremental_steps_n(self):
        return len(self.test_structure) - 1

    def get_replay_tfrecords_for_step(self, step):
        """Labelled replay tfrecords of every class learned before `step`."""
        self._check_step(step)
        return self.get_replay_output_paths()[:sum(self.test_structure[:step])]

    def _check_step(self, step):
        if not 1 <= step <= self.get_incremental_steps_n():
            raise ValueError(f"TrainManager: incremental step {step} out of range 1..{self.get_incremental_steps_n()} "
                             f"for {self.test_type}.")

    def test_structure_to_steps(self):
        """Classes of every step, e.g. [[1..15], [16], ...]."""
        steps, first = [], 1
        for n in self.test_structure:
            steps.append(list(range(first, first + n)))
            first += n
        return steps

      # ---------------------------------------------------------------------------------------------- checks

    def check_encoder(self):
        """True if the step-0 encoder checkpoint is complete."""
        return checkpoint_exists(self.get_encoder_path())

    def check_decoders(self):
        """True if every decoder checkpoint is complete."""
        return all(checkpoint_exists(p) for p in self.get_decoder_paths())

    def check_helpers(self):
        """True if every helper checkpoint is complete."""
        return all(checkpoint_exists(p) for p in self.get_helper_out_paths())

    def check_labels_no_helper(self):
        """True if every labelled replay tfrecord of classes 1..N0 exists."""
        return all(os.path.exists(p) for p in self.get_replay_output_no_helper_paths())

    def check_labels_helper(self):
        """True if every labelled replay tfrecord of the helper classes exists."""
        return all(os.path.exists(p) for group in self.get_replay_output_helper_paths() for p in group)

    def find_step(self):
        """The first step whose decoder (or, for an incremental step that trains the encoder, whose encoder) is
        missing; -1 when the test is finished."""
        encoders = self.get_encoder_paths()
        for step, path in enumerate(self.get_decoder_paths()):
            if not checkpoint_exists(path) or (step > 0 and self.incremental.train_encoder
                                               and not checkpoint_exists(encoders[step])):
                return step
        return -1

    def exists_mixed_tfrecord(self, step):
        """True if the mixed-label tfrecord of `step` exists (always False for step 0)."""
        if step == 0:
            return False
        return os.path.exists(self.get_mixed_train_paths()[step])

      # ------------------------------------------------------------------------------------------ extras

    def short_name(self):
        """The setup's short name of the paper: '15-5', '10-5-5', '10-1', ..., 'joint'; on a dataset other than VOC
        the setup's own name ('100-50', '50-50', ...), which is the field's short name there."""
        if self.test_type == "JOINT":
            return "joint"
        if self.dataset.name != datasets.DEFAULT:
            return self.test_type
        s = self.test_structure
        return "-".join(map(str, s)) if len(s) == 3 else f"{s[0]}-{s[1]}"


# Parameter index -> the bindings of its group that an artifact's record holds (the index itself is in the name;
# method and train_encoder_incremental belong to the incremental group, README "Configs and parameter indices").
GROUPS = {
    "parameters_common_index": BINDINGS[BINDINGS.index("batch_size"):BINDINGS.index("parameters_fs_index")],
    "parameters_fs_index": BINDINGS[BINDINGS.index("dataset_type_first_step"):BINDINGS.index("parameters_helper_index")],
    "parameters_helper_index": BINDINGS[BINDINGS.index("dataset_type_helpers"):
                                        BINDINGS.index("parameters_incremental_index")],
    "parameters_incremental_index": BINDINGS[BINDINGS.index("dataset_type_incremental"):] + (
        "method", "train_encoder_incremental"),
}


def index_of(binding):
    """The index binding ("TrainManager.parameters_*_index") to change when `binding` ("TrainManager.x",
    "backbone.x", "Training.x", a method's weight "mib.x") takes another value in a folder that holds artifacts
    made with the old one: the index of its group; the common index for what every stage depends on."""
    name = binding.split(".", 1)[-1]
    for index, names in GROUPS.items():
        if binding.startswith("TrainManager.") and name in names:
            return f"TrainManager.{index}"
    if binding.split(".")[0] in methods.names():
        return "TrainManager.parameters_incremental_index"
    return "TrainManager.parameters_common_index"


# binding -> (kind, lower bound, upper bound or None); the bounds are inclusive.
_RANGES = {
    **{name: ("int", 0, None) for name in ("parameters_common_index", "parameters_fs_index",
                                            "parameters_helper_index", "parameters_incremental_index",
                                            "start_decay_step", "interleave_ratio_old", "interleave_ratio_new")},
    **{name: ("int", 1, None) for name in ("batch_size", "train_image_size", "training_steps_per_class",
                                            "decay_steps_per_class", "training_steps_per_class_helper",
                                            "decay_steps_per_class_helper", "training_steps_per_class_incremental",
                                            "decay_steps_per_class_incremental")},
    "n_classes": ("int", 2, 255),
    **{name: ("number", 0.0, None) for name in ("lr_final_value", "lr_final_value_helper",
                                                 "lr_final_value_incremental", "l2_decay", "decay_power")},
    **{name: ("positive", 0.0, None) for name in ("lr_initial_value", "lr_initial_value_helper",
                                                   "lr_initial_value_incremental")},
    "momentum": ("number", 0.0, 1.0),
    **{name: ("bool", None, None) for name in ("helper_decoders_one_class", "validate", "mix_labels")},
}


def _check_values(values):
    """Every binding's type and range, so that a typo (a negative step count, a batch of 0, a rate of 0)
    fails here, naming the binding, instead of training nothing and writing an untrained checkpoint."""
    problems = []
    for name, (kind, low, high) in _RANGES.items():
        value = values[name]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == "bool":
            ok = isinstance(value, bool)
            expected = "True or False"
        elif kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (
                high is None or value <= high)
            expected = f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")
        else:
            ok = number and value >= low and (high is None or value <= high) and (kind != "positive" or value > 0)
            expected = ("a number > 0" if kind == "positive" else
                        f"a number >= {low}" + (f" and <= {high}" if high is not None else ""))
        if not ok:
            problems.append(f"TrainManager.{name} = {value!r}: expected {expected}")
    mean = values["dataset_mean"]
    if not (isinstance(mean, (list, tuple)) and len(mean) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in mean)):
        problems.append(f"TrainManager.dataset_mean = {mean!r}: expected 3 numbers (one per channel)")
    if not problems and values["interleave_ratio_old"] + values["interleave_ratio_new"] == 0:
        problems.append("TrainManager.interleave_ratio_old and interleave_ratio_new are both 0: an incremental "
                        "step would have no training data")
    if not isinstance(values["test_name"], str) or not values["test_name"]:
        problems.append(f"TrainManager.test_name = {values['test_name']!r}: expected a non-empty string")
    if problems:
        raise ValueError("TrainManager: bad binding(s):\n  " + "\n  ".join(problems))


def _check_choice(binding, value, valid, dataset=datasets.DEFAULT):
    if value not in valid:
        of = "" if dataset == datasets.DEFAULT else f" on dataset {dataset!r}"
        raise ValueError(f"TrainManager.{binding}: unknown protocol {value!r}{of}; expected one of {list(valid)}.")


def _check_web_replay_classes(classes, dataset):
    """The sorted tuple of TrainManager.web_replay_classes; ValueError unless they are class ids of the dataset."""
    if not isinstance(classes, (list, tuple)) or not all(
            isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= dataset.n_classes for c in classes):
        raise ValueError(f"TrainManager.web_replay_classes = {classes!r}: expected a list of class ids of "
                         f"{dataset.name} (1..{dataset.n_classes}).")
    return tuple(sorted(set(classes)))
