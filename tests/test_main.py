"""main.py's sweep and results.py's summary."""
import csv
import os
import shutil

import pytest

from context import Context, Store
import main
import results
import sweep
from conftest import ROOT, TINY_BINDINGS

CONFIG_DIR = os.path.join(ROOT, "config")


def test_plan_follows_the_original_order():
    runs = sweep.plan(["JOINT", "DISJOINT", "FINE_TUNING"], ["ADD_ONE_ONE_TIME", "ADD_FIVE_ONE_TIME"],
                      ["gan", "flickr"], CONFIG_DIR)
    assert runs == [("JOINT", "JOINT", None, ()),
                    ("DISJOINT", "ADD_ONE_ONE_TIME", "gan", ()), ("DISJOINT", "ADD_FIVE_ONE_TIME", "gan", ()),
                    ("DISJOINT", "ADD_ONE_ONE_TIME", "flickr", ()), ("DISJOINT", "ADD_FIVE_ONE_TIME", "flickr", ()),
                    ("FINE_TUNING", "ADD_ONE_ONE_TIME", "gan", ()), ("FINE_TUNING", "ADD_FIVE_ONE_TIME", "gan", ())]
    default = sweep.plan(main.DEFAULT_CONFIGS, main.TEST_TYPES, ["gan", "flickr"], CONFIG_DIR)
    assert len(default) == 1 + 3 * 7 * 2 + 3 * 7 + 8 * 7  # the field's 4 baselines x 2 protocols: every setup
    # What `python main.py` runs: the field's baselines on 15-1 only (unless --test_type is given), after the
    # fine-tuning configs, in config order, under the first source's names.
    default = sweep.plan(main.DEFAULT_CONFIGS, main.TEST_TYPES, ["gan", "flickr"], CONFIG_DIR,
                         method_test_types=main.METHOD_TEST_TYPES)
    assert len(default) == 1 + 3 * 7 * 2 + 3 * 7 + 8
    assert default[-8:] == [(c, "ADD_ONE_FIVE_TIMES", "gan", ()) for c in main.METHOD_CONFIGS]
    assert sweep.plan(["ILT_FROZEN_DISJOINT", "DISJOINT"], ["ADD_ONE_TEN_TIMES"], ["gan"], CONFIG_DIR) == [
        ("DISJOINT", "ADD_ONE_TEN_TIMES", "gan", ()), ("ILT_FROZEN_DISJOINT", "ADD_ONE_TEN_TIMES", "gan", ())]


def test_plan_runs_recall_once_per_variant_and_the_rest_once():
    """Both RECALLs: the original's code and the paper's method (main.RECALL_VARIANTS), the first variant's
    experiments in the original's order, then the next's; fine-tuning, JOINT and the field's baselines once."""
    paper = main.RECALL_VARIANTS["paper"]
    runs = sweep.plan(["JOINT", "DISJOINT", "FINE_TUNING", "MIB_DISJOINT"], ["ADD_ONE_ONE_TIME"], ["gan", "flickr"],
                      CONFIG_DIR, variants=["original", "paper"])
    assert runs == [("JOINT", "JOINT", None, ()),
                    ("DISJOINT", "ADD_ONE_ONE_TIME", "gan", ()), ("DISJOINT", "ADD_ONE_ONE_TIME", "flickr", ()),
                    ("DISJOINT", "ADD_ONE_ONE_TIME", "gan", paper), ("DISJOINT", "ADD_ONE_ONE_TIME", "flickr", paper),
                    ("FINE_TUNING", "ADD_ONE_ONE_TIME", "gan", ()), ("MIB_DISJOINT", "ADD_ONE_ONE_TIME", "gan", ())]
    default = sweep.plan(main.DEFAULT_CONFIGS, main.TEST_TYPES, ["gan", "flickr"], CONFIG_DIR,
                         method_test_types=main.METHOD_TEST_TYPES, variants=main.DEFAULT_VARIANTS["embedded"])
    assert len(default) == 1 + 2 * 3 * 7 * 2 + 3 * 7 + 8
    with pytest.raises(ValueError, match="--recall_variants.*papr"):
        sweep.plan(["DISJOINT"], ["ADD_ONE_ONE_TIME"], ["gan"], CONFIG_DIR, variants=["papr"])
    # The two variants share step 0 and the helpers (the switch acts on replay labelling), nothing after them.
    shared = [e.shared for e in sweep.experiments(runs[1:5], CONFIG_DIR)]
    assert shared[0][0] == shared[2][0] and set(shared[0][1:]) != set(shared[2][1:])
    assert not set(n for n in shared[2] if "replay_images_and_labels" in n or "mixed" in n) & set(shared[0])


