"""The results files and the summaries of finished experiments.

Each experiment writes `outputs/<name>.txt`, the original's text blocks (one per validated step: loss, mIoU,
per-class IoU and accuracy, old/new groups; format_results_block, parse_results_file), and beside it, when it
finishes, `<name>.gin` (the operative gin config) and `<name>.json` (what the experiment was: config, setup,
parameter indices, replay source; write_description). The summaries read the JSON files, never file names.
`<name>.lock` is the experiment's lock (experiment_lock): one process at a time runs the experiment or appends to
its results file, which never holds a step twice (RepeatedStepError).

Writes `summary.csv`, `summary.md`, `summary.tex` (the paper's table form), `method_setup_table.md` (the
README's table: a row per method, protocol, replay source and variant, a column per setup), `recall_vs_finetuning.md`
(RECALL's final mIoU minus the fine-tuning baseline's of the same protocol), `recall_vs_baselines.md` (RECALL
beside fine-tuning and the field's baselines, LwF, ILT, MiB, PLOP, per setup and protocol) and PNG plots in
`plots/`.

A run's variant is the set of switches of README "Behaviours of the original" (behaviours.SWITCHES) it set
otherwise: "original" when none (the original's code), e.g. "Training.replay_label_input = 'mean_subtracted'" for
the method as the paper describes it; every table keeps the variants of one method apart (variant_label names them
in headers and legends).

With a file of the paper's numbers (`--paper docs/paper_results.csv`, `summarize(outputs, paper=...)`), also
`paper_comparison.md` and `.csv`: each run's final old / new / all mIoU beside the paper's row of the same method,
replay source, setup and protocol, the differences (ours - paper), and the switches of README "Behaviours of the
original" the run set otherwise (ORIGINAL_BEHAVIOURS; empty: the original's behaviours). The comparison is made
only when asked: the embedded benchmark's numbers are not the paper's data set and are never compared silently.
The paper file is CSV (`#` lines are comments) with the columns PAPER_COLUMNS: method (RECALL, fine-tuning and
joint are matched with runs; other methods are kept for the baselines), replay_source (gan, web or none),
test_type (a TrainManager.TESTS name), setup (its short name, e.g. 15-5, 10-5-5), protocol (sequential, disjoint
or overlapped), miou_old, miou_new, miou_all (percent; empty: not reported) and source (address and table).

Usage: python results.py --outputs outputs [--paper docs/paper_results.csv]
"""
import ast
import contextlib
import csv
import errno
import glob
import io
import json
import math
import os
import re
import sys

from absl import app, flags, logging
import gin
import numpy as np

import artifacts
import behaviours
import metrics
from train_manager import TrainManager

_HEADER_LEFT = "#" * 33 + " VALIDATION RESULTS OF STEP "
_HEADER_RIGHT = "#" * 36
_HEADER_RE = re.compile(r"^#+ VALIDATION RESULTS OF STEP (\d+)#+$")
_GROUP_RE = re.compile(r"^(old|new) classes (miou|mean accuracy) (\[.*\])$")
COLUMNS = ["config", "test_type", "setup", "replay_source", "variant", "parameters", "miou_old", "miou_new",
           "miou_all", "miou_all_bg", "delta_vs_joint"]
N_CLASSES = 21


# ------------------------------------------------------------------------------------ the results file


def _fmt_list(values):
    return str([None if v is None else "{:.3f}".format(v) for v in values])


def format_results_block(step, loss, cm, old_classes, new_classes):
    """The text the original appends to the results file after validating a step.

    Args:
      step: int, the step index.
      loss: mean validation loss (float or numpy scalar, printed with str()).
      cm: confusion matrix [n, n] (numpy or tensor).
      old_classes: list of old class ids (incremental steps) or None (first step).
      new_classes: list of the step's new class ids (first step: all its classes, background included).

    Returns:
      str, starting with an empty line and ending with a blank line, ready to append.
    """
    new_classes = [int(c) for c in new_classes]
    old_classes = None if old_classes is None else [int(c) for c in old_classes]
    classes = new_classes if old_classes is None else old_classes + new_classes
    cm = np.asarray(cm, np.float64)
    loss = loss.numpy() if hasattr(loss, "numpy") else loss
    lines = [
        "",
        f"{_HEADER_LEFT}{step}{_HEADER_RIGHT}",
        f"LOSS\n{loss}\n",
        f"mIoU\n{metrics.get_mean_iou(cm, classes)}\n",
        f"class_iou\n{_fmt_list(metrics.get_classes_iou(cm, classes))}\n",
        f"mean class accuracy\n{metrics.get_mean_class_accuracy(cm, classes)}\n",
        f"mean pixel accuracy\n{metrics.get_mean_pixel_accuracy(cm, classes)}\n",
        f"class accuracy\n{_fmt_list(metrics.get_classes_accuracy(cm, classes))}\n",
    ]
    if old_classes:
        old_miou, new_miou = metrics.get_mean_iou_old_and_new(cm, old_classes, new_classes)
        old_acc, new_acc = metrics.get_mean_accuracy_old_and_new(cm, old_classes, new_classes)
        lines += [f"old classes miou {old_classes}\n{old_miou}\n",
                  f"new classes miou {new_classes}\n{new_miou}\n",
                  f"old classes mean accuracy {old_classes}\n{old_acc}\n",
                  f"new classes mean accuracy {new_classes}\n{new_acc}\n"]
    return "\n".join(lines) + "\n"


def lock_path(results_file):
    """`<name>.lock` beside the results file `<name>.txt`: the lock of the experiment (experiment_lock)."""
    return os.path.splitext(results_file)[0] + artifacts.LOCK_SUFFIX


