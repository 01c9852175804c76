"""The paper's numbers beside ours. With a file of the paper's numbers (`results.py --paper
docs/paper_results.csv`, `results.summarize(outputs, paper=...)`): `paper_comparison.md` and `.csv`, each run's
final old / new / all mIoU beside the paper's row of the same method, replay source, setup and protocol, the
differences (ours - paper), and the switches of README "Behaviours of the original" the run set otherwise
(ORIGINAL_BEHAVIOURS; empty: the original's behaviours). The comparison is made only when asked: the embedded
benchmark's numbers are not the paper's data set and are never compared silently.

The paper file is CSV (`#` lines are comments) with the columns PAPER_COLUMNS: method (RECALL, fine-tuning and
joint are matched with runs; other methods, e.g. MiB, PLOP, are matched with the runs of that baseline),
replay_source (gan, web or none), test_type (a setup of the row's dataset: a TrainManager.TESTS name on VOC, a
datasets.SETUPS name on another, e.g. ADE20K's 100-50), setup (the tables' name of it, results_folder.setup_name:
e.g. 15-5, 10-5-5 on VOC, 100-50 on ADE20K), protocol (sequential, disjoint or overlapped; one the dataset runs),
miou_old, miou_new, miou_all (percent; empty: not reported) and source (address and table), and optionally
dataset (a datasets.DATASETS name; absent or empty: voc). A run is compared with the rows of its own dataset only:
docs/paper_results.csv holds the RECALL paper's VOC numbers, docs/paper_results_ade20k.csv the published ADE20K
numbers of MiB, PLOP and ILT (over ADE20K's object classes, as our ADE20K numbers: results_folder.group_mious).
`results` re-exports these names.
"""
import csv
import math
import os

from absl import logging

import artifacts
import behaviours
import datasets
from results_file import _parse_float
from results_folder import ORIGINAL_BEHAVIOURS, dataset_tests, group_mious, setup_name
from results_tables import _fmt, summary_rows, write_csv

PAPER_COLUMNS = ["method", "replay_source", "test_type", "setup", "protocol", "miou_old", "miou_new", "miou_all",
                 "source"]
PAPER_PROTOCOLS = ("sequential", "disjoint", "overlapped")
PAPER_REPLAY_SOURCES = ("gan", "web", "none")
# The methods a run of this project is: RECALL (replay), its fine-tuning (no replay), JOINT.
RUN_METHODS = {"RECALL": ("gan", "web"), "fine-tuning": ("none",), "joint": ("none",)}
COMPARISON_COLUMNS = ["method", "replay_source", "setup", "protocol", "config", "parameters",
                      "miou_old", "paper_old", "diff_old", "miou_new", "paper_new", "diff_new",
                      "miou_all", "paper_all", "diff_all", "changed_behaviours", "source"]


def _setup_name(test_type, dataset=datasets.DEFAULT):
    return setup_name(dataset, test_type, dict(dataset_tests(dataset))[test_type])


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
    dataset = row["dataset"] = row.get("dataset") or datasets.DEFAULT
    if dataset not in datasets.DATASETS:
        raise ValueError(f"{where}: unknown dataset {dataset!r}; expected one of {sorted(datasets.DATASETS)}")
    names = [name for name, _ in dataset_tests(dataset)]
    if row["test_type"] not in names:
        raise ValueError(f"{where}: unknown test_type {row['test_type']!r}"
                         f"{'' if dataset == datasets.DEFAULT else ' of ' + dataset}; expected one of {names}")
    if row["setup"] != _setup_name(row["test_type"], dataset):
        raise ValueError(f"{where}: setup {row['setup']!r} is not {row['test_type']}'s; expected "
                         f"{_setup_name(row['test_type'], dataset)!r}")
    protocols = [p for p in PAPER_PROTOCOLS if p in datasets.get(dataset).protocols]
    if row["protocol"] not in protocols:
        raise ValueError(f"{where}: unknown protocol {row['protocol']!r}"
                         f"{'' if dataset == datasets.DEFAULT else ' for ' + dataset}; expected one of {protocols}")
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
      list of dicts in file order with the PAPER_COLUMNS (mIoUs as floats, None where empty), dataset (a name;
      "voc" when the file has no such column) and line (int).

    Raises:
      FileNotFoundError; ValueError naming the file, the line and the bad value: a missing column, a row of
      another length, an unknown dataset, test_type (of the row's dataset), protocol (of the dataset's) or replay
      source, a setup that is not its test_type's, a number that is not a percentage, a row without a number or a
      source, two rows of one dataset, method, replay source, test_type and protocol.
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
        key = (row["dataset"], row["method"], row["replay_source"], row["test_type"], row["protocol"])
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
    """Each run beside the paper's row of the same dataset, method, replay source (flickr is the paper's web),
    test_type and protocol: final-step old / new / all mIoU (%, background excluded, the summary_rows numbers),
    the paper's, ours - paper, the run's changed_behaviours and the row's source. A JOINT run is set beside every
    joint row of its dataset, its IoUs split into the old / new groups of the row's setup (as summary.tex does).
    Runs without a row in the paper file are left out (logged).

    Args:
      experiments: read_experiments(...).
      paper_rows: read_paper_results(...).

    Returns:
      list of dicts with COMPARISON_COLUMNS.
    """
    dataset_of = lambda p: p.get("dataset") or datasets.DEFAULT
    index = {(dataset_of(p), p["method"], p["replay_source"], p["test_type"], p["protocol"]): p for p in paper_rows}
    comparison, unmatched = [], []
    for row, e in zip(summary_rows(experiments), experiments):
        method, source = run_method(e["test_type"], e["replay_source"])
        method = e.get("method") or method  # a baseline: its own name (MiB, PLOP, ...)
        dataset = e.get("dataset", datasets.DEFAULT)
        if method == "joint":  # joint training has no protocol: every table's joint row of its dataset
            matches = [p for p in paper_rows if p["method"] == "joint" and dataset_of(p) == dataset]
        else:
            matches = [index[k] for k in [(dataset, method, source, e["test_type"], e["protocol"])] if k in index]
        if not matches:
            unmatched.append(os.path.basename(e["path"]))
        for p in matches:
            ours = (row["miou_old"], row["miou_new"], row["miou_all"])
            if method == "joint" and p["test_type"] != "JOINT":
                ours = group_mious(e["blocks"][-1], dataset=dataset, setup=p["test_type"])[:3]
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
