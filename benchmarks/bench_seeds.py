"""The seed study: the embedded sweep under several seeds, and how far each of its numbers moves between them.

    python -m benchmarks.bench_seeds [--seeds 0,1,2] [--base_dir seeds]
                                     [--test_type ADD_ONE_ONE_TIME,ADD_ONE_FIVE_TIMES,ADD_ONE_TEN_TIMES]
                                     [--configs ...] [--replay_source gan,flickr] [--recall_variants ...] [--jobs N]

For each seed s it runs `main.py --benchmark embedded` in a subprocess, in a base folder of its own,
<base_dir>/seed<s>, with the bindings

    embedded.seed = s                                     (the generated world, its replay and pretrained encoder)
    Training.seed = s                                     (every stage's initial weights and input pipelines)
    TrainManager.base_folder_path = "<base_dir>/seed<s>"  (absolute)

after any --gin_param of its own, on the setups of --test_type (default 19-1, 15-1 and 10-1) and main.py's
--configs (default: the default sweep's, main.DEFAULT_CONFIGS). --test_type is always passed on, so the field's
baselines run on those setups too; RECALL runs in the variants main.py runs on the embedded benchmark (both: the
original's code and the paper's method) unless --recall_variants says otherwise. --configs, --test_type,
--replay_source, --recall_variants, --jobs, --gin_param and --gin_file are main.py's flags, passed on. main.py's
output goes to <base_dir>/seed<s>/main.log. A seed whose main.py finished with the same command line
(<base_dir>/seed<s>/seed_study_run.json) is not run again; any other is (re)run, and main.py resumes it: finished
stages are skipped.

Then it reads each seed's results (results.read_experiments and summary_rows on <base_dir>/seed<s>/outputs) and
writes (seed_study):
  <base_dir>/seed_study.csv       per cell (config, setup, replay_source, variant, method, protocol, parameters):
                                  n (seeds), the seeds, and the mean, sample std (ddof=1), min and max of the
                                  final-step miou_all, miou_old and miou_new (%, background excluded).
  <base_dir>/seed_study_gaps.csv  per RECALL-vs-fine-tuning pair (results.finetuning_pairs, in each seed): n, the
                                  mean and sample std of RECALL's miou_all minus fine-tuning's, the pooled std of
                                  the two cells, and whether the gap is beyond the noise: |mean gap| > 2 x that
                                  pooled std (empty when a cell has fewer than two seeds).
  <base_dir>/seed_study.md        the README's table (results.method_setup_table) as "mean ± std", both tables
                                  above, each seed's run (ran, skipped or failed, seconds) and the load average
                                  before and after.
A seed study is long (each seed builds its own world and runs the sweep on three setups): run it on an otherwise
idle machine. The load check (--max_load, --force) is made only when a seed has to run.
"""
import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)
import csv
import io
import json
import math
import os
import subprocess
import sys

from absl import app, flags, logging

import artifacts
from benchmarks import timing
import main  # noqa: F401  (its flags, --configs, --test_type, ..., are this script's: passed on to main.py)
import results

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_TEST_TYPES = ["ADD_ONE_ONE_TIME", "ADD_ONE_FIVE_TIMES", "ADD_ONE_TEN_TIMES"]  # 19-1, 15-1, 10-1
MARKER = "seed_study_run.json"  # in a seed's folder: the command line of its finished main.py

# What tells the cells of the study apart (a summary row's keys), and the numbers summarised per cell.
CELL = ("config", "setup", "replay_source", "variant", "method", "protocol", "parameters")
METRICS = ("miou_all", "miou_old", "miou_new")
CELL_COLUMNS = list(CELL) + ["n", "seeds"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "min", "max")]
GAP_COLUMNS = ["setup", "protocol", "config", "replay_source", "variant", "parameters", "finetuning", "n",
               "gap_mean", "gap_std", "pooled_std", "beyond_noise"]
NOISE = ("beyond_noise: |mean gap| > 2 x the pooled standard deviation of the two cells' miou_all over the seeds, "
         "sqrt(((n1 - 1) s1^2 + (n2 - 1) s2^2) / (n1 + n2 - 2)) (s: sample std, ddof=1); empty when a cell has "
         "fewer than two seeds.")