def experiment_lock(results_file, on_wait=None):
    """The lock of the experiment whose results file is `results_file` (artifacts.exclusive_lock on lock_path): held
    by the process that runs the experiment (main.run_experiment) and around every append, so that two processes
    never run one experiment, nor append to its file, at once. Re-entrant; on_wait as exclusive_lock's."""
    return artifacts.exclusive_lock(lock_path(results_file), on_wait)


def _header_steps(lines):
    """[(step, line number)] of the block headers among `lines` (the text's lines, in order)."""
    headers = [(_HEADER_RE.match(line.rstrip()), number) for number, line in enumerate(lines, 1)]
    return [(int(match.group(1)), number) for match, number in headers if match]


def append_results_block(path, block, lock=True):
    """Appends a block to a results file atomically (the whole file is rewritten under a temporary name), under the
    experiment's lock (experiment_lock): the file is read and replaced by one process at a time.

    Args:
      path: the results file (created with its folder if missing).
      block: text from format_results_block.
      lock: False only for a file no other process writes (a multi-worker run's non-chief worker writes a copy in a
        scratch folder of its own, whose lock file may be a link to the chief's, held by the chief).

    Raises:
      ValueError naming the file and the step when the file already holds a block of the block's step: a results
      file holds each step once (the caller checks before it validates: Training._run_validation).
    """
    (step, _), = _header_steps(block.splitlines())
    with experiment_lock(path) if lock else contextlib.nullcontext():
        old = ""
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = f.read()
        if step in [s for s, _ in _header_steps(old.splitlines())]:
            raise ValueError(f"{path} already holds step {step}: a results file holds each step once")
        artifacts.write_text(path, old + block, fsync=True)


def _parse_list(text, where):
    try:
        values = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"{where}: expected a Python list, got {text!r}") from None
    if not isinstance(values, list):
        raise ValueError(f"{where}: expected a Python list, got {text!r}")
    return values


def _list_value(v, where):
    if v is None:
        return None
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return _parse_float(v, where)
    raise ValueError(f"{where}: expected numbers or None in the list, got {v!r}")


def _parse_float(text, where):
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: expected a number, got {text!r}") from None


_SCALARS = {"LOSS": "loss", "mIoU": "miou", "mean class accuracy": "mean_class_accuracy",
            "mean pixel accuracy": "mean_pixel_accuracy"}
_LISTS = {"class_iou": "class_iou", "class accuracy": "class_accuracy"}


class RepeatedStepError(ValueError):
    """A results file that holds a step twice (two runs wrote one experiment at once, before the experiment lock):
    its numbers may be either run's, so it is refused. `path` and `step` name them."""

    def __init__(self, path, step, lines):
        super().__init__(f"{path}: step {step} appears twice (blocks at lines {lines[0]} and {lines[1]}): two runs "
                         f"wrote this experiment at once; delete the file (the next run validates every step again "
                         f"from the checkpoints) or one of the two blocks")
        self.path, self.step = path, step


def parse_results_file(path):
    """Reads every block of a results file (ours or the original's).

    Args:
      path: an `outputs/*.txt` results file.

    Returns:
      list of dicts in file order, each with: step (int), loss, miou, mean_class_accuracy,
      mean_pixel_accuracy (floats), class_iou, class_accuracy (lists of float or None), and
      old_classes, new_classes (lists of int or None), old_miou, new_miou, old_accuracy, new_accuracy
      (floats or None; None for a first step).

    Raises:
      FileNotFoundError; ValueError naming the file and line of what does not parse; RepeatedStepError (a
      ValueError) naming the file and the step when a step appears twice.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"results file not found: {path}")
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip() for line in f]
    blocks, block, i = [], None, 0
    while i < len(lines):
        line, key_where = lines[i], f"{path}: line {i + 1}"
        i += 1
        if not line:
            continue
        header = _HEADER_RE.match(line)
        if header:
            block = {"step": int(header.group(1)), "old_classes": None, "new_classes": None,
                     "old_miou": None, "new_miou": None, "old_accuracy": None, "new_accuracy": None}
            blocks.append(block)
            continue
        if block is None:
            raise ValueError(f"{key_where}: expected a 'VALIDATION RESULTS OF STEP' header, got {line!r}")
        group = _GROUP_RE.match(line)
        if not (line in _SCALARS or line in _LISTS or group):
            raise ValueError(f"{key_where}: unknown entry {line!r}")
        if i >= len(lines):
            raise ValueError(f"{key_where}: {line!r} has no value line")
        value, where = lines[i], f"{path}: line {i + 1}"
        i += 1
        if line in _SCALARS:
            block[_SCALARS[line]] = _parse_float(value, where)
        elif line in _LISTS:
            block[_LISTS[line]] = [_list_value(v, where) for v in _parse_list(value, where)]
        else:
            which, metric = group.group(1), group.group(2)
            block[f"{which}_classes"] = [int(c) for c in _parse_list(group.group(3), key_where)]
            block[f"{which}_{'miou' if metric == 'miou' else 'accuracy'}"] = _parse_float(value, where)
    for b in blocks:
        missing = [k for k in list(_SCALARS.values()) + list(_LISTS.values()) if k not in b]
        if missing:
            raise ValueError(f"{path}: block of step {b['step']} lacks {missing}")
    first = {}
    for step, number in _header_steps(lines):
        if step in first:
            raise RepeatedStepError(path, step, (first[step], number))
        first[step] = number
    return blocks


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
    without them is RECALL's loss (or fine-tuning, without replay)."""
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
    artifacts.write_json(description_path(results_file), doc)


