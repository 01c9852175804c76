"""A tiny RECALL experiment end to end: stages, artifacts, frozen encoder, label mixing, results, resume."""
import copy
import glob
import io
import shutil
import os
import re
import signal
import subprocess
import sys
import time

import gin
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import artifacts
from context import Context
import data_loader
import distribute
import results
import metrics
import model
import training
from conftest import ROOT, TESTS, TINY_BINDINGS, write_tf1_checkpoint
from train_manager import TrainManager

SETUP = "ADD_FIVE_TWO_TIMES"  # 10-5-5: a helper (11-15), label mixing at both steps, replay of 15 classes


def manager(base, config="DISJOINT", test_type=SETUP, source="gan", extra=()):
    gin.clear_config()
    gin.parse_config_files_and_bindings([os.path.join(ROOT, "config", config + ".gin")],
                                        TINY_BINDINGS + [f'TrainManager.base_folder_path = "{base}"'] + list(extra))
    return TrainManager(test_type=test_type, replay_source=source)


def load(m, n_outputs, class_ids, decoder):
    seg = model.Segmenter(n_outputs, class_ids)
    model.load_encoder(seg, m.get_encoder_path())
    model.load_decoder(seg, decoder)
    return seg


def test_experiment_end_to_end(copy_base, monkeypatch):
    m = manager(copy_base)
    saved = []  # (path, encoder weights of the model being saved)
    real_save = model.save_decoder
    monkeypatch.setattr(model, "save_decoder",
                        lambda seg, path: (saved.append((path, seg.encoder.get_weights())), real_save(seg, path)))
    inputs = []  # (replay files, how the streams are ordered) of every stage's training input
    real_dataset = data_loader.training_dataset
    order = ("shuffle_batches", "buffer_size", "sequential_files")
    monkeypatch.setattr(data_loader, "training_dataset", lambda *args, **kwargs: (
        inputs.append((args[1], {k: v for k, v in kwargs.items() if k in order})), real_dataset(*args, **kwargs))[1])
    training.Training(m).train()

    # The original's input order: the first step and helpers shuffle whole batches; an incremental step reads
    # the replay files in class order through a buffer of 400 x (old classes) records.
    first, helper, step1, step2 = inputs
    assert not first[0] and not helper[0] and step1[0] and step2[0]  # replay files in steps 1 and 2 only
    assert first[1] == helper[1] == {"shuffle_batches": True, "buffer_size": 1000}
    assert step1[1] == {"sequential_files": True, "buffer_size": 400 * 10}
    assert step2[1] == {"sequential_files": True, "buffer_size": 400 * 15}
    assert step2[0] == m.get_replay_output_paths()[:15]  # classes 1..15 in order
    inputs.clear()  # the switch: data_loader's defaults (records shuffled, buffer 1000, files round-robin)
    balanced = training.Training(copy.copy(m), input_order="balanced")  # a copy: the switch renames its artifacts
    balanced._dataset(m.get_train_paths()[:1], None, stream=0, n_old=None)
    balanced._dataset(m.get_mixed_train_paths()[2:], m.get_replay_output_paths()[:15], stream=2, n_old=15)
    assert [kwargs for _, kwargs in inputs] == [{}, {}]

    # Every artifact exists.
    assert m.check_encoder() and m.check_decoders() and m.check_helpers()
    assert m.get_helpers_classes() == [[11, 12, 13, 14, 15]]
    assert m.check_labels_no_helper() and m.check_labels_helper()
    assert all(m.exists_mixed_tfrecord(s) for s in (1, 2))
    with open(os.path.splitext(m.get_validation_file_path())[0] + ".gin") as f:
        operative = f.read()  # every switch between the original's behaviour and ours is recorded
    for binding in ('Training.train_batch_norm = True', "Training.momentum_rule = 'tf1'",
                    "Training.replay_label_input = 'raw'", "Training.input_order = 'original'"):
        assert binding in operative, binding
    assert glob.glob(os.path.join(m.get_replay_folder(), "debug", "*", "rgb_labels", "0.png"))

    # Helper and incremental decoders trained on a frozen encoder: bit-identical to the step-0 encoder.
    step0 = model.Segmenter(21)
    model.load_encoder(step0, m.get_encoder_path())
    frozen = [p for p, _ in saved if not p.endswith(m.get_encoder_name())]
    assert len(frozen) == 3  # one helper, two incremental steps
    for path, weights in saved:
        if path in frozen:
            for a, b in zip(weights, step0.encoder.get_weights()):
                np.testing.assert_array_equal(a, b)

    # The results file holds one block per step, old/new classes as the setup says.
    blocks = results.parse_results_file(m.get_validation_file_path())
    assert [b["step"] for b in blocks] == [0, 1, 2]
    assert blocks[2]["old_classes"] == list(range(16)) and blocks[2]["new_classes"] == list(range(16, 21))

    # Replay of classes 11-15 is labelled by the helper: only background and its classes appear.
    helper_file = m.get_replay_output_helper_paths()[0][0]
    for sample in data_loader.load_tfrecord(helper_file, "validation"):
        assert set(np.unique(sample["label"].numpy())) <= {0, 11, 12, 13, 14, 15}

    # Mixed labels of step 1: ground-truth classes kept, background and void from the step-0 model.
    previous = load(m, 21, None, m.get_decoder_paths()[0])
    gt = list(data_loader.load_tfrecord(m.get_train_paths()[1], "validation"))
    mixed = list(data_loader.load_tfrecord(m.get_mixed_train_paths()[1], "validation"))
    assert len(gt) == len(mixed) > 0
    filled = 0
    for g, x in zip(gt, mixed):
        label, out = g["label"].numpy(), x["label"].numpy()
        prediction = previous.predict_ids(g["input"][None])[0].numpy()
        keep = (label != 0) & (label != 255)
        np.testing.assert_array_equal(out[keep], label[keep])
        np.testing.assert_array_equal(out[~keep], prediction[~keep])
        filled += int((~keep).sum())
    assert filled > 0