def define_flags():
    """This script's flags (only when run as a script); main.py's, imported, are passed on (module docstring)."""
    flags.DEFINE_list("seeds", ["0", "1", "2"], "the seeds: embedded.seed and Training.seed of each run")
    flags.DEFINE_string("base_dir", "seeds", "folder of the seeds' base folders (<base_dir>/seed<s>) and the study")
    timing.define_load_flags()
    FLAGS.set_default("test_type", SEED_TEST_TYPES)
    flags.register_validator("seeds", lambda seeds: bool(seeds) and all(s.isdigit() for s in seeds),
                             "--seeds: non-negative integers, e.g. 0,1,2")
    flags.register_validator("base_dir", bool, "--base_dir: a folder is required")


# ------------------------------------------------------------------------------------------------ the runs


def seed_folder(base_dir, seed):
    """The base folder of one seed's sweep: <base_dir>/seed<seed>, absolute."""
    return os.path.abspath(os.path.join(base_dir, f"seed{seed}"))


def main_command(seed, folder, configs, test_types, sources, variants=None, jobs=None, gin_files=(), gin_params=()):
    """The main.py command line of one seed (a list, the interpreter first; main.py runs in the project folder, so
    `gin_files` are made absolute). The seed's bindings come after `gin_params`, so that they hold."""
    command = [sys.executable, os.path.join(ROOT, "main.py"), "--benchmark", "embedded", "--configs",
               ",".join(configs), "--test_type", ",".join(test_types), "--replay_source", ",".join(sources)]
    if variants:
        command += ["--recall_variants", ",".join(variants)]
    if jobs:
        command += ["--jobs", str(jobs)]
    for gin_file in gin_files:
        command += ["--gin_file", os.path.abspath(gin_file)]  # main.py runs in the project folder
    bindings = list(gin_params) + [f"embedded.seed = {seed}", f"Training.seed = {seed}",
                                   f'TrainManager.base_folder_path = "{folder}"']
    for binding in bindings:
        command += ["--gin_param", binding]
    return command


def finished(folder, command):
    """The seconds of the seed's main.py when it finished before with this command line (the interpreter aside),
    from its MARKER; None when it did not (no marker, an unreadable one, or another command line)."""
    try:
        with open(os.path.join(folder, MARKER), encoding="utf-8") as f:
            doc = json.load(f)
        return float(doc.get("seconds", 0.0)) if doc["command"] == command[1:] else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def run_seed(seed, folder, command):
    """Runs one seed's main.py, its output in <folder>/main.log; on success, writes the MARKER. Returns (exit
    status, seconds)."""
    os.makedirs(folder, exist_ok=True)
    log = os.path.join(folder, "main.log")
    logging.info("seed %s: %s (output in %s)", seed, " ".join(command), log)
    with open(log, "a", encoding="utf-8") as out, timing.Stopwatch() as watch:
        status = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if status == 0:
        artifacts.write_json(os.path.join(folder, MARKER), {"command": command[1:], "seconds": watch.seconds})
    else:
        logging.error("seed %s: main.py exited with status %d (see %s)", seed, status, log)
    return status, watch.seconds


# ---------------------------------------------------------------------------------------------- the study


