"""Summaries of finished experiments, rebuilt from the results files (`outputs/*.txt`) alone.

Writes `summary.csv`, `summary.md`, `summary.tex` (the paper's table form), `recall_vs_finetuning.md`
(RECALL's final mIoU minus the fine-tuning baseline's of the same protocol) and PNG plots in `plots/`.
Usage: python results.py --outputs outputs
"""
import csv
import glob
import math
import os
import re

from absl import app, flags, logging

import artifacts
import metrics
from train_manager import TrainManager

RESULT_NAME = re.compile(r"^(?P<config>.+) \(T(?P<test>\d+)_P(?P<params>[\d.]+)(?:_(?P<source>gan|flickr))?"
                         r"(?P<one>_1)?\)(?:_1)?\.txt$")
COLUMNS = ["config", "test_type", "setup", "replay_source", "miou_old", "miou_new", "miou_all", "miou_all_bg",
           "delta_vs_joint"]
N_CLASSES = 21


def _mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _short(structure):
    return "-".join(map(str, structure)) if len(structure) == 3 else f"{structure[0]}-{structure[1]}"


def read_experiments(outputs):
    """Parses every finished experiment's results file of `outputs` (unfinished ones are skipped with a
    warning). Returns a list of dicts (one per file), sorted by name:
    config, test_type, setup, structure, replay_source ('gan', 'flickr' or 'none' for configs without
    replay), blocks (metrics.parse_results_file), path."""
    experiments = []
    for path in sorted(glob.glob(os.path.join(outputs, "*.txt"))):
        match = RESULT_NAME.match(os.path.basename(path))
        if not match:
            continue
        try:
            blocks = metrics.parse_results_file(path)
        except ValueError as e:
            logging.warning("skipping unreadable results file: %s", e)
            continue
        test_type, structure = TrainManager.TESTS[int(match["test"])]
        if not blocks or max(b["step"] for b in blocks) != len(structure) - 1:
            logging.warning("skipping %s: the experiment is not finished (steps %s of %d)", path,
                            [b["step"] for b in blocks], len(structure))
            continue
        config = match["config"]
        no_replay = config.startswith("FINE_TUNING") or test_type == "JOINT" or not match["source"]
        experiments.append(dict(config=config, test_type=test_type, structure=structure,
                                setup="joint" if test_type == "JOINT" else _short(structure),
                                replay_source="none" if no_replay else match["source"],
                                blocks=sorted(blocks, key=lambda b: b["step"]), path=path))
    return experiments


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
                         replay_source=e["replay_source"], miou_old=old, miou_new=new, miou_all=all_,
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
    lines = ["| setup | config | replay_source | RECALL | fine-tuning | difference |", "|---|---|---|---|---|---|"]
    index = {(r["config"], r["setup"]): r for r in rows}
    for r in rows:
        baseline = index.get((BASELINES.get(r["config"]), r["setup"]))
        if baseline is not None:
            lines.append(f"| {r['setup']} | {r['config']} | {r['replay_source']} | {_fmt(r['miou_all'])} | "
                         f"{_fmt(baseline['miou_all'])} | {_fmt(r['miou_all'] - baseline['miou_all'])} |")
    return "\n".join(lines) + "\n"


def latex_table(rows, experiments):
    """The paper's form: a row per method (config, source), per setup the old / new / all mIoU; JOINT's row
    splits the joint model's IoUs into the same old / new groups."""
    setups = [s for s in ["19-1", "15-5", "15-1", "10-10", "10-5-5", "10-2", "10-1"]
              if any(r["setup"] == s for r in rows)]
    n0 = {e["setup"]: e["structure"][0] for e in experiments}
    joint = next((e for e in experiments if e["test_type"] == "JOINT"), None)
    methods = sorted({(r["config"], r["replay_source"]) for r in rows if r["setup"] != "joint"})
    head = " & ".join(f"\\multicolumn{{3}}{{c}}{{{s}}}" for s in setups)
    lines = ["\\begin{tabular}{l" + "ccc" * len(setups) + "}", "\\toprule", f"Method & {head} \\\\",
             " & " + " & ".join(["old & new & all"] * len(setups)) + " \\\\", "\\midrule"]
    for config, source in methods:
        cells = []
        for s in setups:
            r = next((x for x in rows if (x["config"], x["replay_source"], x["setup"]) == (config, source, s)), None)
            cells += [_fmt(r["miou_old"]), _fmt(r["miou_new"]), _fmt(r["miou_all"])] if r else ["", "", ""]
        name = config.replace("_", "\\_") + ("" if source == "none" else f" ({source})")
        lines.append(f"{name} & " + " & ".join(cells) + " \\\\")
    if joint is not None:
        cells = [_fmt(v) for s in setups for v in group_mious(joint["blocks"][-1], n0[s])[:3]]
        lines += ["\\midrule", "JOINT & " + " & ".join(cells) + " \\\\"]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def plot(experiments, folder):
    """mIoU after each step per setup (one line per method, JOINT dashed), and per-class IoU at the last step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(folder, exist_ok=True)
    joint = next((e for e in experiments if e["test_type"] == "JOINT"), None)
    for setup in sorted({e["setup"] for e in experiments if e["setup"] != "joint"}):
        runs = [e for e in experiments if e["setup"] == setup]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
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
        plt.close(fig)


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