# ---------------------------------------------------------------------------------------- summaries


def _mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _short(structure):
    return "-".join(map(str, structure)) if len(structure) == 3 else f"{structure[0]}-{structure[1]}"


def read_experiments(outputs, refused=None):
    """Reads every finished experiment of `outputs`: each JSON description (write_description) and the
    results file it names (unreadable or unfinished ones are skipped with a warning, and so is one that holds a
    step twice, RepeatedStepError; a results file without a description, such as one of the original's, is not
    summarised). Returns a list of dicts sorted by results file: config, test_type, setup, structure, parameters,
    replay_source ('gan', 'flickr' or 'none' for experiments without replay), protocol and behaviours
    (_protocol_and_behaviours), blocks (parse_results_file), path.

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
            structure = dict(TrainManager.TESTS).get(test_type)  # the class steps follow from the setup
            if structure is None:
                raise ValueError(f"test_type {test_type!r} is none of TrainManager.TESTS")
            blocks = parse_results_file(path)
            lengths = {len(b[k]) for b in blocks for k in _LISTS.values()}
            if lengths - {doc["n_classes"]}:  # a class list of another length would shift the classes
                raise ValueError(f"{path}: class lists of length {sorted(lengths)}, expected {doc['n_classes']}")
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
                                setup="joint" if test_type == "JOINT" else _short(structure),
                                replay_source=source, protocol=protocol, behaviours=behaviours,
                                method=method_name(doc.get("method", "recall"), doc.get("train_encoder_incremental"),
                                                   test_type, source),
                                blocks=sorted(blocks, key=lambda b: b["step"]), path=path))
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


def group_mious(block, n0):
    """(old 1..n0, new n0+1..last seen, all without background, all with background) mIoU of a block, %."""
    iou = list(block["class_iou"]) + [None] * N_CLASSES
    seen = [c for c in range(N_CLASSES) if iou[c] is not None]
    last = max(seen) if seen else 0
    pct = lambda values: 100 * _mean(values)
    return (pct(iou[1:n0 + 1]), pct(iou[n0 + 1:last + 1]), pct(iou[1:last + 1]), pct(iou[0:last + 1]))


def variant_label(values):
    """A short name of a run's variant, for table headers and plot legends, derived from the switches rather than
    listed per switch: "original" when every switch of behaviours.SWITCHES has its default, "?" when the run
    records no switch values (None), else each changed switch (SWITCHES order, joined by ", ") by its value: a
    text value with "-" for "_" ("mean-subtracted" for Training.replay_label_input = "mean_subtracted"), a
    boolean as the argument's name or "no " + it ("no train_batch_norm"), another value as "argument value"."""
    if values is None:
        return "?"
    parts = []
    for name, value in behaviours.changed(values).items():
        argument = name.split(".")[-1]
        if isinstance(value, str):
            parts.append(value.replace("_", "-"))
        elif isinstance(value, bool):
            parts.append(argument if value else f"no {argument}")
        else:
            parts.append(f"{argument} {value}")
    return ", ".join(parts) or "original"


def run_variant(values):
    """The summary's `variant` column: behaviours.variant of a run's switch values ("original" when all have their
    defaults), "?" for a run that records none."""
    return "?" if values is None else behaviours.variant(values)


def _unnamed(label):
    """Whether the tables name a run of the variant `label` (variant_label) by its method alone: the original's,
    and a run that records none ("?": it ran before the switches were recorded, so with the original's names; an
    original-variant run of the same experiment would have replaced its results file)."""
    return label in ("original", "?")


def _named(name, label):
    """`name` of a run of the variant `label` (variant_label): "name (label)", or `name` alone (_unnamed)."""
    return name if _unnamed(label) else f"{name} ({label})"


def summary_rows(experiments):
    """One row per experiment: final-step mIoU (percent) of old, new, all classes and the gap to JOINT, and the
    run's variant (run_variant; variant_label, for the tables' headers, is not a column)."""
    joint = next((e for e in experiments if e["test_type"] == "JOINT"), None)
    rows = []
    for e in experiments:
        n0 = e["structure"][0]
        old, new, all_, all_bg = group_mious(e["blocks"][-1], n0)
        delta = math.nan
        if joint is not None:
            delta = all_ - group_mious(joint["blocks"][-1], n0)[2]
        rows.append(dict(config=e["config"], test_type=e["test_type"], setup=e["setup"],
                         replay_source=e["replay_source"], variant=run_variant(e["behaviours"]),
                         parameters=e["parameters"], miou_old=old, miou_new=new, miou_all=all_,
                         miou_all_bg=all_bg, delta_vs_joint=delta,
                         # not COLUMNS: for the tables below
                         variant_label=variant_label(e["behaviours"]), method=e.get("method"),
                         protocol=e.get("protocol")))
    return rows


# TrainManager.method -> (the method's name in the papers, whether this project's config of it trains the encoder:
# a run that does otherwise is named so, e.g. "ILT (frozen encoder)"; README "Baselines").
METHOD_NAMES = {"lwf": ("LwF", False), "ilt": ("ILT", True), "mib": ("MiB", True), "plop": ("PLOP", True)}


def method_name(method, train_encoder, test_type, replay_source):
    """An experiment's method in the papers' words: "joint", "fine-tuning" (no replay), "RECALL", or a field's
    baseline ("LwF", "ILT", "MiB", "PLOP"; "... (frozen encoder)" or "... (encoder trained)" when it trains
    otherwise than the method's config here, METHOD_NAMES)."""
    if test_type == "JOINT":
        return "joint"
    if method == "recall":
        return "fine-tuning" if replay_source == "none" else "RECALL"
    name, trains = METHOD_NAMES[method]
    if train_encoder is not None and bool(train_encoder) != trains:
        name += " (encoder trained)" if train_encoder else " (frozen encoder)"
    return name


