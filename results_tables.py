"""The summaries of a folder's finished experiments (results_folder.read_experiments): a row per experiment
(summary_rows, COLUMNS) written as `summary.csv`, `summary.md` and `summary.tex` (the paper's table form);
`method_setup_table.md` (the README's table: a row per method, protocol, replay source and variant, a column per
setup); `recall_vs_finetuning.md` (RECALL's final mIoU minus fine-tuning's of the same protocol);
`recall_vs_baselines.md` (RECALL beside fine-tuning and the baselines, LwF, ILT, MiB, PLOP, per setup and protocol);
PNG plots (plot); for a dataset of more than MANY_CLASSES classes (ADE20K's 150) per-class tables grouped by step
(`per_class_<setup>.md`, per_class_tables) and sorted bar charts instead of a line per class (per_class_kind).
results.summarize writes them all. Every table takes each run's dataset and setup from read_experiments (its groups
from datasets.SETUPS; JOINT is the JOINT run of the same dataset, joint_of).

A run's variant is the set of switches of README "Behaviours of the original" (behaviours.SWITCHES) it set
otherwise: "original" when none (the original's code), e.g. "Training.replay_label_input = 'mean_subtracted'" for
the method as the paper describes it; every table keeps the variants of one method apart (variant_label names them
in headers and legends). `results` re-exports these names.
"""
import csv
import io
import math
import os

import artifacts
import behaviours
import datasets
import methods
import metrics
from results_folder import experiment_metrics, group_mious, joint_of, run_variant

COLUMNS = ["config", "test_type", "setup", "replay_source", "variant", "parameters", "miou_old", "miou_new",
           "miou_all", "miou_all_bg", "delta_vs_joint", "miou_avg", "forgetting"]


def variant_label(values, omit=()):
    """A short name of a run's variant, for table headers and plot legends, derived from the switches rather than
    listed per switch: "original" when every switch of behaviours.SWITCHES has its default, "?" when the run
    records no switch values (None), else each changed switch (SWITCHES order, joined by ", ") by its value: a
    text value with "-" for "_" ("mean-subtracted" for Training.replay_label_input = "mean_subtracted"), a
    boolean as the argument's name or "no " + it ("no train_batch_norm"), another value as "argument value".
    Switches named in `omit` (set the same way in every run of a table: common_switches) are left out."""
    if values is None:
        return "?"
    parts = []
    for name, value in behaviours.changed(values).items():
        if name in omit:
            continue
        argument = name.split(".")[-1]
        if isinstance(value, str):
            parts.append(value.replace("_", "-"))
        elif isinstance(value, bool):
            parts.append(argument if value else f"no {argument}")
        else:
            parts.append(f"{argument} {value}")
    return ", ".join(parts) or "original"


def common_switches(rows):
    """The switches set otherwise than the original, the same way, in every row: the "name = value" parts (as
    behaviours.variant writes them) common to every row's `variant`; [] when a row has the original's behaviours
    or records none ("?"). The embedded benchmark sets TrainManager.mixed_labels_per_experiment for every run: its
    tables name that once (common_note) and the variants by their other switches."""
    common = None
    for r in rows:
        parts = [] if r.get("variant") in (None, "original", "?") else r["variant"].split("; ")
        common = parts if common is None else [p for p in common if p in parts]
    return common or []


def _common_of_experiments(experiments):
    """(common_switches of read_experiments' records, the switch names among them: variant_label's `omit`)."""
    common = common_switches([dict(variant=run_variant(e["behaviours"])) for e in experiments])
    return common, {part.split(" = ")[0] for part in common}