def test_mix_labels_rule():
    label = np.array([[0, 255, 3], [5, 0, 255]], np.uint8)
    prediction = np.array([[7, 8, 9], [1, 2, 3]], np.uint8)
    np.testing.assert_array_equal(training.mix_labels(label, prediction), [[7, 8, 3], [5, 2, 3]])


def test_fine_tuning_uses_no_replay(copy_base, monkeypatch):
    """No helpers, no labelling; the incremental step, one stream of new samples, is batched by
    interleave_ratio_new (4) rather than batch_size (8), as the original's interleave_datasets did."""
    batches = []
    real = data_loader.training_dataset
    monkeypatch.setattr(data_loader, "training_dataset",
                        lambda *args, **kwargs: (batches.append(args[4]), real(*args, **kwargs))[1])
    m = manager(copy_base, config="FINE_TUNING", test_type="ADD_ONE_ONE_TIME")
    training.Training(m).train()
    assert batches == [8, 4]  # step 0 by batch_size, step 1 by the ratio
    assert m.check_decoders()
    assert not os.path.exists(m.get_replay_folder())  # no labelling without replay
    assert [b["step"] for b in results.parse_results_file(m.get_validation_file_path())] == [0, 1]


def test_the_originals_trained_checkpoints_validate_without_training(copy_base, monkeypatch):
    """TF1 checkpoints under the original's names (as in its archive) are found and loaded by name: the
    experiment trains nothing, labels no replay and validates every step with those weights."""
    m = manager(copy_base)
    n_steps = len(m.get_decoder_paths())
    nets = [model.Segmenter(21) for _ in range(n_steps)]  # the original's decoders all have 21 outputs
    encoder = {name: var.numpy() for var, name in model.encoder_tf1_names(nets[0].encoder)}
    write_tf1_checkpoint(m.get_encoder_path(), encoder)
    for net, path in zip(nets, m.get_decoder_paths()):
        write_tf1_checkpoint(path, {name: var.numpy() for var, name in model.decoder_tf1_names(net.decoder)})
    monkeypatch.setattr(model.Trainer, "train_step", lambda *args: pytest.fail("trained"))
    monkeypatch.setattr(training.Training, "_label_replay", lambda *args: pytest.fail("labelled replay"))
    training.Training(m).train()

    blocks = results.parse_results_file(m.get_validation_file_path())
    assert [b["step"] for b in blocks] == list(range(n_steps))
    assert not glob.glob(os.path.join(copy_base, "checkpoints", "**", "*.weights.h5"), recursive=True)
    for step, net in enumerate(nets):  # the validation used the checkpoints' weights
        old = m.get_old_classes_for_incremental_step(step) if step else []
        new = m.get_new_classes_for_incremental_step(step) if step else list(range(m.get_encoder_number() + 1))
        seg = model.Segmenter(21)
        seg.encoder.set_weights(nets[0].encoder.get_weights())
        seg.decoder.set_weights(net.decoder.get_weights())
        _, cm = training.evaluate(seg, m.get_val_paths()[step], old + new, 21, m.common.dataset_mean,
                                  progress=False)
        assert blocks[step]["miou"] == pytest.approx(metrics.get_mean_iou(cm, old + new), abs=1e-6)