@pytest.mark.parametrize("args, match", [
    ((["DISJOINTED"], ["ADD_ONE_ONE_TIME"], ["gan"]), "DISJOINTED"),
    ((["DISJOINT"], ["ADD_SIX"], ["gan"]), "ADD_SIX"),
    ((["DISJOINT"], ["ADD_ONE_ONE_TIME"], ["web"]), "web"),
])
def test_plan_rejects_unknown_names(args, match):
    with pytest.raises(ValueError, match=match):
        sweep.plan(*args, CONFIG_DIR)


def test_share_groups_keep_each_shared_artifact_in_one_process():
    """DISJOINT, SEQUENTIAL and FINE_TUNING_DISJOINT share a first step (the same parameter indices: step 0,
    helpers, labelled replay) by setup; with the original's mixed-label names, the setups of one protocol
    share their mixed labels too (class 20's file of 19-1 is 10-1's), so they form one group. With per-
    experiment mixed labels, the groups are the first steps. Biggest group first, plan order inside."""
    runs = sweep.plan(["JOINT", "DISJOINT", "SEQUENTIAL", "OVERLAPPED", "FINE_TUNING_DISJOINT"],
                      ["ADD_ONE_ONE_TIME", "ADD_ONE_TEN_TIMES"], ["gan", "flickr"], CONFIG_DIR)
    setups = ["ADD_ONE_ONE_TIME", "ADD_ONE_TEN_TIMES"]
    shared = lambda ts: ([(c, t, s, ()) for s in ("gan", "flickr") for c in ("DISJOINT", "SEQUENTIAL") for t in ts]
                         + [("FINE_TUNING_DISJOINT", t, "gan", ()) for t in ts])
    overlapped = lambda ts: [("OVERLAPPED", t, s, ()) for s in ("gan", "flickr") for t in ts]
    groups = _runs(sweep.share_groups(sweep.experiments(runs, CONFIG_DIR)))
    assert sorted(r for g in groups for r in g) == sorted(runs)
    assert groups == [shared(setups), overlapped(setups), [("JOINT", "JOINT", None, ())]]
    groups = _runs(sweep.share_groups(sweep.experiments(
        runs, CONFIG_DIR, params=["TrainManager.mixed_labels_per_experiment = True"])))
    assert groups == [shared(setups[:1]), shared(setups[1:]), overlapped(setups[:1]), overlapped(setups[1:]),
                      [("JOINT", "JOINT", None, ())]]


def _runs(groups):
    """The groups of sweep.Experiment records as plan()'s runs."""
    return [[e.run for e in group] for group in groups]


def test_a_process_reports_the_times_of_each_experiment_once(monkeypatch, tmp_path):
    """A process of a parallel sweep runs several experiments with one Context, each with its own store (that
    waits for the artifacts the sweep's writers make); the parent adds up what each returns, and each leaves its
    finished file (that other experiments' waits look for)."""

    def fake_run(numbered, total, context, store=None):
        assert isinstance(context, Context) and not context.progress_bars
        assert store.number == numbered[0][0] and store.writers == {"x": 1} and store.context is context
        context.times["incremental training"] += 10.0 * numbered[0][0]
        return []

    monkeypatch.setattr(sweep, "_run_numbered", fake_run)
    monkeypatch.setattr(sweep, "_PROCESS_CONTEXT", [])  # as in a new worker process
    record = sweep.Experiment("DISJOINT", "ADD_ONE_ONE_TIME", "gan")
    reports = [sweep._sweep_process(k, record, 5, {"x": 1}, str(tmp_path)) for k in (2, 3)]
    assert [times for _, times in reports] == [{"incremental training": 20.0}, {"incremental training": 30.0}]
    assert sorted(os.listdir(tmp_path)) == ["2", "3"]