def _fmt(v):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.1f}" if isinstance(v, float)
                                                                              else str(v))


def write_csv(rows, path, columns=COLUMNS):
    """Writes `rows` (dicts) as CSV with `columns`, numbers to 0.1, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _fmt(r[k]) for k in columns})
    artifacts.write_text(path, buffer.getvalue())


def _markdown(header, cells):
    """A markdown table: `header` (names) and `cells` (lists of texts; a "|" inside one is escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def markdown_table(rows):
    return _markdown(COLUMNS, [[_fmt(r[k]) for k in COLUMNS] for r in rows])


# Each RECALL config and the fine-tuning config of the same incremental protocol: the pairing of a description that
# predates `protocol` (finetuning_pairs).
BASELINES = {"SEQUENTIAL": "FINE_TUNING", "DISJOINT": "FINE_TUNING_DISJOINT", "OVERLAPPED": "FINE_TUNING_OVERLAPPED"}


def step0_indices(parameters):
    """The common and first-step indices of an experiment's parameter indices ("1.0" of "1.0.0.2"): the step-0
    network it starts from."""
    return ".".join(parameters.split(".")[:2])


def _same_protocol(recall, finetuning):
    if recall.get("protocol") and finetuning.get("protocol"):
        return recall["protocol"] == finetuning["protocol"]
    return finetuning["config"] == BASELINES.get(recall["config"])


def finetuning_pairs(rows):
    """Each RECALL row (of any variant) with the fine-tuning rows it is compared with: those of the same setup and
    incremental protocol; of them, the ones that start from the RECALL row's step-0 network (step0_indices), if
    any (OVERLAPPED, P3.1, and FINE_TUNING_OVERLAPPED, P2.1, each train their own); of those, the ones of the
    RECALL row's variant, if any (the sweep runs fine-tuning once, with the original's behaviours, for RECALL of
    both variants). Every candidate left is a pair of its own: two fine-tuning runs that could pair (e.g.
    FINE_TUNING_DISJOINT and FINE_TUNING_DISJOINT_NO_MIX) give two pairs, each saying so (pair_note).

    Args:
      rows: summary_rows(...) (the keys method, protocol, setup, config, parameters, variant_label are read).

    Returns:
      list of dicts in row order: recall, finetuning (the two rows), shares_step0 (bool), candidates (how many
      fine-tuning rows were left for the RECALL row).
    """
    finetuning = [f for f in rows if f.get("method") == "fine-tuning"]
    pairs = []
    for r in rows:
        if r.get("method") != "RECALL":
            continue
        candidates = [f for f in finetuning if f["setup"] == r["setup"] and _same_protocol(r, f)]
        shared = [f for f in candidates if step0_indices(f["parameters"]) == step0_indices(r["parameters"])]
        candidates = shared or candidates
        candidates = [f for f in candidates if f["variant_label"] == r["variant_label"]] or candidates
        pairs += [dict(recall=r, finetuning=f, shares_step0=bool(shared), candidates=len(candidates))
                  for f in candidates]
    return pairs


def pair_note(pair):
    """Which fine-tuning run a finetuning_pairs pair holds: "config parameters", then what sets it apart, if
    anything: "its own step 0" (other common and first-step indices), its variant when it is not the original's,
    "1 of N candidates" when N fine-tuning runs could pair."""
    f = pair["finetuning"]
    notes = [f"{f['config']} {f['parameters']}"]
    if not pair["shares_step0"]:
        notes.append("its own step 0")
    if not _unnamed(f["variant_label"]):
        notes.append(f"variant {f['variant_label']}")
    if pair["candidates"] > 1:
        notes.append(f"1 of {pair['candidates']} candidates")
    return "; ".join(notes)


def recall_vs_finetuning(rows):
    """Markdown table: per RECALL row (setup, protocol, config, replay source, variant, parameters) the final mIoU
    over all classes (miou_all) of RECALL, of the fine-tuning run it is paired with (finetuning_pairs) and the
    difference, and which fine-tuning run that is (`fine-tuning run`, pair_note)."""
    header = ["setup", "protocol", "config", "replay_source", "variant", "parameters", "RECALL", "fine-tuning",
              "difference", "fine-tuning run"]
    cells = []
    for pair in finetuning_pairs(rows):
        r, f = pair["recall"], pair["finetuning"]
        cells.append([_fmt(r[k]) for k in header[:6]] + [_fmt(r["miou_all"]), _fmt(f["miou_all"]),
                                                         _fmt(r["miou_all"] - f["miou_all"]), pair_note(pair)])
    return _markdown(header, cells)


def _method_label(row):
    """A row's column in recall_vs_baselines: "RECALL <source>" or the method's name, with its variant."""
    name = f"RECALL {row['replay_source']}" if row["method"] == "RECALL" else row["method"]
    return _named(name, row["variant_label"])


def recall_vs_baselines(rows):
    """Markdown table: per setup and incremental protocol where a field's baseline ran, the final mIoU over all
    classes (miou_all) of RECALL (a column per replay source and variant, e.g. "RECALL gan" and "RECALL gan
    (mean-subtracted)"), fine-tuning and every baseline, and per RECALL variant its best replay source minus the
    best of the others ("RECALL - best other", "RECALL (mean-subtracted) - best other")."""
    fixed = ["fine-tuning"] + [name for name, _ in METHOD_NAMES.values()]
    cells = {}
    for r in rows:
        if r.get("method") not in (None, "joint"):
            cells.setdefault((r["setup"], r["protocol"]), {})[_method_label(r)] = r
    compared = {k: v for k, v in cells.items() if any(r["method"] not in ("RECALL", "fine-tuning") for r in v.values())}
    if not compared:
        return "No run of a field's baseline (LwF, ILT, MiB, PLOP; README \"Baselines\").\n"
    columns = {label: r for v in compared.values() for label, r in v.items()}  # label -> a row of it

    def order(label):  # RECALL first, then fine-tuning and the baselines in METHOD_NAMES order; originals first
        r = columns[label]
        base = r["method"].split(" (")[0]
        return (r["method"] != "RECALL", fixed.index(base) if base in fixed else len(fixed),
                not _unnamed(r["variant_label"]), label)

    labels = sorted(columns, key=order)
    gap = lambda r: _named("RECALL", r["variant_label"]) + " - best other"  # a column per RECALL variant
    gaps = sorted({gap(r) for r in columns.values() if r["method"] == "RECALL"},
                  key=lambda name: (name != "RECALL - best other", name))
    table = []
    for (setup, protocol), v in sorted(compared.items(), key=lambda kv: (kv[0][1] or "", kv[0][0])):
        others = [r["miou_all"] for r in v.values() if r["method"] != "RECALL"]
        row = [setup, _fmt(protocol)] + [_fmt(v[c]["miou_all"]) if c in v else "" for c in labels]
        for name in gaps:
            recall = [r["miou_all"] for r in v.values() if r["method"] == "RECALL" and gap(r) == name]
            row.append(_fmt(max(recall) - max(others) if recall and others else math.nan))
        table.append(row)
    return _markdown(["setup", "protocol"] + labels + gaps, table)


# README "The embedded benchmark / Results": its setups, in its column order, and its protocols in its row order.
README_SETUPS = ["19-1", "15-5", "10-10", "10-5-5", "15-1", "10-2", "10-1"]
README_PROTOCOLS = {"sequential": "seq.", "disjoint": "disj.", "overlapped": "ovl."}


def _readme_name(row):
    """(order, name) of a row of method_setup_table, or None for a method it leaves out."""
    protocols = list(README_PROTOCOLS)
    p = protocols.index(row["protocol"]) if row["protocol"] in README_PROTOCOLS else len(protocols)
    variant = (not _unnamed(row["variant_label"]), row["variant_label"])
    if row["method"] == "joint":
        return (len(protocols) + 1, 0) + variant, _named("JOINT", row["variant_label"])
    if row["method"] == "fine-tuning":
        return (p, 0) + variant, _named(f"FT ({row['protocol'] or '?'})", row["variant_label"])
    if row["method"] == "RECALL":
        source = "web" if row["replay_source"] == "flickr" else row["replay_source"]
        name = f"RECALL {README_PROTOCOLS.get(row['protocol'], row['protocol'] or '?')} {source}"
        return (p, 1) + variant + (row["replay_source"] != "gan",), _named(name, row["variant_label"])
    return None


def method_setup_table(rows, metric="miou_all"):
    """The README's results table ("The embedded benchmark / Results") in markdown: a column per setup (the
    README's order, README_SETUPS, those present), a row per method run: per protocol (sequential, disjoint,
    overlapped) fine-tuning ("FT (disjoint)"), then RECALL per variant and replay source ("RECALL disj. gan",
    "RECALL disj. web (mean-subtracted)"; web is flickr); JOINT last, its one number in every column. The field's
    baselines are left out (recall_vs_baselines sets them beside RECALL). Two runs that would get one name (two
    fine-tuning configs of one protocol, two parameter generations of a config) get their config and parameters
    after it.

    Args:
      rows: summary_rows(...); or rows with the same keys whose `metric` is a mean over runs, with the standard
        deviation in `<metric>_std` (benchmarks/bench_seeds.py's cells): each cell is then "mean ± std".
      metric: the number of a cell: "miou_all" (default; the README's), "miou_old" or "miou_new".

    Returns:
      str, the table followed by a newline.
    """
    setups = [s for s in README_SETUPS if any(r["setup"] == s for r in rows)]
    runs = {}  # (order, name) -> {(config, parameters): {setup: row}}
    for r in rows:
        named = _readme_name(r)
        if named is not None:
            runs.setdefault(named, {}).setdefault((r["config"], r["parameters"]), {})[r["setup"]] = r
    table = []
    for (_, name), by_run in sorted(runs.items()):
        for (config, parameters), by_setup in sorted(by_run.items()):
            label = name if len(by_run) == 1 else f"{name} [{config} {parameters}]"
            joint = by_setup.get("joint")
            table.append([label] + [_mean_and_std(joint or by_setup.get(s), metric) for s in setups])
    return _markdown(["method"] + setups, table)


def _mean_and_std(row, metric):
    if row is None:
        return ""
    std = row.get(metric + "_std")
    if std is None or math.isnan(std):
        return _fmt(row[metric])
    return f"{_fmt(row[metric])} ± {std:.1f}"


def latex_table(rows, experiments):
    """The paper's form: a row per method (config, source, variant), per setup the old / new / all mIoU; JOINT's
    row splits the joint model's IoUs into the same old / new groups. A variant other than the original's is named
    after the source ("DISJOINT (gan, mean-subtracted)")."""
    setups = [s for s in ["19-1", "15-5", "15-1", "10-10", "10-5-5", "10-2", "10-1"]
              if any(r["setup"] == s for r in rows)]
    n0 = {e["setup"]: e["structure"][0] for e in experiments}
    joint = next((e for e in experiments if e["test_type"] == "JOINT"), None)
    key = lambda r: (r["config"], r["replay_source"], r["parameters"], r["variant_label"])
    methods = sorted({key(r) for r in rows if r["setup"] != "joint"},
                     key=lambda k: k[:3] + (not _unnamed(k[3]), k[3]))
    generations = {c: {p for c2, _, p, _ in methods if c2 == c} for c, _, _, _ in methods}
    head = " & ".join(f"\\multicolumn{{3}}{{c}}{{{s}}}" for s in setups)
    lines = ["\\begin{tabular}{l" + "ccc" * len(setups) + "}", "\\toprule", f"Method & {head} \\\\",
             " & " + " & ".join(["old & new & all"] * len(setups)) + " \\\\", "\\midrule"]
    for config, source, parameters, label in methods:
        cells = []
        for s in setups:
            r = next((x for x in rows if key(x) == (config, source, parameters, label) and x["setup"] == s), None)
            cells += [_fmt(r["miou_old"]), _fmt(r["miou_new"]), _fmt(r["miou_all"])] if r else ["", "", ""]
        details = ([] if source == "none" else [source]) + ([] if _unnamed(label) else [label])
        name = config + (f" ({', '.join(details)})" if details else "")
        if len(generations[config]) > 1:  # two parameter generations of one config: say which row is which
            name += f" P{parameters}"
        name = name.replace("_", "\\_")
        lines.append(f"{name} & " + " & ".join(cells) + " \\\\")
    if joint is not None:
        cells = [_fmt(v) for s in setups for v in group_mious(joint["blocks"][-1], n0[s])[:3]]
        lines += ["\\midrule", "JOINT & " + " & ".join(cells) + " \\\\"]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- the paper's numbers

PAPER_COLUMNS = ["method", "replay_source", "test_type", "setup", "protocol", "miou_old", "miou_new", "miou_all",
                 "source"]
PAPER_PROTOCOLS = ("sequential", "disjoint", "overlapped")
PAPER_REPLAY_SOURCES = ("gan", "web", "none")
# The methods a run of this project is: RECALL (replay), its fine-tuning baseline (no replay), JOINT.
RUN_METHODS = {"RECALL": ("gan", "web"), "fine-tuning": ("none",), "joint": ("none",)}
COMPARISON_COLUMNS = ["method", "replay_source", "setup", "protocol", "config", "parameters",
                      "miou_old", "paper_old", "diff_old", "miou_new", "paper_new", "diff_new",
                      "miou_all", "paper_all", "diff_all", "changed_behaviours", "source"]


def _setup_name(test_type):
    return "joint" if test_type == "JOINT" else _short(dict(TrainManager.TESTS)[test_type])


def run_method(test_type, replay_source):
    """A run in the paper's words: (method, replay source), e.g. ("RECALL", "web") for flickr replay."""
    if test_type == "JOINT":
        return "joint", "none"
    if replay_source == "none":
        return "fine-tuning", "none"
    return "RECALL", "web" if replay_source == "flickr" else replay_source


def _paper_row(fields, header, where):
    if len(fields) != len(header):
        raise ValueError(f"{where}: {len(fields)} fields, expected {len(header)} ({','.join(header)})")
    row = dict(zip(header, fields))
    for column in ("method", "source"):
        if not row[column]:
            raise ValueError(f"{where}: empty {column}")
    if row["replay_source"] not in PAPER_REPLAY_SOURCES:
        raise ValueError(f"{where}: unknown replay_source {row['replay_source']!r}; expected one of "
                         f"{list(PAPER_REPLAY_SOURCES)}")
    if row["method"] in RUN_METHODS and row["replay_source"] not in RUN_METHODS[row["method"]]:
        raise ValueError(f"{where}: {row['method']} with replay_source {row['replay_source']!r}; expected one of "
                         f"{list(RUN_METHODS[row['method']])}")
    names = [name for name, _ in TrainManager.TESTS]
    if row["test_type"] not in names:
        raise ValueError(f"{where}: unknown test_type {row['test_type']!r}; expected one of {names}")
    if row["setup"] != _setup_name(row["test_type"]):
        raise ValueError(f"{where}: setup {row['setup']!r} is not {row['test_type']}'s; expected "
                         f"{_setup_name(row['test_type'])!r}")
    if row["protocol"] not in PAPER_PROTOCOLS:
        raise ValueError(f"{where}: unknown protocol {row['protocol']!r}; expected one of {list(PAPER_PROTOCOLS)}")
    for column in ("miou_old", "miou_new", "miou_all"):
        if not row[column]:
            row[column] = None
            continue
        value = _parse_float(row[column], f"{where}: {column}")
        if not 0 <= value <= 100:  # also refuses NaN and infinities
            raise ValueError(f"{where}: {column} = {row[column]!r}: expected a percentage in [0, 100]")
        row[column] = value
    if all(row[c] is None for c in ("miou_old", "miou_new", "miou_all")):
        raise ValueError(f"{where}: no number (miou_old, miou_new and miou_all are all empty)")
    return row


def read_paper_results(path):
    """Reads a file of the paper's numbers (docs/paper_results.csv; the format is in the module docstring).

    Returns:
      list of dicts in file order with the PAPER_COLUMNS (mIoUs as floats, None where empty) and line (int).

    Raises:
      FileNotFoundError; ValueError naming the file, the line and the bad value: a missing column, a row of
      another length, an unknown test_type, protocol or replay source, a setup that is not its test_type's, a
      number that is not a percentage, a row without a number or a source, two rows of one method, replay
      source, test_type and protocol.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"paper results file not found: {path}")
    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().splitlines()
    header, rows, seen = None, [], {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}: line {number}"
        fields = [field.strip() for field in next(csv.reader([line]))]
        if header is None:
            missing = [c for c in PAPER_COLUMNS if c not in fields]
            if missing or len(set(fields)) != len(fields):
                raise ValueError(f"{where}: header {fields} lacks {missing or 'nothing but repeats a column'}; "
                                 f"expected the columns {PAPER_COLUMNS}")
            header = fields
            continue
        row = _paper_row(fields, header, where)
        key = (row["method"], row["replay_source"], row["test_type"], row["protocol"])
        if key in seen:
            raise ValueError(f"{where}: a second row for {key} (the first is line {seen[key]})")
        seen[key] = number
        rows.append(dict(row, line=number))
    if header is None:
        raise ValueError(f"{path}: no header line; expected the columns {PAPER_COLUMNS}")
    return rows


def _difference(ours, paper):
    if ours is None or paper is None or math.isnan(ours):
        return math.nan
    return ours - paper


def changed_behaviours(values):
    """The switches of ORIGINAL_BEHAVIOURS a run set otherwise, as "name = value" joined by "; " ("name = ?"
    for one its config does not record); "" means the original's behaviours, "?" a run that records none."""
    if values is None:
        return "?"
    changed = behaviours.changed(values)
    return "; ".join(f"{name} = {changed[name]!r}" if name in values else f"{name} = ?"
                     for name in ORIGINAL_BEHAVIOURS if name in changed or name not in values)


def paper_comparison(experiments, paper_rows):
    """Each run beside the paper's row of the same method, replay source (flickr is the paper's web), test_type
    and protocol: final-step old / new / all mIoU (%, background excluded, the summary_rows numbers), the
    paper's, ours - paper, the run's changed_behaviours and the row's source. A JOINT run is set beside every
    joint row, its IoUs split into the old / new groups of the row's setup (as summary.tex does). Runs without a
    row in the paper file are left out (logged).

    Args:
      experiments: read_experiments(...).
      paper_rows: read_paper_results(...).

    Returns:
      list of dicts with COMPARISON_COLUMNS.
    """
    index = {(p["method"], p["replay_source"], p["test_type"], p["protocol"]): p for p in paper_rows}
    comparison, unmatched = [], []
    for row, e in zip(summary_rows(experiments), experiments):
        method, source = run_method(e["test_type"], e["replay_source"])
        method = e.get("method") or method  # a field's baseline: its own name (MiB, PLOP, ...)
        if method == "joint":  # joint training has no protocol: every table's joint row
            matches = [p for p in paper_rows if p["method"] == "joint"]
        else:
            matches = [index[k] for k in [(method, source, e["test_type"], e["protocol"])] if k in index]
        if not matches:
            unmatched.append(os.path.basename(e["path"]))
        for p in matches:
            ours = (row["miou_old"], row["miou_new"], row["miou_all"])
            if method == "joint" and p["test_type"] != "JOINT":
                ours = group_mious(e["blocks"][-1], dict(TrainManager.TESTS)[p["test_type"]][0])[:3]
            entry = dict(method=method, replay_source=source, setup=p["setup"], protocol=p["protocol"],
                         config=e["config"], parameters=e["parameters"],
                         changed_behaviours=changed_behaviours(e["behaviours"]), source=p["source"])
            for group, value in zip(("old", "new", "all"), ours):
                paper = p[f"miou_{group}"]
                entry.update({f"miou_{group}": value, f"paper_{group}": paper,
                              f"diff_{group}": _difference(value, paper)})
            comparison.append(entry)
    if unmatched:
        logging.info("%d of %d runs have no row in the paper file: %s", len(unmatched), len(experiments),
                     ", ".join(unmatched))
    return comparison


def comparison_markdown(comparison):
    """paper_comparison's rows as a markdown table, after a line saying what the columns are."""
    note = ("Final-step mIoU (%, background excluded) of each run (miou_*) beside the paper's (paper_*) and "
            "ours - paper (diff_*). changed_behaviours: the switches of README \"Behaviours of the original\" the "
            "run set otherwise (empty: the original's behaviours; ?: not recorded).\n\n")
    lines = ["| " + " | ".join(COMPARISON_COLUMNS) + " |", "|" + "---|" * len(COMPARISON_COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[k]).replace("|", "\\|") for k in COMPARISON_COLUMNS) + " |"
              for r in comparison]
    return note + "\n".join(lines) + "\n"


