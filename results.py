"""The results files and the summaries of finished experiments.

Each experiment writes `outputs/<name>.txt`, the original's text blocks (one per validated step: loss, mIoU,
per-class IoU and accuracy, old/new groups; format_results_block, parse_results_file), and beside it, when it
finishes, `<name>.gin` (the operative gin config) and `<name>.json` (what the experiment was: config, setup,
parameter indices, replay source; write_description). The summaries read the JSON files, never file names.
`<name>.lock` is the experiment's lock (experiment_lock): one process at a time runs the experiment or appends to
its results file, which never holds a step twice (RepeatedStepError). The text is printed from numbers: every
validated step's confusion matrix, loss and old / new classes are kept beside it in `<name>.matrices.npz`
(append_results, write_matrices, read_matrices), and the summaries compute every number from the matrices
(metrics.py; matrix_blocks), or from the text for runs without them (the original's, earlier ones).

Writes `summary.csv`, `summary.md`, `summary.tex` (the paper's table form), `method_setup_table.md` (the
README's table: a row per method, protocol, replay source and variant, a column per setup), `recall_vs_finetuning.md`
(RECALL's final mIoU minus fine-tuning's of the same protocol), `recall_vs_baselines.md` (RECALL beside
fine-tuning and the baselines, LwF, ILT, MiB, PLOP, per setup and protocol), PNG plots in
`plots/` and a CSV per experiment in `per_step/` (PLOP's layout: step, per-class IoU, mIoU; step_csv).
`load(outputs)` gives the same numbers as rows (a dict per experiment, or per step), for notebooks and pandas.

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
       python results.py --outputs outputs --metric miou_avg   (one number per run: metrics.EXPERIMENT_METRICS)
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
import zipfile
import zlib

from absl import app, flags, logging
import gin
import numpy as np

import artifacts
import behaviours
import methods
import metrics
from train_manager import TrainManager

_HEADER_LEFT = "#" * 33 + " VALIDATION RESULTS OF STEP "
_HEADER_RIGHT = "#" * 36
_HEADER_RE = re.compile(r"^#+ VALIDATION RESULTS OF STEP (\d+)#+$")
_GROUP_RE = re.compile(r"^(old|new) classes (miou|mean accuracy) (\[.*\])$")
COLUMNS = ["config", "test_type", "setup", "replay_source", "variant", "parameters", "miou_old", "miou_new",
           "miou_all", "miou_all_bg", "delta_vs_joint", "miou_avg", "forgetting"]


# ------------------------------------------------------------------------------------ the results file


def _fmt_list(values):
    return str([None if v is None else "{:.3f}".format(v) for v in values])


def format_results_block(step, loss, cm, old_classes, new_classes):
    """The text the original appends to the results file after validating a step (the numbers are
    metrics.step_results' of the matrix).

    Args:
      step: int, the step index.
      loss: mean validation loss (float or numpy scalar, printed with str()).
      cm: confusion matrix [n, n] (numpy or tensor).
      old_classes: list of old class ids (incremental steps) or None (first step).
      new_classes: list of the step's new class ids (first step: all its classes, background included).

    Returns:
      str, starting with an empty line and ending with a blank line, ready to append.
    """
    r = metrics.step_results(np.asarray(cm, np.float64), old_classes, new_classes)
    loss = loss.numpy() if hasattr(loss, "numpy") else loss
    lines = [
        "",
        f"{_HEADER_LEFT}{step}{_HEADER_RIGHT}",
        f"LOSS\n{loss}\n",
        f"mIoU\n{r['miou']}\n",
        f"class_iou\n{_fmt_list(r['class_iou'])}\n",
        f"mean class accuracy\n{r['mean_class_accuracy']}\n",
        f"mean pixel accuracy\n{r['mean_pixel_accuracy']}\n",
        f"class accuracy\n{_fmt_list(r['class_accuracy'])}\n",
    ]
    if r["old_classes"]:
        old, new = r["old_classes"], r["new_classes"]
        lines += [f"old classes miou {old}\n{r['old_miou']}\n",
                  f"new classes miou {new}\n{r['new_miou']}\n",
                  f"old classes mean accuracy {old}\n{r['old_accuracy']}\n",
                  f"new classes mean accuracy {new}\n{r['new_accuracy']}\n"]
    return "\n".join(lines) + "\n"


def lock_path(results_file):
    """`<name>.lock` beside the results file `<name>.txt`: the lock of the experiment (experiment_lock)."""
    return os.path.splitext(results_file)[0] + artifacts.LOCK_SUFFIX


def experiment_lock(results_file, on_wait=None):
    """The lock of the experiment whose results file is `results_file` (artifacts.exclusive_lock on lock_path): held
    by the process that runs the experiment (sweep.run_experiment) and around every append, so that two processes
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
    _append(path, block, lock, None)


def append_results(path, step, loss, cm, old_classes, new_classes, lock=True):
    """Appends a validated step to an experiment: its matrix to the matrices file (matrices_path, write_matrices)
    and its block (format_results_block) to the results file, both under the experiment's lock, the matrices
    first: a step is in the results file only once its matrix is stored (a matrix of a step the results file does
    not hold, left by a run killed in between, is replaced).

    Args:
      path: the results file. step, loss, old_classes, new_classes: as format_results_block's.
      cm: confusion matrix [n, n] of integer counts (numpy or tensor).
      lock: as append_results_block's.

    Raises:
      ValueError naming the file and the step when the results file holds the step already, or naming the
      matrices file and its fault when it cannot be read or holds matrices of another size.
    """
    cm = np.asarray(cm.numpy() if hasattr(cm, "numpy") else cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or not np.issubdtype(cm.dtype, np.integer):
        raise ValueError(f"step {step} of {path}: expected a square integer confusion matrix, got {cm.dtype} "
                         f"{cm.shape}")
    block = format_results_block(step, loss, cm, old_classes, new_classes)
    loss = float(loss.numpy() if hasattr(loss, "numpy") else loss)
    entry = dict(step=int(step), loss=loss, confusion_matrix=cm.astype(np.int64),
                 old_classes=[int(c) for c in old_classes] if old_classes else None,
                 new_classes=[int(c) for c in new_classes])

    def store_matrix():
        data = matrices_path(path)
        entries = read_matrices(data) if os.path.exists(data) else []
        if entries and entries[0]["confusion_matrix"].shape != cm.shape:
            raise ValueError(f"{data}: holds {entries[0]['confusion_matrix'].shape} matrices, step {step} is "
                             f"{cm.shape}: not this experiment's; delete it (the results file is unaffected)")
        if any(e["step"] == step for e in entries):
            logging.info("%s: replacing the matrix of step %d, which %s does not hold", data, step, path)
        write_matrices(data, sorted([e for e in entries if e["step"] != step] + [entry], key=lambda e: e["step"]))

    _append(path, block, lock, store_matrix)


def _append(path, block, lock, before_text):
    (step, _), = _header_steps(block.splitlines())
    with experiment_lock(path) if lock else contextlib.nullcontext():
        old = ""
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = f.read()
        if step in [s for s, _ in _header_steps(old.splitlines())]:
            raise ValueError(f"{path} already holds step {step}: a results file holds each step once")
        if before_text is not None:
            before_text()
        artifacts.write_text(path, old + block, fsync=True)


# ------------------------------------------------------------------------------------ the matrices file

MATRICES_SUFFIX = ".matrices.npz"
# The arrays of a matrices file, over its S steps (n classes): name -> (dtype, shape as a function of S and n).
_MATRIX_ARRAYS = {"step": (np.int64, lambda s, n: (s,)), "loss": (np.float64, lambda s, n: (s,)),
                  "confusion_matrix": (np.int64, lambda s, n: (s, n, n)),
                  "old_classes": (np.int64, lambda s, n: (s, n)), "new_classes": (np.int64, lambda s, n: (s, n))}


def matrices_path(results_file):
    """`<name>.matrices.npz` beside the results file `<name>.txt`: the data of its steps (write_matrices)."""
    return os.path.splitext(results_file)[0] + MATRICES_SUFFIX


def write_matrices(path, entries):
    """Writes a matrices file atomically: a numpy .npz (np.load(path) reads it) with, over the steps in order,
    `step` int64 [S], `loss` float64 [S], `confusion_matrix` int64 [S, n, n] (rows ground truth, columns prediction),
    `old_classes` and `new_classes` int64 [S, n] (each step's class ids in order, padded with -1; a first step has
    no old class). The same entries give the same bytes (no time stamps in the archive).

    Args:
      entries: list of dicts: step (int), loss (float), confusion_matrix (int [n, n], one n for all),
        old_classes (list of int or None), new_classes (list of int).
    """
    n = entries[0]["confusion_matrix"].shape[0] if entries else 0
    shapes = sorted({np.shape(e["confusion_matrix"]) for e in entries})
    if shapes and shapes != [(n, n)]:
        raise ValueError(f"{path}: the matrices of one experiment are [n, n] of one n, got {shapes}")

    def classes(lists):
        out = np.full((len(lists), n), -1, np.int64)
        for i, values in enumerate(lists):
            out[i, :len(values or [])] = values or []
        return out

    arrays = {"step": np.array([e["step"] for e in entries], np.int64).reshape(-1),
              "loss": np.array([e["loss"] for e in entries], np.float64).reshape(-1),
              "confusion_matrix": np.array([e["confusion_matrix"] for e in entries], np.int64).reshape(-1, n, n),
              "old_classes": classes([e["old_classes"] for e in entries]),
              "new_classes": classes([e["new_classes"] for e in entries])}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
    artifacts.write_bytes(path, buffer.getvalue(), fsync=True)


def _class_list(row, n, where):
    values = [int(v) for v in row]
    length = values.index(-1) if -1 in values else len(values)
    if any(v != -1 for v in values[length:]) or any(not 0 <= v < n for v in values[:length]) \
            or len(set(values[:length])) != length:
        raise ValueError(f"{where}: expected distinct class ids in [0, {n}) padded with -1 at the end, got {values}")
    return values[:length]


def read_matrices(path):
    """Reads a matrices file (write_matrices).

    Returns:
      list of dicts sorted by step: step (int), loss (float), confusion_matrix (int64 numpy [n, n]), old_classes
      (list of int, None for a step without), new_classes (list of int).

    Raises:
      FileNotFoundError; ValueError naming the file and its fault (not an .npz, a missing array, another dtype or
      shape, negative counts, a class id outside the matrix, a step without new classes, a step held twice).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"matrices file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in _MATRIX_ARRAYS if name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"{path}: not a matrices file ({type(e).__name__}: {e})") from None
    missing = [name for name in _MATRIX_ARRAYS if name not in arrays]
    if missing:
        raise ValueError(f"{path}: lacks the arrays {missing}")
    cms = arrays["confusion_matrix"]
    if cms.ndim != 3 or cms.shape[1] != cms.shape[2]:
        raise ValueError(f"{path}: confusion_matrix of shape {cms.shape}, expected [steps, n, n]")
    s, n = cms.shape[:2]
    for name, (dtype, shape) in _MATRIX_ARRAYS.items():
        if arrays[name].dtype != dtype or arrays[name].shape != shape(s, n):
            raise ValueError(f"{path}: {name} is {arrays[name].dtype} {arrays[name].shape}, expected "
                             f"{np.dtype(dtype)} {shape(s, n)}")
    if (cms < 0).any():
        raise ValueError(f"{path}: negative counts in confusion_matrix")
    entries, seen = [], set()
    for i in range(s):
        step, where = int(arrays["step"][i]), f"{path}: step {int(arrays['step'][i])}"
        if step in seen:
            raise ValueError(f"{where} appears twice: a matrices file holds each step once")
        seen.add(step)
        new = _class_list(arrays["new_classes"][i], n, f"{where}: new_classes")
        if not new:
            raise ValueError(f"{where}: no new class")
        old = _class_list(arrays["old_classes"][i], n, f"{where}: old_classes") or None
        entries.append(dict(step=step, loss=float(arrays["loss"][i]), confusion_matrix=cms[i], old_classes=old,
                            new_classes=new))
    return sorted(entries, key=lambda e: e["step"])


def _text_blocks(text):
    """{step: (its block's lines without the loss value and trailing blank lines, the loss value's text)} of a
    results file's text. A float32 loss prints otherwise than its float64: the two are compared as numbers."""
    lines = [line.rstrip() for line in text.splitlines()]
    headers = _header_steps(lines)
    blocks = {}
    for (step, number), end in zip(headers, [n - 1 for _, n in headers[1:]] + [len(lines)]):
        block = lines[number - 1:end]
        while block and not block[-1]:
            block.pop()
        loss = block.pop(block.index("LOSS") + 1) if "LOSS" in block[:-1] else None
        blocks[step] = block, loss
    return blocks


def _same_loss(text, value):
    try:
        printed = float(text)
    except (TypeError, ValueError):
        return False
    return (math.isnan(printed) and math.isnan(value)) or math.isclose(printed, value, rel_tol=1e-6)


def matrix_blocks(results_file, n_classes=None):
    """The blocks of an experiment computed from its matrices file (metrics.step_results), or None when it has
    none, or one that cannot stand for its results file: unreadable, of another number of classes, without a step
    the results file holds, or whose numbers do not give the file's text (all but a warning naming the matrices
    file and the fault; the caller reads the text then). Steps the results file does not hold are left out.

    Returns:
      list of dicts sorted by step with parse_results_file's keys (class lists not rounded) and
      confusion_matrix (int64 [n, n]); or None.
    """
    data = matrices_path(results_file)
    if not os.path.exists(data):
        return None
    try:
        entries = {e["step"]: e for e in read_matrices(data)}
        with open(results_file, encoding="utf-8") as f:
            text = _text_blocks(f.read())
        missing = sorted(set(text) - set(entries))
        if missing:
            raise ValueError(f"{data}: no matrix of the step(s) {missing} that {results_file} holds")
        blocks = []
        for step in sorted(text):
            e = entries[step]
            cm, where = e["confusion_matrix"], f"{data}: step {step}"
            if n_classes is not None and cm.shape[0] != n_classes:
                raise ValueError(f"{where}: a {cm.shape[0]}-class matrix, the experiment has {n_classes} classes")
            block = format_results_block(step, e["loss"], cm, e["old_classes"], e["new_classes"])
            lines, loss = text[step]
            if _text_blocks(block)[step][0] != lines or not _same_loss(loss, e["loss"]):
                raise ValueError(f"{where}: its numbers do not give the block of step {step} in {results_file}")
            blocks.append(dict(metrics.step_results(cm, e["old_classes"], e["new_classes"]), step=step,
                               loss=e["loss"], confusion_matrix=cm))
    except (OSError, ValueError) as e:
        logging.warning("%s (the summary reads the results file's text instead)", e)
        return None
    return blocks


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


def _short(structure):
    return "-".join(map(str, structure)) if len(structure) == 3 else f"{structure[0]}-{structure[1]}"


def read_experiments(outputs, refused=None):
    """Reads every finished experiment of `outputs`: each JSON description (write_description) and the
    results file it names (unreadable or unfinished ones are skipped with a warning, and so is one that holds a
    step twice, RepeatedStepError; a results file without a description, such as one of the original's, is not
    summarised). Returns a list of dicts sorted by results file: config, test_type, setup, structure, parameters,
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
            structure = dict(TrainManager.TESTS).get(test_type)  # the class steps follow from the setup
            if structure is None:
                raise ValueError(f"test_type {test_type!r} is none of TrainManager.TESTS")
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
                                setup="joint" if test_type == "JOINT" else _short(structure),
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


def group_mious(block, n0):
    """(old 1..n0, new n0+1..last seen, all without background, all with background) mIoU of a block, %
    (metrics.class_groups; any number of classes: the block's class_iou list's)."""
    return tuple(100 * v for v in metrics.class_groups(block["class_iou"], n0))


def experiment_metrics(experiment, joint=None):
    """metrics.experiment_metrics of an experiment of read_experiments (percent), JOINT's last step as the
    reference of delta_vs_joint when `joint` (JOINT's experiment) is given."""
    blocks = experiment["blocks"]
    return metrics.experiment_metrics([b["class_iou"] for b in blocks], experiment["structure"][0],
                                      None if joint is None else joint["blocks"][-1]["class_iou"],
                                      blocks[-1]["mean_pixel_accuracy"], blocks[-1]["mean_class_accuracy"])


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
    """One row per experiment: final-step mIoU (percent) of old, new, all classes and the gap to JOINT, the mean
    mIoU over steps and the mean forgetting (metrics.EXPERIMENT_METRICS), and the run's variant (run_variant;
    variant_label, for the tables' headers, is not a column)."""
    joint = next((e for e in experiments if e["test_type"] == "JOINT"), None)
    rows = []
    for e in experiments:
        numbers = experiment_metrics(e, joint)
        rows.append(dict(config=e["config"], test_type=e["test_type"], setup=e["setup"],
                         replay_source=e["replay_source"], variant=run_variant(e["behaviours"]),
                         parameters=e["parameters"], **{k: numbers[k] for k in COLUMNS[6:]},
                         # not COLUMNS: for the tables below
                         variant_label=variant_label(e["behaviours"]), method=e.get("method"),
                         protocol=e.get("protocol")))
    return rows


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
      list of dicts. Per experiment: RUN_COLUMNS, every metrics.EXPERIMENT_METRICS number, iou_<c> (last step)
      and forgetting_<c> per class, steps (how many), read_from ("matrices" or "text"), results_file. Per step:
      RUN_COLUMNS, step, loss, miou (the results file's: the step's classes, background included), miou_old,
      miou_new, miou_all, miou_all_bg (the setup's groups at that step), pixel_accuracy, class_accuracy, iou_<c>,
      read_from, results_file. Numbers in percent but loss; nan where not defined (a class not evaluated).
    """
    experiments = read_experiments(outputs, refused)
    joint = next((e for e in experiments if e["test_type"] == "JOINT"), None)
    pct = lambda v: math.nan if v is None else 100 * v
    rows = []
    for e in experiments:
        run = {k: run_variant(e["behaviours"]) if k == "variant" else e.get(k) for k in RUN_COLUMNS}
        where = dict(read_from=e["read_from"], results_file=os.path.basename(e["path"]))
        if not per_step:
            rows.append(dict(run, **experiment_metrics(e, joint), steps=len(e["blocks"]), **where))
            continue
        for b in e["blocks"]:
            groups = group_mious(b, e["structure"][0])
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
FINE_TUNING_OF = {"SEQUENTIAL": "FINE_TUNING", "DISJOINT": "FINE_TUNING_DISJOINT", "OVERLAPPED": "FINE_TUNING_OVERLAPPED"}


def step0_indices(parameters):
    """The common and first-step indices of an experiment's parameter indices ("1.0" of "1.0.0.2"): the step-0
    network it starts from."""
    return ".".join(parameters.split(".")[:2])


def _same_protocol(recall, finetuning):
    if recall.get("protocol") and finetuning.get("protocol"):
        return recall["protocol"] == finetuning["protocol"]
    return finetuning["config"] == FINE_TUNING_OF.get(recall["config"])


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
    fixed = ["fine-tuning"] + [methods.get(name).title for name in methods.baselines()]
    cells = {}
    for r in rows:
        if r.get("method") not in (None, "joint"):
            cells.setdefault((r["setup"], r["protocol"]), {})[_method_label(r)] = r
    compared = {k: v for k, v in cells.items() if any(r["method"] not in ("RECALL", "fine-tuning") for r in v.values())}
    if not compared:
        return "No run of a field's baseline (LwF, ILT, MiB, PLOP; README \"Baselines\").\n"
    columns = {label: r for v in compared.values() for label, r in v.items()}  # label -> a row of it

    def order(label):  # RECALL first, then fine-tuning and the baselines in methods.baselines() order; originals first
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
# The methods a run of this project is: RECALL (replay), its fine-tuning (no replay), JOINT.
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
        method = e.get("method") or method  # a baseline: its own name (MiB, PLOP, ...)
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
    recall_vs_baselines.md, plots/ and per_step/ (write_step_csvs) for the results files of `outputs`, and with
    `paper` (a file of the paper's numbers, read_paper_results) paper_comparison.md and .csv. Only runs on real VOC
    should be given a paper file: nothing else decides it (see the module docstring). A folder that cannot be
    written (a finished, read-only one) gets no file, with a warning naming it: reading results needs no write.

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
        write_step_csvs(experiments, os.path.join(outputs, "per_step"))
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        logging.warning("summary not written: %s is not writable (%s); the tables are printed only", outputs, e)
        return rows
    logging.info("summary of %d experiments written to %s", len(rows), outputs)
    return rows


def metric_table(rows, name):
    """Markdown table of one number of load()'s rows (`name`: an EXPERIMENT_METRICS name, iou_<c>, forgetting_<c>)
    beside the columns that say which run each row is.

    Raises:
      ValueError naming `name` and the names there are, when no row has it.
    """
    if rows and not any(name in r for r in rows):
        known = list(metrics.EXPERIMENT_METRICS) + ["iou_<class id>", "forgetting_<class id>"]
        raise ValueError(f"--metric {name!r}: no run has it; expected one of {known}")
    if not rows and name not in metrics.EXPERIMENT_METRICS:
        raise ValueError(f"--metric {name!r}: unknown; expected one of {list(metrics.EXPERIMENT_METRICS)}")
    header = ["config", "setup", "replay_source", "variant", "parameters", name]
    return _markdown(header, [[_fmt(r.get(k, math.nan)) for k in header] for r in rows])


def main(_):
    """Prints the summary table (and with --paper the comparison; with --metric only that number per run); exit
    status 1 when a results file was refused for holding a step twice (its experiment is missing from the
    tables)."""
    refused = []
    if flags.FLAGS.metric:
        try:
            print(metric_table(load(flags.FLAGS.outputs, refused=refused), flags.FLAGS.metric))
        except ValueError as e:
            raise app.UsageError(str(e)) from None
    else:
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
    flags.DEFINE_string("metric", None, "print only this number of every finished run (results.load's rows: "
                        f"{', '.join(metrics.EXPERIMENT_METRICS)}, iou_<class id>, forgetting_<class id>), "
                        "computed from the folder alone; no file is written")
    app.run(main)


if __name__ == "__main__":
    cli()