def _stats(values):
    """(mean, sample std (ddof=1; NaN for fewer than two), min, max) of the finite `values` (NaN when none)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan, math.nan, math.nan
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else math.nan
    return mean, std, min(values), max(values)


def pooled_std(n1, s1, n2, s2):
    """The pooled standard deviation of two samples of sizes n1, n2 and sample stds s1, s2; NaN when either has
    fewer than two values."""
    if n1 < 2 or n2 < 2:
        return math.nan
    return math.sqrt(((n1 - 1) * s1 ** 2 + (n2 - 1) * s2 ** 2) / (n1 + n2 - 2))


def seed_study(rows_by_seed):
    """The seed study of summary rows (pure: no file is read).

    Args:
      rows_by_seed: {seed: results.summary_rows(...) of that seed's outputs}; the rows' keys CELL, variant_label
        and METRICS are read.

    Returns:
      (cells, gaps): lists of dicts. A cell per distinct CELL key, in first-seen order: the CELL keys,
      variant_label, n (the seeds it ran in), seeds (their names, joined by " ") and for each metric m of METRICS
      m_mean, m_std (sample, ddof=1), m_min and m_max. A gap per RECALL-vs-fine-tuning pair (finetuning_pairs of
      each seed's rows): the RECALL cell's setup, protocol, config, replay_source, variant, parameters,
      finetuning (results.pair_note), n, gap_mean and gap_std of RECALL's miou_all minus fine-tuning's over the
      seeds, pooled_std of the two cells' miou_all, and beyond_noise ("yes" when |gap_mean| > 2 x pooled_std, else
      "no"; "" when pooled_std is undefined).

    Raises:
      ValueError naming the seed and the cell when a seed's rows hold one cell twice.
    """
    values, labels, seeds_of, pairs = {}, {}, {}, {}
    for seed, rows in rows_by_seed.items():
        for r in rows:
            key = tuple(r[k] for k in CELL)
            if seed in seeds_of.setdefault(key, []):
                raise ValueError(f"seed {seed}: two rows of the cell {dict(zip(CELL, key))}")
            seeds_of[key].append(seed)
            labels[key] = r["variant_label"]
            for m in METRICS:
                values.setdefault((key, m), []).append(r[m])
        for pair in results.finetuning_pairs(rows):
            recall, finetuning = pair["recall"], pair["finetuning"]
            entry = pairs.setdefault((tuple(recall[k] for k in CELL), tuple(finetuning[k] for k in CELL)),
                                     {"note": results.pair_note(pair), "gaps": []})
            entry["gaps"].append(recall["miou_all"] - finetuning["miou_all"])
    cells, by_key = [], {}
    for key, seeds in seeds_of.items():
        cell = dict(zip(CELL, key), variant_label=labels[key], n=len(seeds), seeds=" ".join(map(str, seeds)))
        for m in METRICS:
            cell.update(zip((f"{m}_mean", f"{m}_std", f"{m}_min", f"{m}_max"), _stats(values[(key, m)])))
        cells.append(cell)
        by_key[key] = cell
    gaps = []
    for (recall, finetuning), entry in pairs.items():
        mean, std, _, _ = _stats(entry["gaps"])
        a, b = by_key[recall], by_key[finetuning]
        pooled = pooled_std(a["n"], a["miou_all_std"], b["n"], b["miou_all_std"])
        beyond = "" if math.isnan(pooled) or math.isnan(mean) else ("yes" if abs(mean) > 2 * pooled else "no")
        gaps.append(dict({k: a[k] for k in GAP_COLUMNS[:6]}, finetuning=entry["note"], n=len(entry["gaps"]),
                         gap_mean=mean, gap_std=std, pooled_std=pooled, beyond_noise=beyond))
    return cells, gaps


def _number(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _csv(rows, columns):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _number(r[k]) for k in columns})
    return buffer.getvalue()


def _mean_std(mean, std):
    if math.isnan(mean):
        return ""
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]) + "\n"


def study_markdown(cells, gaps, seeds, runs=None, load=None):
    """The seed study as markdown: the README's table of miou_all (results.method_setup_table, "mean ± std"),
    every cell, every RECALL-vs-fine-tuning gap with the noise rule (NOISE), the runs (`runs`: {seed: (what
    happened, seconds)}, e.g. "ran", "failed (exit status 1)") and the load report (`load`, a line)."""
    as_rows = [dict(c, miou_all=c["miou_all_mean"]) for c in cells]  # method_setup_table reads miou_all(_std)
    text = [f"# Seed study: seeds {', '.join(map(str, seeds))}", "",
            "Final-step mIoU (%, background excluded) over the seeds: mean ± sample standard deviation (ddof=1); "
            "a cell of one seed shows its number alone.", "",
            "## The README's table (all classes)", "", results.method_setup_table(as_rows),
            "## Every cell", ""]
    header = ["method", "protocol", "replay_source", "variant", "config", "setup", "n", "all", "all min - max",
              "old", "new"]
    text.append(_table(header, [
        [c["method"], _number(c["protocol"]), c["replay_source"], c["variant"], c["config"], c["setup"],
         c["n"], _mean_std(c["miou_all_mean"], c["miou_all_std"]),
         "" if math.isnan(c["miou_all_min"]) else f"{c['miou_all_min']:.1f} - {c['miou_all_max']:.1f}",
         _mean_std(c["miou_old_mean"], c["miou_old_std"]), _mean_std(c["miou_new_mean"], c["miou_new_std"])]
        for c in cells]))
    text += ["## RECALL minus fine-tuning", "",
             "gap: RECALL's miou_all minus that of the fine-tuning run it is paired with (results.finetuning_pairs) "
             "in each seed; mean ± sample std over the seeds. " + NOISE, ""]
    header = ["setup", "protocol", "config", "replay_source", "variant", "fine-tuning run", "n", "gap",
              "pooled std", "beyond noise"]
    text.append(_table(header, [
        [g["setup"], _number(g["protocol"]), g["config"], g["replay_source"], g["variant"], g["finetuning"],
         g["n"], _mean_std(g["gap_mean"], g["gap_std"]), _number(g["pooled_std"]), g["beyond_noise"]]
        for g in gaps]))
    if runs:
        text += ["## Runs", ""] + [f"- seed {s}: {status}, {seconds:.0f} s" for s, (status, seconds) in runs.items()]
        text.append("")
    if load:
        text += [load, ""]
    return "\n".join(text)


def write_study(cells, gaps, base_dir, seeds, runs=None, load=None):
    """Writes seed_study.csv (CELL_COLUMNS), seed_study_gaps.csv (GAP_COLUMNS) and seed_study.md (study_markdown)
    into `base_dir`. Numbers in the CSV files to 0.01. Returns the markdown."""
    markdown = study_markdown(cells, gaps, seeds, runs, load)
    artifacts.write_text(os.path.join(base_dir, "seed_study.csv"), _csv(cells, CELL_COLUMNS))
    artifacts.write_text(os.path.join(base_dir, "seed_study_gaps.csv"), _csv(gaps, GAP_COLUMNS))
    artifacts.write_text(os.path.join(base_dir, "seed_study.md"), markdown)
    return markdown


def read_seeds(base_dir, seeds):
    """{seed: results.summary_rows of <base_dir>/seed<seed>/outputs} (no rows for a seed without results)."""
    return {s: results.summary_rows(results.read_experiments(os.path.join(seed_folder(base_dir, s), "outputs")))
            for s in seeds}


def run(argv):
    del argv
    seeds = [int(s) for s in FLAGS.seeds]
    commands = {s: main_command(s, seed_folder(FLAGS.base_dir, s), FLAGS.configs, FLAGS.test_type,
                                FLAGS.replay_source, FLAGS.recall_variants, FLAGS.jobs, FLAGS.gin_file,
                                FLAGS.gin_param) for s in seeds}
    done = {s: finished(seed_folder(FLAGS.base_dir, s), commands[s]) for s in seeds}
    # The load matters for the runs' times only: with nothing to run it is reported, never refused or flagged.
    load = (timing.check_load(FLAGS.max_load, FLAGS.force) if None in done.values()
            else timing.MachineLoad(math.inf, os.getloadavg()))
    runs, failed = {}, []
    for s in seeds:
        if done[s] is not None:
            logging.info("seed %d: finished before with the same command (%s), not run again", s,
                         os.path.join(seed_folder(FLAGS.base_dir, s), MARKER))
            runs[s] = ("finished before, not run again", done[s])
            continue
        status, seconds = run_seed(s, seed_folder(FLAGS.base_dir, s), commands[s])
        runs[s] = ("ran" if status == 0 else f"failed (exit status {status})", seconds)
        if status:
            failed.append(s)
    cells, gaps = seed_study(read_seeds(FLAGS.base_dir, seeds))
    print(write_study(cells, gaps, FLAGS.base_dir, seeds, runs, load.report()))
    if failed:
        logging.error("seeds %s: main.py failed (their finished experiments are in the study)", failed)
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(run)