def test_artifact_writers_are_the_first_experiment_that_needs_each():
    """The artifacts two experiments share go to the first in plan order (the serial sweep's writer): 19-1's
    step 0, helper and mixed labels of class 20 are shared by both sources (the original's mixed-label names);
    labelled replay is each source's own; 10-1 shares no first step with 19-1 but its class-20 mixed labels."""
    runs = [("DISJOINT", "ADD_ONE_ONE_TIME", "gan", ()), ("DISJOINT", "ADD_ONE_ONE_TIME", "flickr", ()),
            ("DISJOINT", "ADD_ONE_TEN_TIMES", "gan", ()), ("JOINT", "JOINT", None, ())]
    writers = sweep.artifact_writers(sweep.experiments(runs, CONFIG_DIR))
    assert set(writers.values()) == {1}
    names = [os.path.basename(p) for p in writers]
    assert any(n.startswith("train_disjoint_20_") for n in names), names
    assert not any("replay" in p for p in writers)
    per_experiment = sweep.artifact_writers(sweep.experiments(
        runs, CONFIG_DIR, params=["TrainManager.mixed_labels_per_experiment = True"]))
    assert not any("mixed" in p for p in per_experiment) and set(per_experiment.values()) == {1}


def test_the_queue_starts_independent_work_first_and_keeps_writers_before_readers():
    """_queue_order on the default sweep: every experiment after the writers of what it needs (so the sweep
    cannot deadlock); the experiments that wait for no other (JOINT, the first of most first steps) at the front,
    in plan order."""
    runs = sweep.plan(main.DEFAULT_CONFIGS, main.TEST_TYPES, ["gan", "flickr"], CONFIG_DIR,
                      method_test_types=main.METHOD_TEST_TYPES)
    records = sweep.experiments(runs, CONFIG_DIR)
    numbered = list(enumerate(records, 1))
    shared = [e.shared for e in records]
    writers = sweep.artifact_writers(records)
    queue = sweep._queue_order(numbered, writers)
    assert sorted(queue) == numbered
    position = {number: i for i, (number, _) in enumerate(queue)}
    for (number, _), names in zip(numbered, shared):
        assert all(position[writers[n]] <= position[number] for n in names if n in writers)
    independent = [number for (number, _), names in zip(numbered, shared)
                   if all(writers.get(n, number) == number for n in names)]  # wait for no other experiment
    assert [number for number, _ in queue[:len(independent)]] == independent  # first, in plan order
    assert runs.index(("JOINT", "JOINT", None, ())) + 1 in independent
    first_steps = {shared[number - 1][0] for number in independent}  # step-0 checkpoints that start at once
    # JOINT's and the 15-x and 19-x ones of the three protocols; the 10-x experiments wait for 15-x's mixed labels.
    assert len(first_steps) == 7 and not any(s.endswith("_E10") for s in first_steps), first_steps


