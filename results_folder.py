"""A folder of results, beside its results files: each experiment's description (`<name>.json`: config, setup,
parameter indices, replay source, protocol, the switches of README "Behaviours of the original" it ran with;
write_description) and operative gin config (`<name>.gin`, written by Training.train); and reading the folder:
its finished experiments (read_experiments, from the descriptions, never the file names; the blocks computed from
the matrices where they stand for the text, else the text's), their numbers (metrics.py; experiment_metrics), as
rows for notebooks and pandas (load) and as PLOP's per-step CSVs (step_csv). `results` re-exports these names.

An experiment's dataset (datasets.py) is its description's `dataset` (written for a dataset other than VOC), else
its operative config's `TrainManager.dataset`, else VOC (experiment_dataset); its setup is one of that dataset's
(datasets.SETUPS, VOC's TrainManager.TESTS), whose first step makes the old / new groups (group_mious).
"""
import glob
import json
import math
import os

from absl import logging
import gin

import artifacts
import behaviours
import datasets
import methods
import metrics
from results_file import _LISTS, RepeatedStepError, matrix_blocks, parse_results_file
from train_manager import TrainManager


def description_path(results_file):
    """`<name>.json` beside the results file `<name>.txt`."""
    return os.path.splitext(results_file)[0] + ".json"


def gin_path(results_file):
    """`<name>.gin` (the operative gin config, written by Training.train) beside the results file `<name>.txt`."""
    return os.path.splitext(results_file)[0] + ".gin"


# The switches of README "Behaviours of the original" that a run sets, each with the original's behaviour (its
# default): behaviours.py owns them (tests/test_results.py checks them against the signatures and the README table).
# The data-making flags (gan/generate_gan.py --mapping_images_per_class, --jpeg_quality) and the configs' batch
# ratios are not switches of a run and are not listed.
ORIGINAL_BEHAVIOURS = behaviours.DEFAULTS


def read_operative_config(path, names):
    """The values of the bindings `names` ("Class.argument", unscoped) in a gin config file such as `<name>.gin`.

    Returns:
      dict name -> value of the names bound in the file (absent names are left out).

    Raises:
      FileNotFoundError, or ValueError naming the file when gin cannot parse it.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"gin config not found: {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    values = {}
    try:
        for statement in gin.config_parser.ConfigParser(text, gin.config.ParserDelegate(skip_unknown=True)):
            if isinstance(statement, gin.config_parser.BindingStatement) and not statement.scope:
                name = f"{statement.selector}.{statement.arg_name}"
                if name in names:
                    values[name] = statement.value
    except (SyntaxError, ValueError) as e:
        raise ValueError(f"{path}: not a gin config: {e}") from None
    return values


def write_description(manager):
    """Writes the JSON description beside the experiment's results file: what the summaries read. `protocol` is
    the incremental steps' protocol; `behaviours` the values of the ORIGINAL_BEHAVIOURS switches in the operative
    config `<name>.gin` (Training.train writes it first), null when there is none. A field's baseline (a
    TrainManager.method other than "recall") adds `method` and `train_encoder_incremental`; a description
    without them is RECALL's loss (or fine-tuning, without replay). A dataset other than VOC
    (TrainManager.dataset) adds `dataset`, its name; a description without it is VOC's."""
    m = manager
    results_file = m.get_validation_file_path()
    behaviours = None
    if os.path.exists(gin_path(results_file)):
        behaviours = read_operative_config(gin_path(results_file), ORIGINAL_BEHAVIOURS) or None
    doc = {"config": m.test_name, "test_type": m.test_type, "n_classes": m.common.n_classes,
           "parameters": m.parameter_to_str(),
           "replay_source": m.replay_source if m.uses_replay() else "none",
           "protocol": m.incremental.protocol, "behaviours": behaviours,
           "results_file": os.path.basename(results_file)}
    if m.incremental.method != "recall":
        doc.update(method=m.incremental.method, train_encoder_incremental=m.incremental.train_encoder)
    dataset = datasets.get(getattr(m, "dataset", datasets.DEFAULT)).name  # a manager from before the binding: VOC
    if dataset != datasets.DEFAULT:
        doc.update(dataset=dataset)
    artifacts.write_json(description_path(results_file), doc)


