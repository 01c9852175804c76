"""The results files and the summaries of finished experiments.

Each experiment writes `outputs/<name>.txt`, the original's text blocks (one per validated step: loss, mIoU,
per-class IoU and accuracy, old/new groups; format_results_block, parse_results_file), and beside it, when it
finishes, `<name>.gin` (the operative gin config) and `<name>.json` (what the experiment was: config, setup,
parameter indices, replay source; write_description). The summaries read the JSON files, never file names.

Writes `summary.csv`, `summary.md`, `summary.tex` (the paper's table form), `recall_vs_finetuning.md`
(RECALL's final mIoU minus the fine-tuning baseline's of the same protocol) and PNG plots in `plots/`.
Usage: python results.py --outputs outputs
"""
import ast
import csv
import glob
import json
import math
import os
import re

from absl import app, flags, logging
import numpy as np

import artifacts
import metrics
from train_manager import TrainManager

_HEADER_LEFT = "#" * 33 + " VALIDATION RESULTS OF STEP "
_HEADER_RIGHT = "#" * 36
_HEADER_RE = re.compile(r"^#+ VALIDATION RESULTS OF STEP (\d+)#+$")
_GROUP_RE = re.compile(r"^(old|new) classes (miou|mean accuracy) (\[.*\])$")
COLUMNS = ["config", "test_type", "setup", "replay_source", "parameters", "miou_old", "miou_new", "miou_all",
           "miou_all_bg", "delta_vs_joint"]
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


def append_results_block(path, block):
    """Appends a block to a results file atomically (the whole file is rewritten under a temporary name).

    Args:
      path: the results file (created with its folder if missing).
      block: text from format_results_block.
    """
    old = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
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


def parse_results_file(path):
    """Reads every block of a results file (ours or the original's).

    Args:
      path: an `outputs/*.txt` results file.

    Returns:
      list of dicts in file order, each with: step (int), loss, miou, mean_class_accuracy,
      mean_pixel_accuracy (floats), class_iou, class_accuracy (lists of float or None), and
      old_classes, new_classes (lists of int or None), old_miou, new_miou, old_accuracy, new_accuracy
      (floats or None; None for a first step).
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
    return blocks


def description_path(results_file):
    """`<name>.json` beside the results file `<name>.txt`."""
    return os.path.splitext(results_file)[0] + ".json"


def write_description(manager):
    """Writes the JSON description beside the experiment's results file: what the summaries read."""
    m = manager
    doc = {"config": m.test_name, "test_type": m.test_type, "n_classes": m.common.n_classes,
           "parameters": m.parameter_to_str(),
           "replay_source": m.replay_source if m.uses_replay() else "none",
           "results_file": os.path.basename(m.get_validation_file_path())}
    artifacts.write_json(description_path(m.get_validation_file_path()), doc)


# ---------------------------------------------------------------------------------------- summaries


def _mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _short(structure):
    return "-".join(map(str, structure)) if len(structure) == 3 else f"{structure[0]}-{structure[1]}"


def read_experiments(outputs):
    """Reads every finished experiment of `outputs`: each JSON description (write_description) and the
    results file it names (unreadable or unfinished ones are skipped with a warning; a results file without
    a description, such as one of the original's, is not summarised). Returns a list of dicts sorted by
    results file: config, test_type, setup, structure, parameters, replay_source ('gan', 'flickr' or 'none'
    for experiments without replay), blocks (parse_results_file), path."""
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
            continue
        if not blocks or max(b["step"] for b in blocks) != len(structure) - 1:
            logging.warning("skipping %s: the experiment is not finished (steps %s of %d)", path,
                            [b["step"] for b in blocks], len(structure))
            continue
        experiments.append(dict(config=config, test_type=test_type, structure=structure, parameters=parameters,
                                setup="joint" if test_type == "JOINT" else _short(structure),
                                replay_source=source, blocks=sorted(blocks, key=lambda b: b["step"]), path=path))
    return sorted(experiments, key=lambda e: e["path"])


def group_mious(block, n0):
    """(old 1..n0, new n0+1..last seen, all without background, all with background) mIoU of a block, %."""
    iou = list(block["class_iou"]) + [None] * N_CLASSES
    seen = [c for c in range(N_CLASSES) if iou[c] is not None]
    last = max(seen) if seen else 0
    pct = lambda values: 100 * _mean(values)
    return (pct(iou[1:n0 + 1]), pct(iou[n0 + 1:last + 1]), pct(iou[1:last + 1]), pct(iou[0:last + 1]))


def summary_rows(experiments):
    """One row per experiment: final-step mIoU (percent) of old, new, all classes and the gap to JOINT."""
    joint = next((e for e in experiments if e["test_type"] == "JOINT"), None)
    rows = []
    for e in experiments:
        n0 = e["structure"][0]
        old, new, all_, all_bg = group_mious(e["blocks"][-1], n0)
        delta = math.nan
        if joint is not None:
            delta = all_ - group_mious(joint["blocks"][-1], n0)[2]
        rows.append(dict(config=e["config"], test_type=e["test_type"], setup=e["setup"],
                         replay_source=e["replay_source"], parameters=e["parameters"], miou_old=old, miou_new=new,
                         miou_all=all_,
                         miou_all_bg=all_bg, delta_vs_joint=delta))
    return rows


def _fmt(v):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.1f}" if isinstance(v, float)
                                                                              else str(v))


def write_csv(rows, path):
    import io
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _fmt(r[k]) for k in COLUMNS})
    artifacts.write_text(path, buffer.getvalue())


