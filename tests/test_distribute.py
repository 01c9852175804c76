"""Training under tf.distribute: a tiny experiment on one device, on MirroredStrategy over two logical CPU
devices, and on MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1.

Each run is two experiments in one process (one strategy for both): DISJOINT 15-5 (step 0, replay
labelling, label mixing, step 1, validation), then FINE_TUNING 15-5 (step 0 reused, step 1), with the
global batch of the one-device run (Training.global_batch = True), so every run sees the same batches.
Tolerance: training and validation losses within 1e-5 relative (observed < 1e-6: the replicas only change
the order of floating-point sums); mIoU within 0.01. Each run is a subprocess (logical devices and
collective ops must be configured before TensorFlow starts) with a timeout.
"""
import gc
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2

import context as context_module
from context import Context
import distribute
import results
import training
from conftest import TESTS
from test_training import manager

TIMEOUT = 240  # seconds per run; a run takes about 10-30 s on 2 CPU cores
RTOL = 1e-5

_PRELUDE = """
import sys
import keras
from test_training import manager
import training
def run(base, distribute):
    for config in ("DISJOINT", "FINE_TUNING"):
        keras.utils.set_random_seed(0)  # the same initial weights in every run
        m = manager(base, config=config, test_type="ADD_FIVE_ONE_TIME",
                    extra=[f"Training.distribute = {distribute!r}", "Training.global_batch = True",
                           "Training.log_every = 1"])
        training.Training(m).train()
"""

_ONE_DEVICE_AND_MIRRORED = _PRELUDE + """
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
run(sys.argv[1], "default")
run(sys.argv[2], "mirrored")
"""

_WORKER = _PRELUDE + """
run(sys.argv[1], "multi_worker")
"""


def _wait(procs, logs):
    """Waits for every process; kills all of them when one fails or the time is up."""
    deadline = time.time() + TIMEOUT
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.poll() not in (None, 0)]
            assert not failed and time.time() < deadline, "a run failed or timed out"
            time.sleep(0.2)
        assert all(p.returncode == 0 for p in procs), "a run failed"
    except AssertionError as e:
        raise AssertionError(f"{e}:\n" + "\n".join(f"--- {log}:\n{open(log, errors='replace').read()[-3000:]}"
                                                   for log in logs)) from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _start(code, args, log, env=None):
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-c", code] + [str(a) for a in args], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=TESTS)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _training_losses(base):
    """{("experiment/stage", step): loss} from the TensorBoard logs of a run."""
    losses = {}
    logs = os.path.join(base, "outputs", "tensorboard")
    for path in glob.glob(os.path.join(logs, "*", "*", "events*")):
        stage = os.path.relpath(os.path.dirname(path), logs)
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == "loss":
                    losses[(stage, event.step)] = float(tf.make_ndarray(value.tensor))
    return losses


def _results(base):
    """{results file name: its blocks}."""
    return {os.path.basename(path): results.parse_results_file(path)
            for path in glob.glob(os.path.join(base, "outputs", "*.txt"))}


def _files(base):
    """Every file under base, relative, TensorBoard logs by folder (their names hold a time and a pid)."""
    files = set()
    for root, _, names in os.walk(base):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), base)
            files.add(os.path.dirname(rel) + "/events*" if name.startswith("events.out.") else rel)
    return files


def _assert_same_run(base, reference):
    expected = _training_losses(reference)
    assert sorted({stage.split("/")[1] for stage, _ in expected}) == ["step0", "step1"]
    assert len(expected) == 30 + 10 + 10  # DISJOINT step 0 and step 1, FINE_TUNING step 1
    losses = _training_losses(base)
    assert losses.keys() == expected.keys()
    np.testing.assert_allclose([losses[k] for k in sorted(losses)], [expected[k] for k in sorted(losses)],
                               rtol=RTOL)
    results, expected_results = _results(base), _results(reference)
    assert results.keys() == expected_results.keys() and len(results) == 2
    for name, blocks in results.items():
        assert [b["step"] for b in blocks] == [b["step"] for b in expected_results[name]] == [0, 1]
        for block, expected_block in zip(blocks, expected_results[name]):
            np.testing.assert_allclose(block["loss"], expected_block["loss"], rtol=RTOL)
            np.testing.assert_allclose(block["miou"], expected_block["miou"], atol=0.01)


