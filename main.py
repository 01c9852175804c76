"""Runs the RECALL benchmark sweep and writes its summary.

  python main.py                                   # every benchmark (see README)
  python main.py --configs DISJOINT --test_type ADD_FIVE_ONE_TIME --replay_source gan
  python main.py --gin_file my.gin --gin_param 'TrainManager.batch_size = 8'

With prepared Pascal VOC data under ./data (see prepare_data.py) it runs the paper's configs (config/*.gin).
Without it, it builds the embedded VOC-like benchmark under ./embedded once (world, data, replay) and runs
the same sweep there with config/embedded/embedded.gin on top of each config: a small network, small
images and few steps, so the whole method runs on a laptop CPU in minutes.
"""
import os
import sys
import time
import traceback

import gin
from absl import app, flags, logging

import results
import training  # registers Training's gin bindings
from train_manager import TrainManager

TEST_TYPES = [name for name, _ in TrainManager.TESTS if name != "JOINT"]
RECALL_CONFIGS = ["OVERLAPPED", "DISJOINT", "SEQUENTIAL"]
BASELINE_CONFIGS = ["FINE_TUNING", "FINE_TUNING_DISJOINT", "FINE_TUNING_OVERLAPPED"]
DEFAULT_CONFIGS = ["JOINT"] + RECALL_CONFIGS + BASELINE_CONFIGS

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "extra gin files, parsed after each experiment's config")
flags.DEFINE_multi_string("gin_param", [], "extra gin bindings, e.g. 'TrainManager.batch_size = 8'")
flags.DEFINE_list("configs", DEFAULT_CONFIGS, "configs (names of config/*.gin) to run")
flags.DEFINE_list("test_type", TEST_TYPES, "incremental setups (TrainManager.TESTS names)")
flags.DEFINE_list("replay_source", ["gan", "flickr"], "replay sources of the RECALL configs")
flags.DEFINE_enum("benchmark", "auto", ["auto", "voc", "embedded"],
                  "voc: prepared data under ./data; embedded: the generated benchmark under ./embedded; "
                  "auto: voc when ./data/validation/val_1.tfrecord exists, else embedded")
flags.DEFINE_string("config_dir", "config", "folder of the configs")


def plan(configs, test_types, sources, config_dir="config"):
    """The experiments of a sweep, in the original's order: JOINT, then each RECALL config x source x setup,
    then the fine-tuning configs (no replay: run once, under the first source's names).

    Returns a list of (config, test_type, replay_source)."""
    unknown = [c for c in configs if not os.path.exists(os.path.join(config_dir, c + ".gin"))]
    if unknown:
        raise ValueError(f"--configs: unknown config(s) {unknown}; expected names of {config_dir}/*.gin")
    names = [t for t, _ in TrainManager.TESTS]
    bad = [t for t in test_types if t not in names]
    if bad:
        raise ValueError(f"--test_type: unknown {bad}; expected some of {names}")
    bad = [s for s in sources if s not in ("gan", "flickr")]
    if bad or not sources:
        raise ValueError(f"--replay_source: {bad or 'none given'}; expected gan and/or flickr")
    runs = [("JOINT", "JOINT", None)] if "JOINT" in configs else []
    replay = [c for c in configs if c != "JOINT" and not c.startswith("FINE_TUNING")]
    runs += [(c, t, source) for source in sources for c in replay for t in test_types if t != "JOINT"]
    runs += [(c, t, sources[0]) for c in configs if c.startswith("FINE_TUNING") for t in test_types
             if t != "JOINT"]
    return runs


def sweep(runs, config_dir, extra_files=(), params=(), overrides_dir=None):
    """Runs every experiment of `runs`; one that fails is logged and the others go on.

    Args:
      extra_files, params: gin files and bindings parsed after each experiment's config.
      overrides_dir: a folder of per-config gin files (`<config>.gin`); an experiment's one, when it exists,
        is parsed right after the first of extra_files (the embedded benchmark: config/embedded/JOINT.gin).

    Returns the list of failures as (config, test_type, replay_source, error text)."""
    failures = []
    for k, (config, test_type, source) in enumerate(runs):
        logging.info("experiment %d/%d: %s %s %s", k + 1, len(runs), config, test_type, source)
        files = list(extra_files)
        override = os.path.join(overrides_dir, config + ".gin") if overrides_dir else None
        if override and os.path.exists(override):
            files.insert(1, override)
        try:
            run_experiment(os.path.join(config_dir, config + ".gin"), files, params, test_type, source)
        except Exception as e:  # pylint: disable=broad-except
            logging.error("experiment %s %s %s failed: %s\n%s", config, test_type, source, e,
                          traceback.format_exc())
            failures.append((config, test_type, source, repr(e)))
    return failures


def run_experiment(config_file, extra_files, params, test_type, replay_source):
    """Parses the gin files and bindings afresh and runs one experiment (Training(manager).train())."""
    gin.clear_config()
    gin.parse_config_files_and_bindings([config_file] + list(extra_files), list(params))
    manager = TrainManager(test_type=test_type, replay_source=replay_source)
    training.Training(manager).train()
    return manager


def voc_data_present(base="."):
    return os.path.exists(os.path.join(base, "data", "validation", "val_1.tfrecord"))


def main(argv):
    del argv
    benchmark = FLAGS.benchmark
    if benchmark == "auto":
        benchmark = "voc" if voc_data_present() else "embedded"
    extra_files, base, overrides_dir = list(FLAGS.gin_file), ".", None
    timings = {}
    if benchmark == "embedded":
        import embedded  # only the embedded benchmark needs the world generator and replay builders
        overrides_dir = os.path.join(FLAGS.config_dir, "embedded")
        extra_files = [os.path.join(overrides_dir, "embedded.gin")] + extra_files
        gin.clear_config()
        gin.parse_config_files_and_bindings(extra_files, FLAGS.gin_param)
        base = gin.query_parameter("TrainManager.base_folder_path")
        logging.info("no prepared data under ./data: running the embedded benchmark under %s", base)
        start = time.time()
        timings.update({f"embedded build: {k}": v for k, v in embedded.build(base).items()})
        timings["embedded build"] = time.time() - start
    runs = plan(FLAGS.configs, FLAGS.test_type, FLAGS.replay_source, FLAGS.config_dir)
    start = time.time()
    failures = sweep(runs, FLAGS.config_dir, extra_files, FLAGS.gin_param, overrides_dir)
    timings["experiments"] = time.time() - start
    if training.chief_process():  # other workers of a multi-worker run leave the summary to the chief
        rows = results.summarize(os.path.join(base, "outputs"))
        print(results.markdown_table(rows))
        print(results.recall_vs_finetuning(rows))
    timings.update({f"experiments: {k}": v for k, v in sorted(training.TIMES.items())})
    for phase, seconds in timings.items():
        logging.info("time: %s %.1f s", phase, seconds)
    if failures:
        for failure in failures:
            logging.error("FAILED: %s", failure)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