def markdown_table(rows):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[k]) for k in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# Each RECALL config and the fine-tuning config of the same incremental protocol.
BASELINES = {"SEQUENTIAL": "FINE_TUNING", "DISJOINT": "FINE_TUNING_DISJOINT", "OVERLAPPED": "FINE_TUNING_OVERLAPPED"}


def recall_vs_finetuning(rows):
    """Markdown table: per setup, RECALL config and replay source, the final mIoU over all classes
    (miou_all) of RECALL, of the fine-tuning config of its protocol, and the difference."""
    lines = ["| setup | config | replay_source | parameters | RECALL | fine-tuning | difference |",
             "|---|---|---|---|---|---|---|"]
    index = {(r["config"], r["setup"]): r for r in rows}
    for r in rows:
        baseline = index.get((BASELINES.get(r["config"]), r["setup"]))
        if baseline is not None:
            lines.append(f"| {r['setup']} | {r['config']} | {r['replay_source']} | {r['parameters']} | "
                         f"{_fmt(r['miou_all'])} | "
                         f"{_fmt(baseline['miou_all'])} | {_fmt(r['miou_all'] - baseline['miou_all'])} |")
    return "\n".join(lines) + "\n"


def latex_table(rows, experiments):
    """The paper's form: a row per method (config, source), per setup the old / new / all mIoU; JOINT's row
    splits the joint model's IoUs into the same old / new groups."""
    setups = [s for s in ["19-1", "15-5", "15-1", "10-10", "10-5-5", "10-2", "10-1"]
              if any(r["setup"] == s for r in rows)]
    n0 = {e["setup"]: e["structure"][0] for e in experiments}
    joint = next((e for e in experiments if e["test_type"] == "JOINT"), None)
    methods = sorted({(r["config"], r["replay_source"], r["parameters"]) for r in rows if r["setup"] != "joint"})
    generations = {c: {p for c2, _, p in methods if c2 == c} for c, _, _ in methods}
    head = " & ".join(f"\\multicolumn{{3}}{{c}}{{{s}}}" for s in setups)
    lines = ["\\begin{tabular}{l" + "ccc" * len(setups) + "}", "\\toprule", f"Method & {head} \\\\",
             " & " + " & ".join(["old & new & all"] * len(setups)) + " \\\\", "\\midrule"]
    for config, source, parameters in methods:
        cells = []
        for s in setups:
            r = next((x for x in rows if (x["config"], x["replay_source"], x["parameters"], x["setup"])
                      == (config, source, parameters, s)), None)
            cells += [_fmt(r["miou_old"]), _fmt(r["miou_new"]), _fmt(r["miou_all"])] if r else ["", "", ""]
        name = config.replace("_", "\\_") + ("" if source == "none" else f" ({source})")
        if len(generations[config]) > 1:  # two parameter generations of one config: say which row is which
            name += f" P{parameters}"
        lines.append(f"{name} & " + " & ".join(cells) + " \\\\")
    if joint is not None:
        cells = [_fmt(v) for s in setups for v in group_mious(joint["blocks"][-1], n0[s])[:3]]
        lines += ["\\midrule", "JOINT & " + " & ".join(cells) + " \\\\"]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def plot(experiments, folder):
    """mIoU after each step per setup (one line per method, JOINT dashed), and per-class IoU at the last step.
    Drawn on matplotlib Figures of their own: pyplot's backend and state are left alone (notebooks)."""
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top,import-outside-toplevel
    os.makedirs(folder, exist_ok=True)
    joint = next((e for e in experiments if e["test_type"] == "JOINT"), None)
    for setup in sorted({e["setup"] for e in experiments if e["setup"] != "joint"}):
        runs = [e for e in experiments if e["setup"] == setup]
        fig = Figure(figsize=(13, 4.5))
        ax1, ax2 = fig.subplots(1, 2)
        for e in runs:
            label = f"{e['config']} ({e['replay_source']})"
            ax1.plot([b["step"] for b in e["blocks"]], [100 * b["miou"] for b in e["blocks"]], marker="o",
                     label=label)
            iou = [v if v is not None else math.nan for v in e["blocks"][-1]["class_iou"]]
            ax2.plot(range(len(iou)), [100 * v for v in iou], marker=".", label=label)
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


def summarize(outputs):
    """Writes summary.csv, summary.md, summary.tex and plots/ for the results files of `outputs`.
    Returns the rows (list of dicts with COLUMNS)."""
    experiments = read_experiments(outputs)
    rows = summary_rows(experiments)
    if not rows:
        logging.warning("no results files in %s", outputs)
        return rows
    write_csv(rows, os.path.join(outputs, "summary.csv"))
    artifacts.write_text(os.path.join(outputs, "summary.md"), markdown_table(rows))
    artifacts.write_text(os.path.join(outputs, "summary.tex"), latex_table(rows, experiments))
    artifacts.write_text(os.path.join(outputs, "recall_vs_finetuning.md"), recall_vs_finetuning(rows))
    plot(experiments, os.path.join(outputs, "plots"))
    logging.info("summary of %d experiments written to %s", len(rows), outputs)
    return rows


def main(_):
    rows = summarize(flags.FLAGS.outputs)
    print(markdown_table(rows))


def cli():
    """The console script `recall-results`."""
    flags.DEFINE_string("outputs", "outputs", "folder of the results files")
    app.run(main)


if __name__ == "__main__":
    cli()