def write_comparison(comparison, folder):
    """Writes paper_comparison.md and paper_comparison.csv (numbers to 0.1) into `folder`."""
    write_csv(comparison, os.path.join(folder, "paper_comparison.csv"), COMPARISON_COLUMNS)
    artifacts.write_text(os.path.join(folder, "paper_comparison.md"), comparison_markdown(comparison))


def plot_lines(experiments):
    """What plot draws for each incremental experiment: {results file path: (label, style)}. The label is
    "config (replay source)" and, for a variant other than the original's, its variant_label after it
    ("DISJOINT (gan, mean-subtracted)"); the style gives a colour per run of a config (config, replay source,
    parameters: the same in every setup's plot and for both variants) and the variant: solid with round
    markers for the original's behaviours, dotted with square markers for another variant (JOINT is dashed)."""
    runs = sorted({(e["config"], e["replay_source"], e["parameters"]) for e in experiments})
    lines = {}
    for e in experiments:
        label = variant_label(e["behaviours"])
        original = _unnamed(label)
        details = [e["replay_source"]] + ([] if original else [label])
        style = dict(color_index=runs.index((e["config"], e["replay_source"], e["parameters"])),
                     linestyle="-" if original else ":", marker="o" if original else "s")
        lines[e["path"]] = (f"{e['config']} ({', '.join(details)})", style)
    return lines


