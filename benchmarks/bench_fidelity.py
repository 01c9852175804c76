"""The original's behaviours on the embedded benchmark: each switch of the README's table "Behaviours of the
original" against the default (the original's behaviour), on the experiments it affects, in one run.

    python -m benchmarks.bench_fidelity [--base embedded] [--folder /tmp/bench_fidelity] [--jobs 2]
                                        [--working_recall]

(--jobs: settings run at once, one process each; default 2.) With --working_recall every setting, the default
included, also binds Training.replay_label_input = "mean_subtracted" (WORKING_RECALL: the paper's RECALL, whose
replay labels work; with the original's raw-pixel labelling RECALL collapses on the embedded benchmark and the
switches that act through replay show little): each other switch's effect on a working RECALL. Its settings run
in <folder>/working_recall/ and its table goes to <folder>/fidelity_working_recall.md.

Needs the built embedded benchmark (`python main.py` builds it under ./embedded). Every setting runs the
longest setup, 10-1, of DISJOINT with gan replay (and web replay after it, as the sweep orders them, where
the switch is about what the two share) and, where the switch changes it too, FINE_TUNING_DISJOINT, in a
folder of its own that links to <base>'s data and pretrained encoder (nothing of
<base> is written; labelled replay, mixed labels and checkpoints are the setting's own). Prints, and writes
to <folder>/fidelity.md, the final-step mIoU over all classes (background excluded, %) of every experiment
under every setting, and each switch's difference to the default.
"""
import runtime  # first: oneDNN kernels before TensorFlow loads; worker processes
import os
import shutil

import gin
from absl import app, flags, logging

import artifacts
from benchmarks import timing
from context import Context
import results

FLAGS = flags.FLAGS

SETUPS = ["ADD_ONE_TEN_TIMES"]
# sweep.plan's runs: (config, setup, source, variant bindings); a setting's bindings are passed as gin params.
RECALL = [("DISJOINT", t, "gan", ()) for t in SETUPS]
BOTH_SOURCES = RECALL + [("DISJOINT", t, "flickr", ()) for t in SETUPS]
FINE_TUNING = [("FINE_TUNING_DISJOINT", t, "gan", ()) for t in SETUPS]
# name -> (gin bindings, experiments it affects)
SETTINGS = {
    "default (original)": ([], BOTH_SOURCES + FINE_TUNING),
    "train_batch_norm = False": (["Training.train_batch_norm = False"], RECALL + FINE_TUNING),
    "momentum_rule = keras": (['Training.momentum_rule = "keras"'], RECALL + FINE_TUNING),
    "input_order = balanced": (['Training.input_order = "balanced"'], RECALL + FINE_TUNING),
    "reproduce_lr_floor = False": (["Training.reproduce_lr_floor = False"], RECALL),
    "replay_label_input = mean_subtracted": (['Training.replay_label_input = "mean_subtracted"'], RECALL),
    "reencode_jpeg = False": (["Training.reencode_jpeg = False"], RECALL + FINE_TUNING),
    # Labelled replay and the mixed labels (which FINE_TUNING_DISJOINT makes too).
    "folder_pairing = hash_order": (['Training.folder_pairing = "hash_order"'], RECALL + FINE_TUNING),
    "mixed_labels_per_experiment = True": (["TrainManager.mixed_labels_per_experiment = True"], BOTH_SOURCES),
    "mixed batches (4 new + 4 replay)": (["TrainManager.interleave_ratio_new = 4",
                                          "TrainManager.interleave_ratio_old = 4"], RECALL),
}
DEFAULT = "default (original)"  # every switch at its default: the column the others are compared with
# --working_recall: bound on top of every setting; the setting that binds it alone is then the default and left out.
WORKING_RECALL = ['Training.replay_label_input = "mean_subtracted"']


def define_flags():
    """Defines the command-line flags, only when run as a script: not in the worker processes, which import
    main.py (and its flags, --jobs among them)."""
    flags.DEFINE_string("base", "embedded", "the built embedded benchmark")
    flags.DEFINE_string("folder", "/tmp/bench_fidelity", "scratch folder, one sub-folder per setting")
    flags.DEFINE_list("settings", None, "names of SETTINGS to run (default: all)")
    flags.DEFINE_integer("jobs", 2, "settings run at once, one process each", lower_bound=1)
    flags.DEFINE_bool("working_recall", False, "bind WORKING_RECALL (replay labelled from mean-subtracted "
                      "pixels) in every setting: the switches' effect on a working RECALL")
    timing.define_load_flags()
    flags.register_validator("folder", bool, "--folder: a folder is required")
    flags.register_validator("settings", lambda names: all(n in SETTINGS for n in names or []),
                             f"--settings: names of SETTINGS, some of {list(SETTINGS)}")


