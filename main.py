"""Runs the RECALL benchmark sweep and writes its summary.

  python main.py                                   # every benchmark (see README)
  python main.py --configs DISJOINT --test_type ADD_FIVE_ONE_TIME --replay_source gan
  python main.py --gin_file my.gin --gin_param 'TrainManager.batch_size = 8'

With prepared Pascal VOC data under ./data (see prepare_data.py) it runs the paper's configs (config/*.gin) and
the field's baselines (LwF, ILT, MiB, PLOP: config/{LWF,ILT,ILT_FROZEN,MIB,PLOP}_{DISJOINT,OVERLAPPED}.gin; on
the multi-step setups unless --test_type is given). With prepared ADE20K data under ./ade20k/data
(`prepare_data.py --dataset ade20k`) it runs ADE20K's sweep after VOC's (config/ade20k/; alone with
--dataset ade20k).
Without it, it builds the embedded VOC-like benchmark under ./embedded once (world, data, replay) and runs
the same sweep there with config/embedded/embedded.gin on top of each config: a small network, small
images and few steps, so the whole method runs on a laptop CPU: 114 experiments (both RECALLs, fine-tuning,
JOINT and the field's baselines on 15-1), build included, in 15 to 26 minutes on a 2-core AVX-512 CPU (AMD EPYC
hosts: 14.8 min on 2026-12-08, 25.9 on 2026-12-07; README "Results"). It logs its own time and CPU kind at the end.
"""
import os
import sys
import time

import runtime  # first: oneDNN kernels before TensorFlow loads; worker processes
import gin
from absl import app, flags, logging

import methods
import paths
import sweep
from train_manager import CONFIG_DIR, TrainManager

# TensorFlow and the modules that import it (training, results, embedded_benchmark) are imported where they
# are used, after the flags' checks (checked_plan): a typo in a flag fails in a second, not after TensorFlow
# has loaded.

TEST_TYPES = [name for name, _ in TrainManager.TESTS if name != "JOINT"]
RECALL_CONFIGS = ["OVERLAPPED", "DISJOINT", "SEQUENTIAL"]
FINE_TUNING_CONFIGS = ["FINE_TUNING", "FINE_TUNING_DISJOINT", "FINE_TUNING_OVERLAPPED"]


def method_configs(config_dir=CONFIG_DIR):
    """The baselines' configs: `<NAME>_DISJOINT` and `<NAME>_OVERLAPPED` of every method of methods.baselines()
    (README "Baselines") whose configs are in `config_dir`."""
    return [c for name in methods.baselines() for c in (f"{name.upper()}_DISJOINT", f"{name.upper()}_OVERLAPPED")
            if os.path.exists(os.path.join(config_dir, c + ".gin"))]


# The baselines (TrainManager.method other than "recall"; README "Baselines") on the protocols their papers report.
# Unless --test_type is given, they run on METHOD_TEST_TYPES only: 15-1, the multi-step setup every baseline's
# paper reports in both protocols. Each baseline experiment costs about twice a fine-tuning one (the previous
# network runs beside the trained one, most train the encoder, and each step traces its own loss), so even this
# one setup takes the embedded sweep past its 20 minutes, and 10-1 would add twice as much again
# (benchmarks/BENCHMARKS.md "Baselines"); run the other setups with --configs and --test_type. ILT_FROZEN_*, ILT
# with the step-0 encoder frozen, is left out: its feature distillation is then 0 and its loss is LwF's, so it
# repeats LwF's results to the digit.
METHOD_CONFIGS = method_configs()
METHOD_TEST_TYPES = ["ADD_ONE_FIVE_TIMES"]
DEFAULT_CONFIGS = ["JOINT"] + RECALL_CONFIGS + FINE_TUNING_CONFIGS + METHOD_CONFIGS
# The two RECALLs (README "Results"): as the original's code runs it (every switch of behaviours.SWITCHES at its
# default) and as the paper describes the method, its replay labelled on the inputs the network was trained on. A
# variant is a tuple of gin bindings parsed after the experiment's other files; its artifacts and results files
# carry the switches in their names (behaviours.tag), so the two never share what a switch changes. The embedded
# sweep runs both; a real VOC sweep runs the original unless --recall_variants says otherwise.
RECALL_VARIANTS = sweep.RECALL_VARIANTS
DEFAULT_VARIANTS = {"embedded": ["original", "paper"], "voc": ["original"], "ade20k": ["original"]}
# ADE20K (README "ADE20K"): its configs, base folder and default setups. Its protocol is "overlapped" only, so its
# configs are JOINT, OVERLAPPED, FINE_TUNING_OVERLAPPED and the baselines' *_OVERLAPPED; the baselines run on
# 100-10 (the multi-step setup MiB and PLOP both report) unless --test_type is given.
ADE20K_CONFIG_DIR = os.path.join(CONFIG_DIR, "ade20k")
ADE20K_BASE = "ade20k"
ADE20K_METHOD_TEST_TYPES = ["100-10"]

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "extra gin files, parsed after each experiment's config")
flags.DEFINE_multi_string("gin_param", [], "extra gin bindings, e.g. 'TrainManager.batch_size = 8'")
flags.DEFINE_list("configs", DEFAULT_CONFIGS, "configs (names of config/*.gin) to run")
flags.DEFINE_list("test_type", TEST_TYPES, "incremental setups (TrainManager.TESTS names); when not given, the "
                  "baselines (METHOD_CONFIGS) run on the multi-step setups only (METHOD_TEST_TYPES)")