def common_note(rows):
    """The line a table of `rows` starts with when a switch is set the same way in every row (common_switches):
    its variant names leave that switch out. "" otherwise."""
    common = common_switches(rows)
    if not common:
        return ""
    return (f"Every run here: {'; '.join(common)} (README \"Behaviours of the original\"); the variants below are "
            f"named by their other switches.\n\n")


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
    variant_label, for the tables' headers, is not a column; nor is dataset). delta_vs_joint is to the JOINT run
    of the experiment's dataset (joint_of)."""
    _, omit = _common_of_experiments(experiments)
    rows = []
    for e in experiments:
        numbers = experiment_metrics(e, joint_of(experiments, e.get("dataset", datasets.DEFAULT)))
        rows.append(dict(config=e["config"], test_type=e["test_type"], setup=e["setup"],
                         replay_source=e["replay_source"], variant=run_variant(e["behaviours"]),
                         parameters=e["parameters"], **{k: numbers[k] for k in COLUMNS[6:]},
                         # not COLUMNS: for the tables below
                         variant_label=variant_label(e["behaviours"], omit), method=e.get("method"),
                         protocol=e.get("protocol"), dataset=e.get("dataset", datasets.DEFAULT)))
    return rows


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
    difference, and which fine-tuning run that is (`fine-tuning run`, pair_note). The switches every row sets
    (common_switches) are named once above the table, not in the variant column."""
    header = ["setup", "protocol", "config", "replay_source", "variant", "parameters", "RECALL", "fine-tuning",
              "difference", "fine-tuning run"]
    common, cells = common_switches(rows), []
    for pair in finetuning_pairs(rows):
        r, f = pair["recall"], pair["finetuning"]
        variant = "; ".join(p for p in r["variant"].split("; ") if p not in common) or "original"
        cells.append([_fmt(dict(r, variant=variant)[k]) for k in header[:6]] + [_fmt(r["miou_all"]), _fmt(f["miou_all"]),
                                                         _fmt(r["miou_all"] - f["miou_all"]), pair_note(pair)])
    return common_note(rows) + _markdown(header, cells)


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
    return common_note(rows) + _markdown(["setup", "protocol"] + labels + gaps, table)


# README "The embedded benchmark / Results": its setups, in its column order, and its protocols in its row order.
README_SETUPS = ["19-1", "15-5", "10-10", "10-5-5", "15-1", "10-2", "10-1"]
README_PROTOCOLS = {"sequential": "seq.", "disjoint": "disj.", "overlapped": "ovl."}


def _with_other_datasets(voc_setups):
    """The tables' setup columns: VOC's (`voc_setups`, in their order), then every other dataset's setups in
    datasets.SETUPS' order (ADE20K's "100-50", "100-10", "50-50", "100-5"; JOINT is a row, not a column)."""
    others = [name for dataset in datasets.SETUPS if dataset != datasets.VOC.name
              for name in datasets.SETUPS[dataset] if name != "JOINT"]
    return list(voc_setups) + [name for name in others if name not in voc_setups]


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
    setups = [s for s in _with_other_datasets(README_SETUPS) if any(r["setup"] == s for r in rows)]
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
    return common_note(rows) + _markdown(["method"] + setups, table)


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
    after the source ("DISJOINT (gan, mean-subtracted)"). Another dataset's setups follow VOC's (each split by its
    own JOINT run)."""
    setups = [s for s in _with_other_datasets(["19-1", "15-5", "15-1", "10-10", "10-5-5", "10-2", "10-1"])
              if any(r["setup"] == s for r in rows)]
    n0 = {e["setup"]: e["structure"][0] for e in experiments}
    dataset_of = {e["setup"]: e.get("dataset", datasets.DEFAULT) for e in experiments}
    joint = next((e for e in experiments if e["test_type"] == "JOINT"), None)
    joints = {s: joint_of(experiments, dataset_of[s]) for s in setups}  # a setup's dataset's JOINT run
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
        cells = [_fmt(v) for s in setups for v in (["", "", ""] if joints[s] is None else group_mious(
            joints[s]["blocks"][-1], n0[s], dataset=dataset_of[s])[:3])]
        lines += ["\\midrule", "JOINT & " + " & ".join(cells) + " \\\\"]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def plot_lines(experiments):
    """What plot draws for each incremental experiment: {results file path: (label, style)}. The label is
    "config (replay source)" and, for a variant other than the original's, its variant_label after it (switches
    set the same way in every run left out: common_switches; plot writes them under the figure)
    ("DISJOINT (gan, mean-subtracted)"); the style gives a colour per run of a config (config, replay source,
    parameters: the same in every setup's plot and for both variants) and the variant: solid with round
    markers for the original's behaviours, dotted with square markers for another variant (JOINT is dashed)."""
    runs = sorted({(e["config"], e["replay_source"], e["parameters"]) for e in experiments})
    _, omit = _common_of_experiments(experiments)
    lines = {}
    for e in experiments:
        label = variant_label(e["behaviours"], omit)
        original = _unnamed(label)
        details = [e["replay_source"]] + ([] if original else [label])
        style = dict(color_index=runs.index((e["config"], e["replay_source"], e["parameters"])),
                     linestyle="-" if original else ":", marker="o" if original else "s")
        lines[e["path"]] = (f"{e['config']} ({', '.join(details)})", style)
    return lines


# Above this many object classes a dataset's per-class IoU is drawn as sorted bars and tabled by step (ADE20K's 150):
# a line per run over 150 class ids cannot be read.
MANY_CLASSES = 30


def per_class_kind(dataset):
    """How plot draws a dataset's (name or record) per-class IoU at the last step: "lines" (VOC: a line per run
    over the class ids, beside the mIoU of each step in `miou_<setup>.png`) up to MANY_CLASSES object classes,
    else "sorted bars" (`class_iou_<setup>.png`: per run a horizontal bar per class, sorted by IoU, coloured by
    the step that added the class)."""
    return "lines" if datasets.get(dataset).n_classes <= MANY_CLASSES else "sorted bars"