@pytest.fixture(scope="module")
def one_device_and_mirrored(tiny_data, tmp_path_factory):
    """Base folders of the experiment run on one device and on MirroredStrategy (two logical CPUs)."""
    root = tmp_path_factory.mktemp("distribute")
    bases = [root / "one_device", root / "mirrored"]
    for base in bases:
        shutil.copytree(tiny_data, base)
    log = root / "run.log"
    _wait([_start(_ONE_DEVICE_AND_MIRRORED, bases, log)], [log])
    return bases


def test_mirrored_strategy_matches_one_device(one_device_and_mirrored):
    one_device, mirrored = one_device_and_mirrored
    _assert_same_run(mirrored, one_device)
    assert _files(mirrored) == _files(one_device)


def test_two_workers_write_one_set_of_artifacts(one_device_and_mirrored, tiny_data, tmp_path):
    one_device = one_device_and_mirrored[0]
    base, scratch = tmp_path / "base", tmp_path / "worker_tmp"
    shutil.copytree(tiny_data, base)
    scratch.mkdir()
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    procs, logs = [], []
    for index in range(2):  # no "chief" task: worker 0 is the chief
        env = dict(os.environ, TMPDIR=str(scratch), TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        logs.append(tmp_path / f"worker{index}.log")
        procs.append(_start(_WORKER, [base], logs[-1], env))
    _wait(procs, logs)

    # One set of artifacts, the same files as the one-device run; one TensorBoard log per training stage.
    assert _files(base) == _files(one_device)
    for stage in ("DISJOINT*/step0", "DISJOINT*/step1", "FINE_TUNING*/step1"):
        assert len(glob.glob(os.path.join(base, "outputs", "tensorboard", stage, "events*"))) == 1
    assert not glob.glob(os.path.join(base, "**", "*.tmp-*"), recursive=True)
    assert os.listdir(scratch) == []  # worker 1 worked in a scratch folder, deleted at its end
    # Synchronous data-parallel training on the same global batches: the one-device run's losses.
    _assert_same_run(base, one_device)


class _Strategy:
    def __init__(self, cluster, task_type, task_id):
        self.cluster_resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)


def test_only_the_chief_process_writes_the_summary(monkeypatch):
    assert Context().chief_process()
    for task, chief in ((1, False), (0, True)):
        context = Context()
        monkeypatch.setattr(context_module, "make_strategy",
                            lambda name, timeout=None, t=task: _Strategy({"worker": ["a:1", "b:2"]}, "worker", t))
        context.strategy("multi_worker")
        assert context.chief_process() == chief


def test_a_worker_appends_to_its_own_copy_of_the_chiefs_results(copy_base, tmp_path, monkeypatch):
    """A non-chief worker's results file is a link to the chief's (distribute.worker_view), and the chief may append
    a step between the worker's check and its append (seen under load: "already holds step 1"). The worker then
    appends to a copy of its own (distribute.detach), and the chief's file is left as the chief wrote it."""
    run = training.Training(manager(copy_base))
    stage, chief_file = run.plan.incremental_steps[0], run.results_file
    os.makedirs(os.path.dirname(chief_file), exist_ok=True)
    cm = np.eye(run.n_classes, dtype=np.int64)
    results.append_results(chief_file, 0, 1.0, cm, None, list(run.plan.first_step.classes))
    link = tmp_path / "worker" / os.path.basename(chief_file)
    link.parent.mkdir()
    os.symlink(chief_file, link)
    run.chief, run.results_file = False, str(link)

    def chief_appends_meanwhile(seg, paths, classes, *args):
        results.append_results(chief_file, stage.step, 2.0, cm, list(stage.old_classes), list(stage.new_classes))
        return 3.0, cm

    monkeypatch.setattr(training, "evaluate", chief_appends_meanwhile)
    run._run_validation(None, stage)
    assert not os.path.islink(link)
    steps = lambda path: [(b["step"], round(b["loss"], 3)) for b in results.parse_results_file(path)]
    assert steps(chief_file) == [(0, 1.0), (stage.step, 2.0)]
    assert steps(link) == [(0, 1.0), (stage.step, 3.0)]


