"""An experiment's results file, `outputs/<name>.txt`: the original's text blocks, one per validated step (loss,
mIoU, per-class IoU and accuracy, old / new groups; format_results_block, parse_results_file), byte for byte the
original's. `<name>.lock` is the experiment's lock (experiment_lock): one process at a time runs the experiment or
appends to its results file, which never holds a step twice (RepeatedStepError). The text is printed from numbers:
append_results stores the step's confusion matrix, loss and old / new classes in the matrices file first
(results_matrices.py), and matrix_blocks gives an experiment's blocks back from its matrices when they print its
text. `results` re-exports these names.
"""
import ast
import contextlib
import math
import os
import re

from absl import logging
import numpy as np

import artifacts
import metrics
from results_matrices import matrices_path, read_matrices, write_matrices

_HEADER_LEFT = "#" * 33 + " VALIDATION RESULTS OF STEP "
_HEADER_RIGHT = "#" * 36
_HEADER_RE = re.compile(r"^#+ VALIDATION RESULTS OF STEP (\d+)#+$")
_GROUP_RE = re.compile(r"^(old|new) classes (miou|mean accuracy) (\[.*\])$")


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