def _slug(name):
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def link_base(base, folder):
    """A folder of links to <base>'s prepared data and pretrained encoder; the experiments' own outputs
    (labelled replay, mixed labels, checkpoints, results) are left out."""
    base = os.path.abspath(base)  # the links' targets
    shutil.copytree(os.path.join(base, "data"), os.path.join(folder, "data"), copy_function=os.symlink,
                    ignore=shutil.ignore_patterns("mixed", "replay_images_and_labels", *artifacts.IGNORE_TEMPORARIES),
                    dirs_exist_ok=True)
    encoders = os.path.join(folder, "checkpoints", "encoders")
    os.makedirs(encoders, exist_ok=True)
    source = os.path.join(base, "checkpoints", "encoders")
    for name in os.listdir(source):
        if name.startswith("pretrained") and not os.path.exists(os.path.join(encoders, name)):
            os.symlink(os.path.abspath(os.path.join(source, name)), os.path.join(encoders, name))


def settings_to_run(names, working_recall):
    """{setting name: its gin bindings}: the SETTINGS `names` (all when None), in SETTINGS order; with
    `working_recall`, WORKING_RECALL first in every one, and the settings that bind nothing else left out (the
    default already binds it)."""
    chosen = {}
    for name in names or list(SETTINGS):
        bindings = SETTINGS[name][0]
        if working_recall:
            if name != DEFAULT and not set(bindings) - set(WORKING_RECALL):
                continue
            bindings = WORKING_RECALL + [b for b in bindings if b not in WORKING_RECALL]
        chosen[name] = bindings
    return chosen


def run_setting(name, folder, bindings):
    """Runs the setting's experiments with its gin `bindings` in `folder` (in a worker process). Returns
    (failures, seconds)."""
    import sweep  # pylint: disable=import-outside-toplevel
    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)
    runs = SETTINGS[name][1]
    params = [f'TrainManager.base_folder_path = "{folder}"'] + list(bindings)
    extra = [os.path.join("config", "embedded", "embedded.gin")]
    with timing.Stopwatch() as watch:
        experiments = sweep.experiments(runs, "config", extra, params, os.path.join("config", "embedded"))
        failures = sweep.run(experiments, jobs=1, context=Context(progress_bars=False))
    return failures, watch.seconds


def table(folders):
    """Markdown: a row per experiment, a column per setting (mIoU all, %), and the switches' differences."""
    names = list(folders)
    values = {}
    for name, folder in folders.items():
        for row in results.summary_rows(results.read_experiments(os.path.join(folder, "outputs"))):
            values[(row["config"], row["setup"], row["replay_source"], name)] = row["miou_all"]
    keys = sorted({k[:3] for k in values}, key=lambda k: (k[0].startswith("FINE"), k[2], k[1]))
    default = names[0]
    lines = ["| experiment | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in keys:
        cells = []
        for name in names:
            v = values.get(key + (name,))
            base = values.get(key + (default,))
            if v is None:
                cells.append("")
            elif name == default or base is None:
                cells.append(f"{v:.1f}")
            else:
                cells.append(f"{v:.1f} ({v - base:+.1f})")
        label = f"{key[0]} {key[1]} {key[2] if key[2] != 'none' else ''}".strip()
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(argv):
    del argv
    chosen = settings_to_run(FLAGS.settings, FLAGS.working_recall)
    root = os.path.join(FLAGS.folder, "working_recall") if FLAGS.working_recall else FLAGS.folder
    if not os.path.exists(os.path.join(FLAGS.base, "data", "validation", "val_1.tfrecord")):
        raise app.UsageError(f"--base {FLAGS.base!r} holds no built embedded benchmark: run python main.py first")
    load = timing.check_load(FLAGS.max_load, FLAGS.force)
    folders = {name: os.path.abspath(os.path.join(root, _slug(name))) for name in chosen}
    for folder in folders.values():
        link_base(FLAGS.base, folder)
    gin.clear_config()
    whole = timing.Stopwatch().start()
    jobs = FLAGS.jobs
    with runtime.worker_pool(jobs) as pool:
        done = {name: pool.submit(run_setting, name, folders[name], bindings) for name, bindings in chosen.items()}
        for name, future in done.items():
            failures, seconds = future.result()
            logging.info("setting %r: %d experiments in %.1f s, %d failed", name, len(SETTINGS[name][1]),
                         seconds, len(failures))
            for failure in failures:
                logging.error("FAILED: %s", failure)
    on_top = f"Every setting also binds {'; '.join(WORKING_RECALL)}.\n\n" if FLAGS.working_recall else ""
    text = on_top + table(folders) + "\n\n" + load.report() + "\n"
    print(text)
    name = "fidelity_working_recall.md" if FLAGS.working_recall else "fidelity.md"
    with open(os.path.join(FLAGS.folder, name), "w", encoding="utf-8") as f:
        f.write(text)
    logging.info("time: %.1f s in all, %d processes", whole.seconds, jobs)


if __name__ == "__main__":
    define_flags()
    app.run(run)