flags.DEFINE_list("replay_source", ["gan", "flickr"], "replay sources of the RECALL configs")
flags.DEFINE_list("recall_variants", None, f"RECALL's variants to run (RECALL_VARIANTS: {list(RECALL_VARIANTS)}): "
                  "the original's code and the paper's method (replay labelled on mean-subtracted inputs); "
                  "default: both on the embedded benchmark, original on real VOC")
flags.DEFINE_enum("benchmark", "auto", ["auto", "voc", "ade20k", "embedded"],
                  "voc: prepared data under ./data; ade20k: prepared ADE20K under ./ade20k/data (config/ade20k/); "
                  "embedded: the generated benchmark under ./embedded; auto: voc, then ade20k, each whose "
                  "data is prepared (<base>/data/validation/val_1.tfrecord exists), else embedded")
flags.DEFINE_alias("dataset", "benchmark")
flags.DEFINE_string("config_dir", os.path.join(os.path.dirname(os.path.abspath(__file__)), "config"),
                    "folder of the configs (default: the project's config/)")
flags.DEFINE_string("shard", None, "K/N: run only the K-th of N shares of the sweep (1 <= K <= N), for a job array "
                    "over a shared folder: whole groups of sweep.share_groups, balanced by their training steps; run "
                    "results.py at the end for the summary of all shares")
flags.DEFINE_integer("jobs", None, "processes that run the experiments, one group sharing a first step at a "
                     "time each (see sweep.run); above 1, the embedded build pretrains its encoder in a second "
                     "process; default: 2 for the embedded benchmark on a machine with 2 or more cores and no "
                     "GPU or TF_CONFIG, else 1", lower_bound=1)


def check_bound_values():
    """Checks the values bound, in the gin config parsed now, to what checks them only when an experiment runs:
    Training's switches (training.Training's constructor) and the backbone's size (model.build_encoder), so that a
    bad value stops the sweep before any work. The same checks and messages, without building anything.

    Raises ValueError naming the binding, its value and what is expected."""
    import model  # pylint: disable=import-outside-toplevel  (see the imports)
    import training  # pylint: disable=import-outside-toplevel
    training.check_values(**gin.get_bindings("Training", resolve_references=False))
    backbone = gin.get_bindings("backbone", resolve_references=False)
    model.check_backbone(backbone.get("units", (3, 4, 23, 3)), backbone.get("width", 1.0))