def test_ensure_waits_until_the_artifact_appears_or_its_writer_has_finished(tmp_path):
    """Store.ensure (an experiment alone) builds what is missing at once; SweepStore.ensure (experiment 3 of a
    parallel sweep) first waits for the experiment that writes the artifact: it reuses what appears, and builds what
    its writer ended without. The wait is counted apart from the work around it."""
    import threading
    context = Context(progress_bars=False)
    artifact, other = tmp_path / "a.tfrecord", tmp_path / "b.tfrecord"
    built = []
    assert Store().ensure(str(artifact), lambda: built.append("alone"))  # not in a parallel sweep: at once
    finished = tmp_path / "finished"
    finished.mkdir()
    store = sweep.SweepStore({str(artifact): 1, str(other): 2}, 3, str(finished), context)
    threading.Timer(0.5, artifact.write_bytes, [b"x"]).start()
    assert not store.ensure(str(artifact), lambda: built.append("a"))
    assert artifact.exists() and context.times["waiting for another process"] > 0.3
    threading.Timer(0.5, (finished / "2").write_bytes, [b""]).start()
    with context.timed("label mixing"):
        assert store.ensure(str(other), lambda: built.append("b"))  # its writer ended without it: built here
    assert built == ["alone", "b"] and context.times["label mixing"] < 0.3


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_broken_experiment_does_not_stop_the_sweep(copy_base, tmp_path, jobs):
    """Serial, and in two processes (the two experiments have different first steps)."""
    os.remove(copy_base / "data" / "replay_images" / "gan" / "07.tfrecord")  # breaks DISJOINT 19-1 gan
    runs = [("DISJOINT", "ADD_ONE_ONE_TIME", "gan", ()), ("FINE_TUNING", "ADD_ONE_ONE_TIME", "gan", ())]
    overrides = tmp_path / "overrides"  # a per-config file, as config/embedded/JOINT.gin
    overrides.mkdir()
    (overrides / "FINE_TUNING.gin").write_text("TrainManager.lr_initial_value_incremental = 1.25e-3\n")
    records = sweep.experiments(runs, CONFIG_DIR, overrides_dir=str(overrides),
                                params=TINY_BINDINGS + [f'TrainManager.base_folder_path = "{copy_base}"'])
    failures = sweep.run(records, jobs=jobs)
    operative = (copy_base / "outputs" / "FINE_TUNING (T0_P1.0.0.4_gan).gin").read_text()
    assert "TrainManager.lr_initial_value_incremental = 0.00125" in operative
    assert [f[:4] for f in failures] == [runs[0]]
    assert "replay_images/gan/07.tfrecord" in failures[0][4]
    rows = results.summarize(str(copy_base / "outputs"))
    assert [(r["config"], r["setup"], r["replay_source"]) for r in rows] == [("FINE_TUNING", "19-1", "none")]
    with open(copy_base / "outputs" / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == results.COLUMNS and len(table) == 1
    assert (copy_base / "outputs" / "summary.md").exists() and (copy_base / "outputs" / "summary.tex").exists()
    assert (copy_base / "outputs" / "plots" / "miou_19-1.png").stat().st_size > 1000


def test_shards_split_the_sweep_into_whole_groups():
    """--shard K/N: the N shares are disjoint, cover the sweep, never split a group of share_groups (no two
    machines write one artifact), keep plan order, and are balanced by training steps."""
    runs = sweep.plan(main.DEFAULT_CONFIGS, main.TEST_TYPES, ["gan", "flickr"], CONFIG_DIR)
    records = sweep.experiments(runs, CONFIG_DIR)
    shares = _runs(sweep.shard(records, (k, 3)) for k in (1, 2, 3))
    assert sorted(r for share in shares for r in share) == sorted(runs)
    assert all(share == [r for r in runs if r in share] for share in shares)  # plan order
    for group in _runs(sweep.share_groups(records)):
        assert sum(bool(set(group) & set(share)) for share in shares) == 1
    assert shares == _runs(sweep.shard(records, (k, 3)) for k in (1, 2, 3))  # deterministic
    assert sweep.shard(records, (1, 1)) == records
    # With the original's shared mixed-label names the groups are: DISJOINT, SEQUENTIAL, FINE_TUNING and
    # FINE_TUNING_DISJOINT (42) with the field's baselines on the disjoint protocol, which share their first steps
    # (28; the heaviest: a share alone), OVERLAPPED with both sources (14) with the baselines on the overlapped
    # protocol (28), FINE_TUNING_OVERLAPPED (7) and JOINT (1), which the third share takes together.
    assert sorted(len(share) for share in shares) == [8, 14 + 28, 42 + 28]


def test_shards_and_processes_write_what_one_serial_sweep_writes(tiny_data, tmp_path):
    """One serial sweep, two shares of it (--shard) and three processes (--jobs 3): the same results files, byte
    for byte. The two DISJOINT experiments share step 0, helpers and, with the original's names, their class-20
    mixed labels, so with a process each the flickr one waits for what the gan one writes."""
    runs = [("DISJOINT", "ADD_ONE_ONE_TIME", "gan", ()), ("DISJOINT", "ADD_ONE_ONE_TIME", "flickr", ()),
            ("OVERLAPPED", "ADD_ONE_ONE_TIME", "gan", ())]
    outputs = {}
    for name, shards, jobs in (("one", [(1, 1)], 1), ("shards", [(1, 2), (2, 2)], 1), ("processes", [(1, 1)], 3)):
        base = tmp_path / name
        shutil.copytree(tiny_data, base)
        shutil.copytree(base / "data" / "replay_images" / "gan", base / "data" / "replay_images" / "flickr")
        params = TINY_BINDINGS + [f'TrainManager.base_folder_path = "{base}"']
        context = Context(progress_bars=False)
        for shard in shards:
            share = sweep.shard(sweep.experiments(runs, CONFIG_DIR, params=params), shard)
            assert len(share) == {1: 3, 2: 2 if shard[0] == 1 else 1}[shard[1]]
            assert sweep.run(share, jobs=jobs, context=context) == []
        assert (context.times["waiting for another process"] > 0) == (jobs == 3), dict(context.times)
        outputs[name] = {f: (base / "outputs" / f).read_bytes() for f in sorted(os.listdir(base / "outputs"))
                         if f.endswith((".txt", ".json"))}
    assert len(outputs["one"]) == 6 and outputs["one"] == outputs["shards"] == outputs["processes"]


EMBEDDED_TINY = [
    "embedded.image_size = 48", "embedded.train_per_class = 6", "embedded.val_per_class = 2",
    "embedded.replay_per_class = 8", "embedded.generator_classes = 24", "embedded.bank_per_class = 4",
    "embedded.classifier_images_per_class = 64", "embedded.classifier_steps = 600",
    "embedded.object_count_probs = (1.0, 0.0, 0.0)", "embedded.pretrain_steps = 20",
    "embedded.pretrain_per_kind = 4", "TrainManager.train_image_size = 48",
] + [b for b in TINY_BINDINGS if not b.startswith(("Training.require_pretrained",
                                                   "TrainManager.train_image_size"))]


def test_default_path_from_an_empty_folder(tmp_path):
    """`python main.py` with no data: builds the embedded benchmark, runs the sweep, writes the summary
    (reduced: one setup, two configs, tiny sizes)."""
    import subprocess
    import sys
    command = [sys.executable, os.path.join(ROOT, "main.py"), "--config_dir", CONFIG_DIR,
               "--configs", "JOINT,DISJOINT,FINE_TUNING_DISJOINT", "--test_type", "ADD_ONE_ONE_TIME",
               "--replay_source", "gan,flickr"] + [f"--gin_param={b}" for b in EMBEDDED_TINY]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = tmp_path / "embedded" / "outputs"
    with open(outputs / "summary.csv") as f:
        rows = {(r["config"], r["setup"], r["replay_source"]) for r in csv.DictReader(f)}
    assert rows == {("JOINT", "joint", "none"), ("DISJOINT", "19-1", "gan"), ("DISJOINT", "19-1", "flickr"),
                    ("FINE_TUNING_DISJOINT", "19-1", "none")}
    assert (tmp_path / "embedded" / "checkpoints" / "encoders" / "pretrained.weights.h5").exists()
    assert "| DISJOINT | ADD_ONE_ONE_TIME | 19-1 | flickr |" in done.stdout
    assert not (tmp_path / "data").exists()  # the embedded benchmark never writes into ./data


@pytest.mark.parametrize("flags, message", [
    (["--configs", "DISJOINT", "--test_type", "JOINT"], "nothing to run"),
    (["--configs", "DISJOINT,TYPO"], "unknown config(s) ['TYPO']"),
    (["--shard", "3/2"], "--shard: expected K/N with 1 <= K <= N"),
    (["--gin_param", "TrainManager.batch_size = 8", "--gin_param", "TrainManager.batch_siz = 3"],
     "--gin_param 'TrainManager.batch_siz = 3'"),
    (["--configs", "FINE_TUNING", "--test_type", "ADD_ONE_ONE_TIME", "--gin_param",
      "TrainManager.training_steps_per_class = -3"], "training_steps_per_class = -3: expected an integer >= 1"),
])
def test_flag_errors_stop_before_any_work(tmp_path, flags, message):
    """A user error in the flags: a clean message and exit status 2, and nothing built or written."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "--config_dir", CONFIG_DIR] + flags,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert os.listdir(tmp_path) == []  # no embedded build started


def test_a_misspelt_name_fails_before_tensorflow_loads(tmp_path):
    """--configs, --test_type and --replay_source are checked before TensorFlow is imported (seconds)."""
    import subprocess
    import sys
    code = ("import atexit, sys; atexit.register(lambda: print('TF loaded:', 'tensorflow' in sys.modules)); "
            "sys.argv = ['main.py', '--test_type', 'ADD_ONE_ONE_TIM']; "
            "import main; main.cli()")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--test_type: unknown ['ADD_ONE_ONE_TIM']" in done.stderr, done.stderr[-2000:]
    assert "TF loaded: False" in done.stdout


def test_default_jobs(monkeypatch):
    """Two processes only for the embedded benchmark on a CPU with 2+ cores, without TF_CONFIG."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(main.os, "cpu_count", lambda: 8)
    assert main.default_jobs("embedded") == 2
    assert main.default_jobs("voc") == 1
    monkeypatch.setattr(main.os, "cpu_count", lambda: 1)
    assert main.default_jobs("embedded") == 1
    monkeypatch.setattr(main.os, "cpu_count", lambda: 8)
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    assert main.default_jobs("embedded") == 1


@pytest.mark.parametrize("gin_text, flags, message", [
    # An unclosed bracket, named at the line where it opens (gin and the tokenizer name where the file or the
    # next statement starts): in a --gin_file, with and without a --gin_param (that is not the culprit).
    ("TrainManager.batch_size = 8\nTrainManager.dataset_mean = [104.0, 116.7,\n", [],
     "bad.gin: line 2: '[' is never closed"),
    ("TrainManager.batch_size = 8\nTrainManager.dataset_mean = (104.0, 116.7\n\nTrainManager.momentum = 0.9\n",
     ["--gin_param", "TrainManager.batch_size = 4"], "bad.gin: line 2: '(' is never closed"),
    (None, ["--gin_param", "TrainManager.batch_size = = 3"], "--gin_param 'TrainManager.batch_size = = 3'"),
    (None, ["--gin_param", "TrainManager.batch_size = (3"], "--gin_param 'TrainManager.batch_size = (3': "
                                                            "'(' is never closed"),
    # Bindings that Training and the backbone check only when an experiment runs, checked before any work.
    (None, ["--gin_param", "backbone.units = [1, 1]"], "backbone.units must be 4 positive ints, got [1, 1]"),
    (None, ["--gin_param", "backbone.width = -1.0"], "backbone.width must be positive, got -1.0"),
    (None, ["--gin_param", 'Training.replay_label_input = "mean_subtracte"'],
     "Training.replay_label_input: 'mean_subtracte' is not one of ('raw', 'mean_subtracted')"),
    (None, ["--gin_param", "Training.train_batch_norm = 1"], "Training.train_batch_norm: expected True or False"),
    (None, ["--gin_param", 'Training.distribute = "tpu"'], "Training.distribute: 'tpu' is not one of"),
])
def test_gin_errors_stop_before_any_work(tmp_path, gin_text, flags, message):
    """A gin syntax error names its file and line; a bad value of a Training or backbone binding is named: a usage
    error (exit status 2), no traceback, nothing built or written."""
    import subprocess
    import sys
    run = tmp_path / "run"
    run.mkdir()
    if gin_text is not None:
        (tmp_path / "bad.gin").write_text(gin_text)
        flags = ["--gin_file", str(tmp_path / "bad.gin")] + flags
    done = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "--config_dir", CONFIG_DIR, "--configs",
                           "FINE_TUNING", "--test_type", "ADD_ONE_ONE_TIME"] + flags,
                          cwd=run, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert os.listdir(run) == []  # no embedded build started


def test_a_config_with_a_syntax_error_is_named_with_its_line(tmp_path):
    """An unclosed bracket in a config of --configs (read before TensorFlow loads, to plan the sweep)."""
    shutil.copy(os.path.join(CONFIG_DIR, "FINE_TUNING.gin"), tmp_path)
    with open(tmp_path / "FINE_TUNING.gin", "a") as f:
        f.write("TrainManager.dataset_mean = [104.0, 116.7,\n")
    with pytest.raises(ValueError, match=r"FINE_TUNING.gin: line \d+: '\[' is never closed"):
        sweep.plan(["FINE_TUNING"], ["ADD_ONE_ONE_TIME"], ["gan"], str(tmp_path))