def test_is_chief():
    workers = {"worker": ["a:1", "b:1"]}
    assert distribute.is_chief(_Strategy(workers, "worker", 0))
    assert not distribute.is_chief(_Strategy(workers, "worker", 1))
    with_chief = dict(workers, chief=["c:1"])
    assert distribute.is_chief(_Strategy(with_chief, "chief", 0))
    assert not distribute.is_chief(_Strategy(with_chief, "worker", 0))
    assert distribute.is_chief(_Strategy({}, None, None))
    assert distribute.is_chief(tf.distribute.get_strategy())


class _Manager:
    def __init__(self, base):
        self.base_folder_path = str(base)


def test_worker_view_reads_everything_and_writes_apart(tmp_path):
    base = tmp_path / "base"
    for name, text in [("checkpoints/decoders/d.weights.h5", "weights"), ("data/validation/val_1.tfrecord", "val"),
                       ("outputs/results.txt", "block 0"), ("outputs/results.txt.tmp-123", "half"),
                       ("data/replay_images_and_labels/debug/x/images/0.jpg", "debug"),
                       ("outputs/tensorboard/run/step0/events.out", "log"), ("README.md", "not copied")]:
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text)
    view = distribute.worker_view(_Manager(base), 1)
    scratch = view.base_folder_path
    assert scratch != str(base) and os.path.basename(scratch).startswith("recall-worker1-")
    assert sorted(_files(scratch)) == ["checkpoints/decoders/d.weights.h5", "data/validation/val_1.tfrecord",
                                       "outputs/results.txt"]
    assert open(os.path.join(scratch, "data/validation/val_1.tfrecord")).read() == "val"
    # Writes go through a temporary name and a rename, as every artifact's: the real file is untouched.
    results = os.path.join(scratch, "outputs/results.txt")
    with open(results + ".tmp-1", "w") as f:
        f.write("block 0, block 1")
    os.replace(results + ".tmp-1", results)
    assert (base / "outputs/results.txt").read_text() == "block 0"
    del view
    gc.collect()
    assert not os.path.exists(scratch)


@pytest.mark.parametrize("text, match", [
    ("{cluster: 1}", "TF_CONFIG is not JSON"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "'cluster' must map"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}', "'task' must name"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "'task' must name"),
])
def test_bad_tf_config_is_named_before_any_strategy(monkeypatch, text, match):
    monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(ValueError, match=match):
        distribute.make_strategy("multi_worker")
    distribute.check_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')
    distribute.check_tf_config(None)  # unset: one worker


def test_a_missing_peer_ends_the_wait(tmp_path):
    """A worker whose peer never starts does not wait forever: it says what it waits for, and after
    Training.peer_timeout it ends (TensorFlow's own wait is unbounded and ignores SIGTERM)."""
    config = {"cluster": {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]},
              "task": {"type": "worker", "index": 0}}
    env = dict(os.environ, TF_CONFIG=json.dumps(config))
    code = "import runtime, distribute; distribute.make_strategy('multi_worker', peer_timeout=5); print('made')"
    start = time.time()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "waiting up to 5 s (Training.peer_timeout)" in done.stderr and "Timeout" in done.stderr
    assert "made" not in done.stdout
    assert time.time() - start < 120