def plot(experiments, folder):
    """mIoU after each step per setup (one line per method and variant, plot_lines; JOINT dashed), and per-class
    IoU at the last step. Drawn on matplotlib Figures of their own: pyplot's backend and state are left alone
    (notebooks). Returns the paths of the PNG files written (plots/miou_<setup>.png)."""
    import matplotlib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top,import-outside-toplevel
    os.makedirs(folder, exist_ok=True)
    joint = next((e for e in experiments if e["test_type"] == "JOINT"), None)
    lines, colours, written = plot_lines(experiments), matplotlib.colormaps["tab20"], []
    for setup in sorted({e["setup"] for e in experiments if e["setup"] != "joint"}):
        runs = [e for e in experiments if e["setup"] == setup]
        fig = Figure(figsize=(13, 4.5))
        ax1, ax2 = fig.subplots(1, 2)
        for e in runs:
            label, style = lines[e["path"]]
            colour = colours(style["color_index"] % colours.N)
            ax1.plot([b["step"] for b in e["blocks"]], [100 * b["miou"] for b in e["blocks"]], color=colour,
                     linestyle=style["linestyle"], marker=style["marker"], label=label)
            iou = [v if v is not None else math.nan for v in e["blocks"][-1]["class_iou"]]
            ax2.plot(range(len(iou)), [100 * v for v in iou], color=colour, linestyle=style["linestyle"],
                     marker=".", label=label)
        if joint is not None:
            ax1.axhline(100 * joint["blocks"][-1]["miou"], color="k", linestyle="--", label="JOINT")
            iou = [v if v is not None else math.nan for v in joint["blocks"][-1]["class_iou"]]
            ax2.plot(range(len(iou)), [100 * v for v in iou], "k--", label="JOINT")
        ax1.set(title=f"{setup}: mIoU after each step", xlabel="step", ylabel="mIoU (%)")
        ax2.set(title=f"{setup}: per-class IoU at the last step", xlabel="class", ylabel="IoU (%)")
        ax1.legend(fontsize=6)
        fig.tight_layout()
        out = os.path.join(folder, f"miou_{setup}.png")
        with artifacts.atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        written.append(out)
    return written