def default_jobs(benchmark):
    """2 for the embedded benchmark on a CPU, where the small network keeps only part of the cores busy; more
    would not pay (the biggest group of experiments sharing a first step holds half of the sweep's training).
    1 for real VOC, a GPU or a multi-worker run (TF_CONFIG)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the imports)
    if benchmark != "embedded" or "TF_CONFIG" in os.environ or tf.config.list_physical_devices("GPU"):
        return 1
    return min(2, os.cpu_count() or 1)


def voc_data_present(base="."):
    return paths.prepared(paths.data_dir(base))


def chosen_benchmarks(benchmark):
    """The benchmarks a run sweeps, in order: the one named, or for "auto" VOC and then ADE20K, those whose data is
    prepared, else the embedded benchmark."""
    if benchmark != "auto":
        return [benchmark]
    found = [b for b, base in (("voc", "."), ("ade20k", ADE20K_BASE)) if voc_data_present(base)]
    return found or ["embedded"]


def selection(benchmark):
    """(config folder, configs, setups, the baselines' setups or None) of one benchmark, from the flags. ADE20K
    reads config/ade20k/ and its own setups unless the flags name others; its default configs are those of the
    default list that config/ade20k/ holds (its protocol is overlapped only)."""
    method_setups = None if FLAGS["test_type"].present else METHOD_TEST_TYPES
    if benchmark != "ade20k":
        return FLAGS.config_dir, FLAGS.configs, FLAGS.test_type, method_setups
    import datasets  # pylint: disable=import-outside-toplevel  (light: no TensorFlow)
    config_dir = FLAGS.config_dir if FLAGS["config_dir"].present else ADE20K_CONFIG_DIR
    configs = FLAGS.configs if FLAGS["configs"].present else [
        c for c in ["JOINT"] + RECALL_CONFIGS + FINE_TUNING_CONFIGS + method_configs(config_dir)
        if os.path.exists(os.path.join(config_dir, c + ".gin"))]
    setups = FLAGS.test_type if FLAGS["test_type"].present else [
        name for name, _ in datasets.tests("ade20k") if name != "JOINT"]
    return config_dir, configs, setups, None if FLAGS["test_type"].present else ADE20K_METHOD_TEST_TYPES


def checked_plan(extra_files, params, overrides_dir=None, benchmark="embedded"):
    """The sweep's experiments from the flags (sweep.Experiment records, each read from its gin files once, here),
    every flag checked first: an unknown config, setup or source, a selection that runs nothing, a missing gin file,
    a gin file that is not gin syntax (named with its line), a gin binding that does not parse (each binding is
    tried alone, so the error names it), or a bound value that TrainManager, Training or the backbone rejects
    (check_bound_values) is an absl usage error (exit status 2), before any work."""
    if FLAGS.shard is not None and sweep.parse_shard(FLAGS.shard) is None:
        raise app.UsageError(f"--shard: expected K/N with 1 <= K <= N, e.g. 2/8; got {FLAGS.shard!r}", exitcode=2)
    config_dir, configs, setups, method_setups = selection(benchmark)
    try:
        runs = sweep.plan(configs, setups, FLAGS.replay_source, config_dir, method_test_types=method_setups,
                          variants=FLAGS.recall_variants or DEFAULT_VARIANTS[benchmark],
                          dataset="ade20k" if benchmark == "ade20k" else None)
    except ValueError as e:
        raise app.UsageError(f"{benchmark}: {e}" if benchmark == "ade20k" else str(e), exitcode=2) from None
    sweep.register_bindings()
    if not runs:
        raise app.UsageError(f"nothing to run: --configs {configs} with --test_type {setups} "
                             f"selects no experiment (JOINT runs only with --configs JOINT; the other configs "
                             f"need a setup other than JOINT)", exitcode=2)
    missing = [f for f in extra_files if not os.path.exists(f)]
    if missing:
        raise app.UsageError(f"--gin_file: not found: {missing}", exitcode=2)
    every_file = dict.fromkeys(f for config, _, _, _ in runs
                               for f in sweep.experiment_gin_files(config, config_dir, extra_files,
                                                                   overrides_dir))
    for path in every_file:
        error = sweep.gin_file_error(path)
        if error:
            raise app.UsageError(f"not a gin file: {error}", exitcode=2)
    files = [os.path.join(config_dir, runs[0][0] + ".gin")] + extra_files
    for bindings in [[]] + [[binding] for binding in params]:  # the files alone first: a binding is not blamed
        try:
            gin.clear_config()
            gin.parse_config_files_and_bindings(files, bindings)
        except Exception as e:  # pylint: disable=broad-except  (gin raises several kinds)
            bracket = sweep.unclosed_bracket(bindings[0]) if bindings else None
            message = f"{bracket.string!r} is never closed" if bracket else e
            where = f"--gin_param {bindings[0]!r}" if bindings else f"gin files {files}"
            raise app.UsageError(f"{where}: {message}", exitcode=2) from None
    # every experiment's bindings and bound values: its record
    records = sweep.experiments(runs, config_dir, extra_files, params, overrides_dir, check=check_bound_values)
    for e in records:
        if e.error is not None:
            raise app.UsageError(f"{e.config} {e.test_type} {e.replay_source} (gin files {list(e.files)}): {e.error}",
                                 exitcode=2)
    return records


def main(argv):
    del argv
    run_start = time.time()
    plans = []
    for benchmark in chosen_benchmarks(FLAGS.benchmark):  # every benchmark's flags and bindings before any work
        extra_files, overrides_dir = list(FLAGS.gin_file), None
        if benchmark == "embedded":
            overrides_dir = os.path.join(FLAGS.config_dir, "embedded")
            extra_files = [os.path.join(overrides_dir, "embedded.gin")] + extra_files
        records = checked_plan(extra_files, FLAGS.gin_param, overrides_dir, benchmark)
        if FLAGS.shard:
            share = sweep.parse_shard(FLAGS.shard)
            records = sweep.shard(records, share)
            logging.info("shard %d/%d: %d of the %s sweep's experiments: %s", *share, len(records), benchmark,
                         [e.run for e in records])
        plans.append((benchmark, records))
    failures, refused = [], []
    for benchmark, records in plans:
        run_benchmark(benchmark, records, failures, refused, run_start)
        run_start = time.time()  # the first benchmark's time includes the checks above
    for failure in failures:
        logging.error("FAILED: %s", failure)
    for path, step in refused:
        logging.error("REFUSED: %s holds step %d twice: left out of the summary (delete the file to validate its "
                      "steps again, or one of the two blocks)", path, step)
    if failures or refused:
        sys.exit(1)


def run_benchmark(benchmark, records, failures, refused, run_start):
    """Runs one benchmark's experiments (building the embedded benchmark first) and prints its summary; adds what
    failed to `failures` and the results files that hold a step twice to `refused`. run_start: when its time
    began (time.time())."""
    import embedded_benchmark  # pylint: disable=import-outside-toplevel  (see the imports)
    import results  # pylint: disable=import-outside-toplevel
    from context import Context  # pylint: disable=import-outside-toplevel
    jobs = FLAGS.jobs or default_jobs(benchmark)
    timings = {}
    gin.clear_config()  # the base folder, as the experiments bind it (a shard may hold none of them)
    base = "."
    if records:
        gin.parse_config_files_and_bindings(records[0].files, records[0].params)
        base = gin.query_parameter("TrainManager.base_folder_path")
    if benchmark == "embedded":
        logging.info("no prepared data under ./data: running the embedded benchmark under %s", base)
        start = time.time()
        built = embedded_benchmark.build(base, parallel=jobs > 1)
        timings.update({f"embedded build: {k}": v for k, v in built.items()})
        timings["embedded build"] = time.time() - start
    start = time.time()
    context = Context()
    failures += sweep.run(records, jobs, context)
    timings["experiments"] = time.time() - start
    if context.chief_process():  # other workers of a multi-worker run leave the summary to the chief
        rows = results.summarize(os.path.join(base, "outputs"), refused=refused)
        print(results.markdown_table(rows))
        print(results.method_setup_table(rows))
        print(results.recall_vs_finetuning(rows))
        print(results.recall_vs_baselines(rows))
    timings["whole run"] = time.time() - run_start
    summed = f" (summed over {jobs} processes)" if jobs > 1 else ""
    timings.update({f"experiments: {k}{summed}": v for k, v in sorted(context.times.items())})
    for phase, seconds in timings.items():
        logging.info("time: %s %.1f s", phase, seconds)
    logging.info("the %s sweep of %d experiments took %.1f min on a %s CPU, %d process(es)", benchmark, len(records),
                 timings["whole run"] / 60, runtime.cpu_kind(), jobs)


def cli():
    """The console script `recall`."""
    app.run(main)


if __name__ == "__main__":
    cli()