def plot(experiments, folder):
    """mIoU after each step per setup (one line per method and variant, plot_lines; JOINT dashed), and per-class
    IoU at the last step (per_class_kind). Drawn on matplotlib Figures of their own: pyplot's backend and state are
    left alone (notebooks). Returns the paths of the PNG files written: plots/miou_<setup>.png, and for a dataset
    of many classes (ADE20K) plots/class_iou_<setup>.png (_plot_many_classes)."""
    import matplotlib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top,import-outside-toplevel
    os.makedirs(folder, exist_ok=True)
    lines, colours, written = plot_lines(experiments), matplotlib.colormaps["tab20"], []
    common, _ = _common_of_experiments(experiments)
    for setup in sorted({e["setup"] for e in experiments if e["setup"] != "joint"}):
        runs = [e for e in experiments if e["setup"] == setup]
        joint = joint_of(experiments, runs[0].get("dataset", datasets.DEFAULT))
        if per_class_kind(runs[0].get("dataset", datasets.DEFAULT)) == "sorted bars":
            written += _plot_many_classes(setup, runs, joint, lines, folder)
            continue
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
        if common:  # the legends name the variants by their other switches (plot_lines)
            fig.text(0.005, 0.005, "every run: " + "; ".join(common), fontsize=6)
        out = os.path.join(folder, f"miou_{setup}.png")
        with artifacts.atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        written.append(out)
    return written


def _step_of(structure):
    """{class id: the step that adds it} of a setup's structure ([classes added per step])."""
    bounds = [sum(structure[:k + 1]) for k in range(len(structure))]
    return {c: next(k for k, b in enumerate(bounds) if c <= b) for c in range(1, bounds[-1] + 1)}


def _step_ranges(structure):
    """["1-100", "101-110", ...]: the classes each step of `structure` adds."""
    first = [1 + sum(structure[:k]) for k in range(len(structure))]
    return [f"{f}-{f + n - 1}" if n > 1 else str(f) for f, n in zip(first, structure)]


def _shown_classes(iou, dataset):
    """The classes of a last step's IoU list that a many-class plot or table shows: those with an IoU, background
    only where the validation labels it (metrics.background_in_validation)."""
    labelled = metrics.background_in_validation(dataset)
    return [c for c, v in enumerate(iou) if v is not None and (c or labelled)]