def summarize(outputs, paper=None, refused=None):
    """Writes summary.csv, summary.md, summary.tex, method_setup_table.md, recall_vs_finetuning.md,
    recall_vs_baselines.md and plots/ for the results files of `outputs`, and with `paper` (a file of the paper's
    numbers, read_paper_results) paper_comparison.md and .csv. Only runs on real VOC should be given a paper file:
    nothing else decides it (see the module docstring). A folder that cannot be written (a finished, read-only
    one) gets no file, with a warning naming it: reading results needs no write.

    Args:
      refused: as read_experiments'.

    Returns the rows (list of dicts with COLUMNS)."""
    paper_rows = None if paper is None else read_paper_results(paper)  # a bad file fails before anything is written
    experiments = read_experiments(outputs, refused)
    rows = summary_rows(experiments)
    if not rows:
        logging.warning("no results files in %s", outputs)
        return rows
    try:
        if paper_rows is not None:
            write_comparison(paper_comparison(experiments, paper_rows), outputs)
        write_csv(rows, os.path.join(outputs, "summary.csv"))
        artifacts.write_text(os.path.join(outputs, "summary.md"), markdown_table(rows))
        artifacts.write_text(os.path.join(outputs, "summary.tex"), latex_table(rows, experiments))
        artifacts.write_text(os.path.join(outputs, "method_setup_table.md"), method_setup_table(rows))
        artifacts.write_text(os.path.join(outputs, "recall_vs_finetuning.md"), recall_vs_finetuning(rows))
        artifacts.write_text(os.path.join(outputs, "recall_vs_baselines.md"), recall_vs_baselines(rows))
        plot(experiments, os.path.join(outputs, "plots"))
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        logging.warning("summary not written: %s is not writable (%s); the tables are printed only", outputs, e)
        return rows
    logging.info("summary of %d experiments written to %s", len(rows), outputs)
    return rows


def main(_):
    """Prints the summary table (and with --paper the comparison); exit status 1 when a results file was refused
    for holding a step twice (its experiment is missing from the tables)."""
    refused = []
    rows = summarize(flags.FLAGS.outputs, paper=flags.FLAGS.paper, refused=refused)
    print(markdown_table(rows))
    if flags.FLAGS.paper and rows:
        experiments = read_experiments(flags.FLAGS.outputs)
        print(comparison_markdown(paper_comparison(experiments, read_paper_results(flags.FLAGS.paper))))
    for path, step in refused:
        logging.error("%s: step %d appears twice: left out of the summary (delete the file to validate its steps "
                      "again, or one of the two blocks)", path, step)
    if refused:
        sys.exit(1)


def cli():
    """The console script `recall-results`."""
    flags.DEFINE_string("outputs", "outputs", "folder of the results files")
    flags.DEFINE_string("paper", None, "file of the paper's numbers (docs/paper_results.csv): also write "
                        "paper_comparison.md/.csv. For runs on real VOC only, never the embedded benchmark")
    app.run(main)


if __name__ == "__main__":
    cli()