def _short(structure):
    return "-".join(map(str, structure)) if len(structure) == 3 else f"{structure[0]}-{structure[1]}"


dataset_tests = TrainManager.setups  # [(setup, [classes added per step])] of a dataset: TrainManager owns the rule


def setup_name(dataset, test_type, structure):
    """The tables' name of a setup: "joint"; on VOC the short form of its structure ("15-5", "10-5-5", "15-1");
    on another dataset its datasets.SETUPS name ("100-50", "50-50")."""
    if test_type == "JOINT":
        return "joint"
    return _short(structure) if datasets.get(dataset) is datasets.VOC else test_type


def experiment_dataset(doc, results_file):
    """The dataset name of an experiment: its description's `dataset`, else the `TrainManager.dataset` of its
    operative config `<name>.gin`, else VOC (descriptions and configs from before the binding).

    Raises:
      ValueError naming the results file and the value when it is no dataset of datasets.DATASETS, or the
      `.gin` when gin cannot parse it.
    """
    name = doc.get("dataset")
    if name is None and os.path.exists(gin_path(results_file)):
        name = read_operative_config(gin_path(results_file), {"TrainManager.dataset"}).get("TrainManager.dataset")
    name = datasets.DEFAULT if name is None else name
    if name not in datasets.DATASETS:
        raise ValueError(f"{results_file}: dataset {name!r}; expected one of {sorted(datasets.DATASETS)}")
    return name


def joint_of(experiments, dataset):
    """The first JOINT experiment of `dataset` among `experiments` (read_experiments'), or None: the reference of
    delta_vs_joint and of the tables' JOINT rows for that dataset's runs."""
    return next((e for e in experiments if e["test_type"] == "JOINT" and e.get("dataset", datasets.DEFAULT) ==
                 dataset), None)


