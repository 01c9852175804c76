"""The results files and the summaries of finished experiments: the command line (`python results.py`), summarize
(every summary file of a folder), metric_table (--metric), and, under the names they always had here
(`results.load`, `results.append_results`, ...), the modules results is made of:

- results_file.py: each experiment's `outputs/<name>.txt`, the original's text blocks (one per validated step:
  loss, mIoU, per-class IoU and accuracy, old/new groups; format_results_block, parse_results_file), appended under
  the experiment's lock `<name>.lock` (experiment_lock: one process at a time runs the experiment or appends to its
  results file, which never holds a step twice, RepeatedStepError), each step's matrix stored first
  (append_results); the blocks computed from the matrices (matrix_blocks).
- results_matrices.py: `<name>.matrices.npz`, what the text is printed from: every validated step's confusion
  matrix, loss and old / new classes (write_matrices, read_matrices). The summaries compute every number from the
  matrices (metrics.py), or from the text for runs without them (the original's, earlier ones).
- results_folder.py: beside each results file, when the experiment finishes, `<name>.gin` (the operative gin
  config) and `<name>.json` (what the experiment was: config, setup, parameter indices, replay source;
  write_description); the summaries read the JSON files, never file names (read_experiments). `load(outputs)`
  gives the numbers as rows (a dict per experiment, or per step), for notebooks and pandas; a CSV per experiment in
  `per_step/` (PLOP's layout: step, per-class IoU, mIoU; step_csv).
- results_tables.py: `summary.csv`, `summary.md`, `summary.tex` (the paper's table form), `method_setup_table.md`
  (the README's table), `recall_vs_finetuning.md` (RECALL's final mIoU minus fine-tuning's of the same protocol),
  `recall_vs_baselines.md` (RECALL beside fine-tuning and the baselines, LwF, ILT, MiB, PLOP), PNG plots in
  `plots/`; every table keeps a method's variants (the switches of README "Behaviours of the original" a run set
  otherwise) apart. A dataset of many classes (ADE20K) gets sorted per-class bar charts and `per_class_<setup>.md`
  (per-class IoU grouped by step) instead of a line per class.
- results_paper.py: with a file of the paper's numbers (`--paper docs/paper_results.csv`, `summarize(outputs,
  paper=...)`), also `paper_comparison.md` and `.csv`, each run beside the paper's row (the file's format is in
  that module's docstring; ADE20K's published numbers: `--paper docs/paper_results_ade20k.csv`). The comparison is
  made only when asked: the embedded benchmark's numbers are not the paper's data set and are never compared
  silently.

Every number follows each run's dataset and setup (datasets.SETUPS): ADE20K's 100-50 gives old 1-100, new 101-150,
all 1-150, and, its validation having no background pixel, background is left out of every mean there (MiB's and
PLOP's ADE20K numbers are over the object classes; metrics.py).

Usage: python results.py --outputs outputs [--paper docs/paper_results.csv]
       python results.py --outputs outputs --metric miou_avg   (one number per run: metrics.EXPERIMENT_METRICS)
"""
import errno
import math
import os
import sys

from absl import app, flags, logging

import artifacts
import metrics
# The names of the modules results is made of, as `results.<name>` (main.py, sweep.py, training.py, the notebook,
# the benchmarks and the tests import them so).
from results_file import (RepeatedStepError, append_results, append_results_block, experiment_lock,  # noqa: F401
                          format_results_block, lock_path, matrix_blocks, parse_results_file)
from results_folder import (ORIGINAL_BEHAVIOURS, RUN_COLUMNS, dataset_tests, description_path,  # noqa: F401
                            experiment_dataset, experiment_metrics, gin_path, group_mious, joint_of, load,
                            method_name, read_experiments, read_operative_config, run_variant, setup_name, step_csv,
                            write_description, write_step_csvs)
from results_matrices import MATRICES_SUFFIX, matrices_path, read_matrices, write_matrices  # noqa: F401
from results_paper import (COMPARISON_COLUMNS, PAPER_COLUMNS, PAPER_PROTOCOLS, PAPER_REPLAY_SOURCES,  # noqa: F401
                           RUN_METHODS, changed_behaviours, comparison_markdown, paper_comparison, read_paper_results,
                           run_method, write_comparison)
from results_tables import (COLUMNS, FINE_TUNING_OF, MANY_CLASSES, README_PROTOCOLS, README_SETUPS,  # noqa: F401
                            _fmt, _markdown, finetuning_pairs, latex_table, markdown_table, method_setup_table,
                            pair_note, per_class_kind, per_class_tables, plot, plot_lines, recall_vs_baselines,
                            recall_vs_finetuning, step0_indices, summary_rows, variant_label, write_csv)
from train_manager import TrainManager  # noqa: F401  (results.TrainManager, as before)


def summarize(outputs, paper=None, refused=None):
    """Writes summary.csv, summary.md, summary.tex, method_setup_table.md, recall_vs_finetuning.md,
    recall_vs_baselines.md, plots/, per_step/ (write_step_csvs) and, for a dataset of many classes (ADE20K),
    per_class_<setup>.md (per_class_tables) for the results files of `outputs`, and with `paper` (a file of the
    paper's numbers, read_paper_results) paper_comparison.md and .csv. Only runs on real VOC (or ADE20K) should be
    given a paper file: nothing else decides it (see the module docstring). A folder that cannot be
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
        for name, text in per_class_tables(experiments).items():
            artifacts.write_text(os.path.join(outputs, name), text)
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
    flags.DEFINE_string("paper", None, "file of the paper's numbers (docs/paper_results.csv; ADE20K's: "
                        "docs/paper_results_ade20k.csv): also write paper_comparison.md/.csv. For runs on the real "
                        "data sets only, never the embedded benchmark")
    flags.DEFINE_string("metric", None, "print only this number of every finished run (results.load's rows: "
                        f"{', '.join(metrics.EXPERIMENT_METRICS)}, iou_<class id>, forgetting_<class id>), "
                        "computed from the folder alone; no file is written")
    app.run(main)


if __name__ == "__main__":
    cli()