def test_missing_pretrained_encoder_is_an_error_by_default(copy_base):
    m = manager(copy_base, extra=["Training.require_pretrained = True"])
    with pytest.raises(FileNotFoundError, match="checkpoints/encoders/pretrained"):
        training.Training(m).train()


def test_missing_replay_images_name_the_file(copy_base):
    os.remove(copy_base / "data" / "replay_images" / "gan" / "03.tfrecord")
    with pytest.raises(FileNotFoundError, match="replay_images/gan/03.tfrecord"):
        training.Training(manager(copy_base)).train()


@pytest.mark.parametrize("original", [True, False])
def test_replay_labels_inputs_and_stored_images(copy_base, original):
    """The original labels replay images from raw 0..255 pixels and stores them re-encoded as Pillow JPEGs of
    quality 75; the switches subtract the mean first and keep the source bytes."""
    m = manager(copy_base)
    t = (training.Training(m) if original else
         training.Training(m, replay_label_input="mean_subtracted", reencode_jpeg=False))
    seg = model.Segmenter(21)
    source = str(copy_base / "data" / "replay_images" / "gan" / "01.tfrecord")
    output = str(copy_base / "labelled.tfrecord")
    t._label_replay(seg, source, output, str(copy_base / "debug"))
    labels = [s["label"].numpy() for s in data_loader.load_tfrecord(output, "validation")]
    images = np.stack([s["rgb_input"].numpy() for s in data_loader.load_tfrecord(source, "images")])
    raw = seg.predict_ids(images.astype(np.float32)).numpy()
    subtracted = seg.predict_ids(images - np.float32(data_loader.DEFAULT_MEAN)).numpy()
    assert not np.array_equal(raw, subtracted)  # the two inputs label differently, so the test can tell
    np.testing.assert_array_equal(np.stack(labels), raw if original else subtracted)

    def jpegs(path):
        return [tf.train.Example.FromString(r.numpy()).features.feature["input"].bytes_list.value[0]
                for r in tf.data.TFRecordDataset(path)]

    def pillow_75(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=75)
        return buffer.getvalue()

    expected = [pillow_75(image) for image in images] if original else jpegs(source)
    assert jpegs(output) == expected and expected != jpegs(source) if original else jpegs(output) == expected