def read_experiments(outputs, refused=None):
    """Reads every finished experiment of `outputs`: each JSON description (write_description) and the
    results file it names (unreadable or unfinished ones are skipped with a warning, and so is one that holds a
    step twice, RepeatedStepError; a results file without a description, such as one of the original's, is not
    summarised). Returns a list of dicts sorted by results file: config, test_type, setup (setup_name),
    structure, dataset (experiment_dataset), parameters,
    replay_source ('gan', 'flickr' or 'none' for experiments without replay), protocol and behaviours
    (_protocol_and_behaviours), blocks, path, read_from: "matrices" when the blocks are computed from the
    experiment's matrices file (matrix_blocks: unrounded, each with its confusion_matrix), "text" when they are
    parse_results_file's (runs from before matrices files, the original's; or a matrices file that cannot be
    used, with a warning naming it).

    Args:
      refused: a list that receives (results file, step) of each file skipped for holding that step twice (the
        callers exit with status 1 then: results.py, main.py)."""
    experiments = []
    for description in sorted(glob.glob(os.path.join(outputs, "*.json"))):
        try:
            with open(description, encoding="utf-8") as f:
                doc = json.load(f)
            path = os.path.join(os.path.dirname(description), doc["results_file"])
            config, test_type, parameters, source = (doc["config"], doc["test_type"], doc["parameters"],
                                                     doc["replay_source"])
            dataset = experiment_dataset(doc, path)
            structure = dict(dataset_tests(dataset)).get(test_type)  # the class steps follow from the setup
            if structure is None:
                raise ValueError(f"test_type {test_type!r} is none of {dataset}'s setups "
                                 f"{[name for name, _ in dataset_tests(dataset)]}")
            blocks = parse_results_file(path)
            lengths = {len(b[k]) for b in blocks for k in _LISTS.values()}
            if lengths - {doc["n_classes"]}:  # a class list of another length would shift the classes
                raise ValueError(f"{path}: class lists of length {sorted(lengths)}, expected {doc['n_classes']}")
            data = matrix_blocks(path, doc["n_classes"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            logging.warning("skipping %s: %s: %s", description, type(e).__name__, e)
            if isinstance(e, RepeatedStepError) and refused is not None:
                refused.append((e.path, e.step))
            continue
        if not blocks or max(b["step"] for b in blocks) != len(structure) - 1:
            logging.warning("skipping %s: the experiment is not finished (steps %s of %d)", path,
                            [b["step"] for b in blocks], len(structure))
            continue
        protocol, behaviours = _protocol_and_behaviours(doc, path)
        experiments.append(dict(config=config, test_type=test_type, structure=structure, parameters=parameters,
                                setup=setup_name(dataset, test_type, structure), dataset=dataset,
                                replay_source=source, protocol=protocol, behaviours=behaviours,
                                method=method_name(doc.get("method", "recall"), doc.get("train_encoder_incremental"),
                                                   test_type, source),
                                blocks=data or sorted(blocks, key=lambda b: b["step"]), path=path,
                                read_from="text" if data is None else "matrices"))
    return sorted(experiments, key=lambda e: e["path"])


def _protocol_and_behaviours(doc, results_file):
    """The incremental protocol and the ORIGINAL_BEHAVIOURS switch values of an experiment: its description's,
    else (descriptions written before they held them, or without a `.gin` then) its operative config's; None for
    what neither records."""
    protocol, behaviours = doc.get("protocol"), doc.get("behaviours")
    if (protocol is None or behaviours is None) and os.path.exists(gin_path(results_file)):
        try:
            values = read_operative_config(gin_path(results_file),
                                           set(ORIGINAL_BEHAVIOURS) | {"TrainManager.dataset_type_incremental"})
        except ValueError as e:
            logging.warning("%s", e)
            values = {}
        protocol = protocol or values.pop("TrainManager.dataset_type_incremental", None)
        values.pop("TrainManager.dataset_type_incremental", None)
        behaviours = behaviours or values or None
    return protocol, behaviours


def group_mious(block, n0=None, *, dataset=datasets.DEFAULT, setup=None):
    """(old 1..n0, new n0+1..last seen, all without background, all with background) mIoU of a block, %
    (metrics.class_groups; any number of classes: the block's class_iou list's). On a dataset whose validation
    has no background pixel (metrics.background_in_validation: ADE20K) the fourth is nan: MiB's and PLOP's
    ADE20K numbers are over the object classes, which the first three always are.

    Args:
      n0: the number of classes of the setup's first step, or None: that of `setup`.
      dataset: a datasets.DATASETS name (or record).
      setup: a setup of `dataset` (dataset_tests: "ADD_FIVE_ONE_TIME", ADE20K's "100-50": old 1-100, new
        101-150, all 1-150), when n0 is None.
    """
    if n0 is None:
        structure = dict(dataset_tests(dataset)).get(setup)
        if structure is None:
            raise ValueError(f"group_mious: setup {setup!r} is none of {datasets.get(dataset).name}'s "
                             f"{[name for name, _ in dataset_tests(dataset)]}")
        n0 = structure[0]
    return tuple(100 * v for v in metrics.class_groups(block["class_iou"], n0,
                                                       metrics.background_in_validation(dataset)))


def experiment_metrics(experiment, joint=None):
    """metrics.experiment_metrics of an experiment of read_experiments (percent), JOINT's last step as the
    reference of delta_vs_joint when `joint` (JOINT's experiment of the same dataset, joint_of) is given. On a
    dataset without background in its validation (ADE20K) the means leave background out (metrics.py), the
    class accuracy too (metrics.object_class_mean of the last step's)."""
    blocks = experiment["blocks"]
    dataset = experiment.get("dataset", datasets.DEFAULT)
    labelled = metrics.background_in_validation(dataset)
    if joint is not None and joint.get("dataset", datasets.DEFAULT) != dataset:
        raise ValueError(f"{experiment['path']} ({dataset}) compared with the JOINT run {joint['path']} of "
                         f"{joint.get('dataset', datasets.DEFAULT)}; expected a JOINT run of {dataset}")
    class_accuracy = blocks[-1]["mean_class_accuracy"] if labelled else \
        metrics.object_class_mean(blocks[-1]["class_accuracy"])
    return metrics.experiment_metrics([b["class_iou"] for b in blocks], experiment["structure"][0],
                                      None if joint is None else joint["blocks"][-1]["class_iou"],
                                      blocks[-1]["mean_pixel_accuracy"], class_accuracy, labelled)


def run_variant(values):
    """The summary's `variant` column: behaviours.variant of a run's switch values ("original" when all have their
    defaults), "?" for a run that records none."""
    return "?" if values is None else behaviours.variant(values)


# The columns that say which run a row of load() is (then its numbers).
RUN_COLUMNS = ["config", "test_type", "setup", "replay_source", "variant", "parameters", "method", "protocol"]


def load(outputs, per_step=False, refused=None):
    """The finished experiments of `outputs` as rows a notebook can use (`pandas.DataFrame(results.load(...))`),
    computed from the folder alone (matrices where they are, else the results files' text; read_experiments).

    Args:
      outputs: a folder of results files and their descriptions.
      per_step: False: a row per experiment; True: a row per experiment and validated step.
      refused: as read_experiments'.

    Returns:
      list of dicts. Per experiment: RUN_COLUMNS, dataset, every metrics.EXPERIMENT_METRICS number, iou_<c> (last
      step) and forgetting_<c> per class, steps (how many), read_from ("matrices" or "text"), results_file. Per
      step: RUN_COLUMNS, dataset, step, loss, miou (the results file's: the step's classes, background included),
      miou_old, miou_new, miou_all, miou_all_bg (the setup's groups at that step; group_mious), pixel_accuracy,
      class_accuracy, iou_<c>, read_from, results_file. Numbers in percent but loss; nan where not defined (a
      class not evaluated).
    """
    experiments = read_experiments(outputs, refused)
    pct = lambda v: math.nan if v is None else 100 * v
    rows = []
    for e in experiments:
        run = {k: run_variant(e["behaviours"]) if k == "variant" else e.get(k) for k in RUN_COLUMNS}
        run.update(dataset=e["dataset"])
        where = dict(read_from=e["read_from"], results_file=os.path.basename(e["path"]))
        if not per_step:
            rows.append(dict(run, **experiment_metrics(e, joint_of(experiments, e["dataset"])),
                             steps=len(e["blocks"]), **where))
            continue
        for b in e["blocks"]:
            groups = group_mious(b, e["structure"][0], dataset=e["dataset"])
            rows.append(dict(run, step=b["step"], loss=b["loss"], miou=pct(b["miou"]),
                             **dict(zip(("miou_old", "miou_new", "miou_all", "miou_all_bg"), groups)),
                             pixel_accuracy=pct(b["mean_pixel_accuracy"]),
                             class_accuracy=pct(b["mean_class_accuracy"]),
                             **{f"iou_{c}": pct(v) for c, v in enumerate(b["class_iou"])}, **where))
    return rows


def step_csv(experiment):
    """An experiment's per-step CSV in PLOP's layout (its results/<run>.csv): a line per validated step, no header:
    step, the IoU of every class (fractions, "x" for a class not evaluated), the step's mIoU (the results file's)."""
    lines = []
    for b in experiment["blocks"]:
        iou = ["x" if v is None else repr(float(v)) for v in b["class_iou"]]
        lines.append(",".join([str(b["step"])] + iou + [repr(float(b["miou"]))]))
    return "\n".join(lines) + "\n"


def write_step_csvs(experiments, folder):
    """Writes step_csv of each experiment to `folder`/<results file name>.csv. Returns the paths."""
    written = []
    for e in experiments:
        out = os.path.join(folder, os.path.splitext(os.path.basename(e["path"]))[0] + ".csv")
        artifacts.write_text(out, step_csv(e))
        written.append(out)
    return written


def method_name(method, train_encoder, test_type, replay_source):
    """An experiment's method in the papers' words: "joint", "fine-tuning" (no replay), "RECALL", or a baseline by
    its title (methods.get(method).title: "LwF", "ILT", "MiB", "PLOP"; "... (frozen encoder)" or "... (encoder
    trained)" when it trains otherwise than the method's configs here, Method.trains_encoder). A method that this
    process does not know (a description of a method since removed) keeps its TrainManager.method name."""
    if test_type == "JOINT":
        return "joint"
    if method == "recall":
        return "fine-tuning" if replay_source == "none" else "RECALL"
    try:
        known = methods.get(method)
    except ValueError:
        logging.warning("unknown method %r (not in methods.names()): named by itself", method)
        return method
    name = known.title
    if train_encoder is not None and bool(train_encoder) != known.trains_encoder:
        name += " (encoder trained)" if train_encoder else " (frozen encoder)"
    return name