def _plot_many_classes(setup, runs, joint, lines, folder):
    """The plots of a setup of a dataset of many classes (per_class_kind "sorted bars"): `miou_<setup>.png`, the
    old / new / all mIoU after each step (group_mious: the setup's groups, over the object classes on ADE20K) per
    run (plot_lines' styles; JOINT's as a dashed level), and `class_iou_<setup>.png`, per run (a column each) the
    last step's IoU of every class as horizontal bars sorted by IoU (the best on top), coloured by the step that
    added the class, JOINT's IoU of the class as a black tick. Returns the two paths."""
    import matplotlib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top,import-outside-toplevel
    from matplotlib.patches import Patch  # pylint: disable=g-import-not-at-top,import-outside-toplevel
    dataset, structure = runs[0].get("dataset", datasets.DEFAULT), runs[0]["structure"]
    record, colours = datasets.get(dataset), matplotlib.colormaps["tab20"]
    step_colours = matplotlib.colormaps["tab10" if len(structure) <= 10 else "tab20"]  # a colour per step
    ranges = _step_ranges(structure)
    groups = (f"old ({ranges[0]})", f"new ({1 + structure[0]}-{sum(structure)})", f"all (1-{sum(structure)})")
    fig = Figure(figsize=(15, 4.5))
    axes = fig.subplots(1, 3)
    for e in runs:
        label, style = lines[e["path"]]
        per_step = [group_mious(b, structure[0], dataset=dataset) for b in e["blocks"]]
        for i, ax in enumerate(axes):
            ax.plot([b["step"] for b in e["blocks"]], [g[i] for g in per_step], label=label,
                    color=colours(style["color_index"] % colours.N), linestyle=style["linestyle"],
                    marker=style["marker"])
    if joint is not None:
        for ax, value in zip(axes, group_mious(joint["blocks"][-1], structure[0], dataset=dataset)):
            ax.axhline(value, color="k", linestyle="--", label="JOINT")
    for ax, group in zip(axes, groups):
        ax.set(title=f"{setup}: mIoU of {group} after each step", xlabel="step", ylabel="mIoU (%)")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    miou = os.path.join(folder, f"miou_{setup}.png")
    with artifacts.atomic_path(miou) as tmp:
        fig.savefig(tmp, dpi=90, format="png")

    step_of = _step_of(structure)
    n_shown = max(len(_shown_classes(e["blocks"][-1]["class_iou"], dataset)) for e in runs)
    fig = Figure(figsize=(4.5 * len(runs), max(4.0, 0.11 * n_shown + 1.5)))
    axes = fig.subplots(1, len(runs), squeeze=False)[0]
    joint_iou = None if joint is None else joint["blocks"][-1]["class_iou"]
    for ax, e in zip(axes, runs):
        iou = e["blocks"][-1]["class_iou"]
        classes = sorted(_shown_classes(iou, dataset), key=lambda c: (iou[c], c))  # the best on top
        y = range(len(classes))
        ax.barh(y, [100 * iou[c] for c in classes], height=0.8,
                color=[step_colours(step_of.get(c, 0) % step_colours.N) for c in classes])
        if joint_iou is not None:
            marks = [(100 * joint_iou[c], i) for i, c in enumerate(classes)
                     if c < len(joint_iou) and joint_iou[c] is not None]
            ax.scatter([x for x, _ in marks], [i for _, i in marks], marker="|", color="k", s=25, label="JOINT")
        ax.set_yticks(list(y), [f"{record.class_name(c)} ({c})" for c in classes], fontsize=4.5)
        ax.set_ylim(-0.6, len(classes) - 0.4)
        ax.set(title=lines[e["path"]][0], xlabel="IoU at the last step (%)", xlim=(0, 100))
        ax.title.set_fontsize(8)
    handles = [Patch(color=step_colours(k % step_colours.N), label=f"step {k} ({r})") for k, r in enumerate(ranges)]
    axes[0].legend(handles=handles + ([] if joint_iou is None else [axes[0].collections[0]]), fontsize=5,
                   loc="lower right")
    fig.suptitle(f"{setup} ({record.name}): per-class IoU at the last step, sorted", fontsize=9)
    fig.tight_layout()
    classes_png = os.path.join(folder, f"class_iou_{setup}.png")
    with artifacts.atomic_path(classes_png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    return [miou, classes_png]


def per_class_tables(experiments):
    """The per-class tables of the setups of datasets of many classes (per_class_kind "sorted bars"; none for
    VOC): {"per_class_<setup>.md": markdown}. A row per class shown (_shown_classes: background left out where
    the validation has none), grouped by the step that added it (in class order within the step), each step
    followed by the mean of its classes; a column per run (its plot_lines label, with its parameters when two
    runs share one) with the last step's IoU (%), then JOINT's (the JOINT run of the dataset, joint_of)."""
    lines, tables = plot_lines(experiments), {}
    for setup in sorted({e["setup"] for e in experiments if e["setup"] != "joint"}):
        runs = [e for e in experiments if e["setup"] == setup]
        dataset, structure = runs[0].get("dataset", datasets.DEFAULT), runs[0]["structure"]
        if per_class_kind(dataset) != "sorted bars":
            continue
        record, joint = datasets.get(dataset), joint_of(experiments, dataset)
        labels = [lines[e["path"]][0] for e in runs]
        labels = [f"{label} P{e['parameters']}" if labels.count(label) > 1 else label
                  for label, e in zip(labels, runs)]
        columns = [e["blocks"][-1]["class_iou"] for e in runs] + ([] if joint is None else
                                                                  [joint["blocks"][-1]["class_iou"]])
        at = lambda iou, c: iou[c] if c < len(iou) else None
        pct = lambda v: "" if v is None else f"{100 * v:.1f}"
        shown = set().union(*[_shown_classes(iou, dataset) for iou in columns])
        cells = []
        for k, first in enumerate([1 + sum(structure[:k]) for k in range(len(structure))]):
            classes = [c for c in range(first, first + structure[k]) if c in shown]
            cells += [[str(k), str(c), record.class_name(c)] + [pct(at(iou, c)) for iou in columns] for c in classes]
            means = []
            for iou in columns:
                values = [at(iou, c) for c in classes if at(iou, c) is not None]
                means.append(f"**{100 * sum(values) / len(values):.1f}**" if values else "")
            cells.append([str(k), "", f"**mean of step {k} ({_step_ranges(structure)[k]})**"] + means)
        note = (f"Per-class IoU (%) at the last step of each {setup} run of {record.name}, grouped by the step that "
                f"added the class; after each step, the mean of its classes."
                + ("" if metrics.background_in_validation(dataset) else
                   " Background is left out: the validation labels hold none (MiB's and PLOP's numbers are over "
                   "the object classes).") + "\n\n")
        tables[f"per_class_{setup}.md"] = note + _markdown(
            ["step", "class", "name"] + labels + ([] if joint is None else ["JOINT"]), cells)
    return tables