def test_short_training_file_and_corrupt_validation_file_fail_before_training(copy_base):
    """A training tfrecord cut at a record boundary reads cleanly: its split list tells. A corrupt validation
    file fails before step 0 trains."""
    m = manager(copy_base)
    path = m.get_train_paths()[0]
    records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    data_loader.write_tfrecord(path, records[:len(records) // 4])
    with pytest.raises(ValueError, match=f"{re.escape(path)} holds {len(records) // 4} records, but its split "
                                         f"list .* names {len(records)}"):
        training.Training(m).train()
    data_loader.write_tfrecord(path, records)
    with open(m.get_val_paths()[0][2], "r+b") as f:
        f.seek(30)
        f.write(b"garbage")
    with pytest.raises(ValueError, match=re.escape(m.get_val_paths()[0][2])):
        training.Training(m).train()
    assert not artifacts.checkpoint_exists(m.get_encoder_path())  # nothing trained


def test_bad_strategy_name():
    gin.clear_config()
    with pytest.raises(ValueError, match="'tpu'.*mirrored"):
        distribute.make_strategy("tpu")


RUN = """
from test_training import manager
import training
training.Training(manager({base!r})).train()
"""


def _run(base, kill_when=None, timeout=600):
    """Runs the experiment in a subprocess. Without kill_when it must finish (exit 0); with kill_when it is
    SIGKILLed as soon as that file exists, and must not end any other way first: a crash, an exit or a hang
    fails the test (with the child's stderr), never counts as a kill."""
    code = RUN.format(base=str(base))
    with open(base / "child.stderr", "w+b") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=err, cwd=TESTS)
        deadline = time.time() + timeout
        while proc.poll() is None and time.time() < deadline:
            if kill_when is not None and glob.glob(kill_when):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return "killed"
            time.sleep(0.02)
        hung = proc.poll() is None
        if hung:
            proc.kill()
            proc.wait()
        err.seek(0)
        log = err.read().decode(errors="replace")[-3000:]
    assert not hung, f"the run hung for {timeout} s:\n{log}"
    assert proc.returncode == 0, f"the run crashed (exit {proc.returncode}):\n{log}"
    assert kill_when is None, f"the run finished before {kill_when} appeared"
    return "finished"


def _finished_files(base):
    """{path: (inode, mtime)} of the complete artifacts under checkpoints/ and data/ (not the debug images,
    which the original too wrote as plain files)."""
    paths = glob.glob(str(base / "checkpoints" / "**" / "*"), recursive=True)
    paths += glob.glob(str(base / "data" / "**" / "*"), recursive=True)
    return {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in paths
            if os.path.isfile(p) and ".tmp-" not in p and f"{os.sep}debug{os.sep}" not in p}


def test_kill_and_resume(copy_base):
    """SIGKILL at several points, then resume: every kill hits its point, the experiment completes, nothing is
    done twice (an artifact finished before a kill is never written again), nothing is half-written."""
    m = manager(copy_base)
    points = [m.get_encoder_path() + "*.weights.h5",       # inside the helper stage
              m.get_replay_output_no_helper_paths()[3],    # while labelling replay
              m.get_mixed_train_paths()[1],                # before training step 1
              m.get_decoder_paths()[1] + ".weights.h5"]    # while validating step 1
    finished = {}
    for point in points:
        assert not glob.glob(point), f"{point} exists before the run that should be killed there"
        assert _run(copy_base, kill_when=point) == "killed"
        finished.update(_finished_files(copy_base))
    _run(copy_base)
    after = _finished_files(copy_base)
    rewritten = [p for p, stat in finished.items() if after.get(p) != stat]
    assert rewritten == []
    m = manager(copy_base)
    assert m.check_decoders() and m.check_helpers() and m.check_labels_helper()
    assert [b["step"] for b in results.parse_results_file(m.get_validation_file_path())] == [0, 1, 2]
    leftovers = [p for p in glob.glob(str(copy_base / "**" / "*.tmp-*"), recursive=True)]
    assert leftovers == []
    for path in m.get_replay_output_paths() + m.get_mixed_train_paths()[1:]:
        assert data_loader.check_tfrecord(path, 21) > 0  # complete and readable


def test_batched_prediction_equals_per_image_prediction(tiny_data):
    """Labelling and mixing in batches (same-size images) give exactly the per-image predictions."""
    gin.clear_config()
    gin.parse_config([b for b in TINY_BINDINGS if b.startswith("backbone")])
    seg = model.Segmenter(21)
    path = str(tiny_data / "data" / "training_incremental" / "train_disjoint_16-20.tfrecord")
    one = list(training._predicted(seg, path, "validation", data_loader.DEFAULT_MEAN, 1))
    many = list(training._predicted(seg, path, "validation", data_loader.DEFAULT_MEAN, 4))
    assert len(one) == len(many) == data_loader.count_records(path) > 4
    for (raw1, s1, p1), (raw4, s4, p4) in zip(one, many):
        assert raw1 == raw4
        np.testing.assert_array_equal(s1["label"], s4["label"])
        np.testing.assert_array_equal(p1, p4)


def test_same_seed_same_results(tiny_data, tmp_path):
    """Two runs of one experiment with the same seed write the same results file, to the digit; so does a
    run whose last step is redone from the checkpoints (an uninterrupted run keeps its network in memory from
    step to step, a resumed one reads it back)."""
    texts = []
    for name in ("a", "b"):
        base = tmp_path / name
        shutil.copytree(tiny_data, base)
        m = manager(base)
        training.Training(m).train()
        if name == "b":
            for path in (m.get_validation_file_path(), m.get_mixed_train_paths()[2],
                         m.get_decoder_paths()[2] + ".weights.h5"):
                os.remove(path)
            training.Training(manager(base)).train()
        with open(m.get_validation_file_path()) as f:
            texts.append(f.read())
    assert [b["step"] for b in results.parse_results_file(m.get_validation_file_path())] == [0, 1, 2]
    assert texts[0] == texts[1]


def test_experiments_of_one_process_share_their_networks(tiny_data, tmp_path, monkeypatch):
    """A second experiment in the same process (one Context) loads its networks into the ones the first left, so it
    builds no network, and takes the validation of the first step they share from it; its results are those of the same experiment alone in a fresh process's context, to the
    digit (the kept networks' traced steps and predictions compute what new ones compute)."""
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    shutil.copytree(tiny_data, shared)
    context = Context(progress_bars=False)
    training.Training(manager(shared), context=context).train()  # DISJOINT: step 0, helper, replay, two steps
    shutil.copytree(shared, alone)
    builds = []
    real_init = model.Segmenter.__init__
    monkeypatch.setattr(model.Segmenter, "__init__",
                        lambda self, *args, **kwargs: (builds.append(args[:2]), real_init(self, *args, **kwargs))[1])
    validated = []
    real_evaluate = training.evaluate
    monkeypatch.setattr(training, "evaluate", lambda seg, paths, *args: (validated.append(len(paths)),
                                                                         real_evaluate(seg, paths, *args))[1])
    m = manager(shared, config="FINE_TUNING_DISJOINT")
    training.Training(m, context=context).train()  # step 0 reused: loads, two incremental steps, validations
    assert builds == []
    assert validated == [15, 20]  # steps 1 and 2; step 0's validation is the first experiment's
    training.Training(manager(alone, config="FINE_TUNING_DISJOINT"), context=Context(False)).train()
    assert builds  # a fresh context builds its networks
    with open(m.get_validation_file_path()) as a, open(os.path.join(
            alone, os.path.relpath(m.get_validation_file_path(), shared))) as b:
        assert a.read() == b.read()


def test_a_kept_network_reloads_a_checkpoint_that_changed(copy_base):
    """A kept network holds a checkpoint's weights by its file, modification time and size: a file written again
    (another experiment's, a rerun) is read again, and a network in training holds none."""
    m = manager(copy_base)
    run = training.Training(m, context=Context(False))
    run.first_step()
    decoder = m.get_decoder_paths()[0]
    seg = run._load(21, None, decoder)
    before = [w.copy() for w in seg.decoder.get_weights()]
    assert run._load(21, None, decoder) is seg
    other = model.Segmenter(21)
    other.decoder.set_weights([w + 1.0 for w in before])
    time.sleep(0.01)
    model.save_decoder(other, decoder)
    after = run._load(21, None, decoder)
    assert after is seg
    for w, expected in zip(after.decoder.get_weights(), other.decoder.get_weights()):
        np.testing.assert_array_equal(w, expected)
    seg.holds = None  # as _fit leaves a network it trains: the next load reads both files
    run._load(21, None, decoder)
    assert seg.holds is not None and seg.holds[1][0] == decoder + artifacts.CHECKPOINT_SUFFIX
