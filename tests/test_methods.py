"""The methods (methods/: the baselines, RECALL) run through training.py: a tiny experiment per method end to
end (artifacts, encoder per step where it trains, resume, results file), MiB's initialisation on a real network,
and the previous network a baseline's loss reads."""
import glob
import math
import os
import shutil

import gin
import numpy as np
import pytest

import artifacts
import data_loader
import methods
import model
import results
import training
from losses import mib_initialize_decoder
from conftest import ROOT, TINY_BINDINGS
from train_manager import TrainManager

SETUP = "ADD_ONE_ONE_TIME"  # 19-1: one incremental step, the cheapest end to end
TWO_STEPS = "ADD_FIVE_TWO_TIMES"  # 10-5-5: two incremental steps, so step 2 starts from step 1's networks
# One step per class. The tiny encoder starts from random weights with identity batch norms (no pretrained encoder):
# its features are large, and at the configs' rate ILT's feature distillation (weight 100) diverges when it trains.
FAST = ["TrainManager.training_steps_per_class = 1", "TrainManager.decay_steps_per_class = 1",
        "TrainManager.training_steps_per_class_incremental = 1", "TrainManager.decay_steps_per_class_incremental = 1",
        "TrainManager.lr_initial_value_incremental = 1e-5", "TrainManager.lr_final_value_incremental = 1e-7"]
# config -> (TrainManager.method, trains the encoder, a binding of its weights the operative config must show)
CONFIGS = {
    "LWF_DISJOINT": ("lwf", False, "lwf.kd_weight = 100.0"),
    "ILT_OVERLAPPED": ("ilt", True, "ilt.de_weight = 100.0"),
    "ILT_FROZEN_DISJOINT": ("ilt", False, "ilt.kd_weight = 100.0"),
    "MIB_OVERLAPPED": ("mib", True, "mib.kd_weight = 10.0"),
    "PLOP_DISJOINT": ("plop", True, "plop.features_factor = 0.01"),
}


def manager(base, config, test_type=SETUP, extra=()):
    gin.clear_config()
    gin.parse_config_files_and_bindings([os.path.join(ROOT, "config", config + ".gin")],
                                        TINY_BINDINGS + FAST + [f'TrainManager.base_folder_path = "{base}"']
                                        + list(extra))
    return TrainManager(test_type=test_type, replay_source="gan")


@pytest.fixture(scope="module")
def step0_base(tiny_data, tmp_path_factory):
    """The tiny base folder with the step-0 networks the tests' experiments start from (the baselines reuse the
    RECALL configs' step 0: one per protocol and setup), trained once. Copy it (step0_copy) before writing."""
    base = tmp_path_factory.mktemp("methods") / "base"
    shutil.copytree(tiny_data, base)
    for config, test_type in (("LWF_DISJOINT", SETUP), ("MIB_OVERLAPPED", SETUP), ("MIB_OVERLAPPED", TWO_STEPS)):
        training.Training(manager(base, config, test_type)).first_step()
    shutil.rmtree(base / "outputs")  # each experiment validates its step 0 into its own results file
    return base


@pytest.fixture
def step0_copy(step0_base, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(step0_base, base)
    return base


def _weights(path, what):
    seg = model.Segmenter(21)
    (model.load_encoder if what == "encoder" else model.load_decoder)(seg, path)
    return (seg.encoder if what == "encoder" else seg.decoder).get_weights()


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_method_end_to_end_and_resume(step0_copy, monkeypatch, config):
    copy_base = step0_copy
    method, trains_encoder, binding = CONFIGS[config]
    m = manager(copy_base, config)
    assert m.check_encoder() and m.find_step() == 1  # step 0 reused from the fixture
    assert (m.incremental.method, m.incremental.train_encoder) == (method, trains_encoder)
    assert not m.uses_replay() and not m.mix_labels()
    saved = []  # (path, encoder weights) of every decoder saved
    real_save = model.save_decoder
    monkeypatch.setattr(model, "save_decoder",
                        lambda seg, path: (saved.append((path, seg.encoder.get_weights())), real_save(seg, path)))
    losses = []  # the Trainers' losses: a baseline's StepLoss in each incremental step
    real_init = model.Trainer.__init__
    monkeypatch.setattr(model.Trainer, "__init__",
                        lambda self, *a, **k: (losses.append(k.get("loss")), real_init(self, *a, **k))[1])
    training.Training(m).train()

    # Artifacts: a decoder per step; an encoder per incremental step exactly when the method trains it.
    assert m.check_encoder() and m.check_decoders() and m.find_step() == -1
    step_encoders = sorted(glob.glob(os.path.join(copy_base, "checkpoints", "encoders", "*_S*" + artifacts.CHECKPOINT_SUFFIX)))
    encoders = m.get_encoder_paths()
    if trains_encoder:
        assert step_encoders == [p + ".weights.h5" for p in encoders[1:]]
        assert [os.path.basename(p) for p in encoders[1:]] == [os.path.basename(p)
                                                               for p in m.get_decoder_paths()[1:]]
    else:
        assert step_encoders == [] and encoders == [m.get_encoder_path()] * 2
    assert not glob.glob(os.path.join(copy_base, "checkpoints", "helper_decoders", "*"))  # no replay, no helpers
    assert not os.path.exists(m.get_replay_folder())
    assert len(losses) == 1 and isinstance(losses[0], methods.StepLoss) and losses[0].method.name == method
    assert (losses[0].n_old, losses[0].n_new) == (20, 1)
    if method == "plop":
        assert losses[0].thresholds.shape == (20,)

    # The step-0 encoder is untouched; the incremental steps' encoders equal it when frozen, differ when trained.
    step0 = _weights(m.get_encoder_path(), "encoder")
    assert len(saved) == 1
    for path, weights in saved:
        same = all(np.array_equal(a, b) for a, b in zip(weights, step0))
        assert same != trains_encoder, path
    if trains_encoder:  # what was saved is what the encoder file holds
        for (_, weights), encoder in zip(saved, encoders[1:]):
            assert all(np.array_equal(a, b) for a, b in zip(weights, _weights(encoder, "encoder")))

    # Results file, description and operative config.
    blocks = results.parse_results_file(m.get_validation_file_path())
    assert [b["step"] for b in blocks] == [0, 1]
    assert blocks[1]["old_classes"] == list(range(20)) and blocks[1]["new_classes"] == [20]
    (experiment,) = results.read_experiments(os.path.join(copy_base, "outputs"))
    assert (experiment["config"], experiment["replay_source"]) == (config, "none")
    assert experiment["method"] == {"lwf": "LwF", "ilt": "ILT" if trains_encoder else "ILT (frozen encoder)",
                                    "mib": "MiB", "plop": "PLOP"}[method]
    with open(os.path.splitext(m.get_validation_file_path())[0] + ".gin") as f:
        operative = f.read()
    assert binding in operative and f"TrainManager.method = '{method}'" in operative

    # Resume: a second run trains nothing and leaves the results file as it was.
    with open(m.get_validation_file_path()) as f:
        text = f.read()
    monkeypatch.setattr(model.Trainer, "train_step", lambda *args: pytest.fail("trained again"))
    training.Training(manager(copy_base, config)).train()
    with open(m.get_validation_file_path()) as f:
        assert f.read() == text


def test_a_lost_step_restarts_from_the_previous_steps_networks(step0_copy, monkeypatch):
    """MiB 10-5-5 after its last step's encoder, decoder and results were lost: only step 2 trains again, from
    step 1's encoder and decoder (the network and the previous network of its loss), and is validated."""
    copy_base = step0_copy
    m = manager(copy_base, "MIB_OVERLAPPED", TWO_STEPS)
    training.Training(m).train()
    for path in (m.get_encoder_paths()[2], m.get_decoder_paths()[2]):
        os.remove(path + ".weights.h5")
    os.remove(m.get_validation_file_path())
    assert manager(copy_base, "MIB_OVERLAPPED", TWO_STEPS).find_step() == 2
    loaded, steps = [], []
    for name in ("load_encoder", "load_decoder"):
        real = getattr(model, name)
        monkeypatch.setattr(model, name, lambda seg, path, *a, real=real, name=name: (
            loaded.append((name, path)), real(seg, path, *a))[1])
    real_step = model.Trainer.train_step
    monkeypatch.setattr(model.Trainer, "train_step", lambda self, *a: (steps.append(1), real_step(self, *a))[1])
    training.Training(manager(copy_base, "MIB_OVERLAPPED", TWO_STEPS)).train()
    assert len(steps) == m.incremental_schedule(5).steps  # step 2 only
    step1 = [("load_encoder", m.get_encoder_paths()[1]), ("load_decoder", m.get_decoder_paths()[1])]
    assert loaded.count(step1[0]) >= 2 and loaded.count(step1[1]) >= 2  # network and previous network
    assert ("load_encoder", m.get_encoder_paths()[0]) in loaded  # validation of step 0 (its block was lost)
    assert [b["step"] for b in results.parse_results_file(m.get_validation_file_path())] == [0, 1, 2]


def test_mib_initialization_on_a_network(tiny_data):
    """Right after mib_initialize_decoder, on real images through a tiny Segmenter, every new class's logit and
    the background's equal the background's logit before minus log(k + 1); old classes and future outputs
    keep theirs, and p(background) + p(new classes) equals the previous p(background)."""
    gin.clear_config()
    gin.parse_config([b for b in TINY_BINDINGS if b.startswith("backbone")])
    seg = model.Segmenter(21)
    samples = data_loader.load_tfrecord(str(tiny_data / "data" / "training_incremental" / "train_disjoint_16-20.tfrecord"),
                                       "validation")
    images = np.stack([s["input"].numpy() for s in samples.take(2)])
    n_old, n_new = 11, 5
    before = seg(images).numpy()
    mib_initialize_decoder(seg.decoder, n_old, n_new)
    after = seg(images).numpy()
    shifted = before[..., :1] - math.log(n_new + 1)
    np.testing.assert_allclose(after[..., n_old:n_old + n_new], np.repeat(shifted, n_new, -1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(after[..., :1], shifted, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(after[..., 1:n_old], before[..., 1:n_old], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(after[..., n_old + n_new:], before[..., n_old + n_new:], rtol=1e-5, atol=1e-5)

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    p_before, p_after = softmax(before[..., :n_old]), softmax(after[..., :n_old + n_new])
    np.testing.assert_allclose(p_after[..., :1].sum(-1) + p_after[..., n_old:].sum(-1), p_before[..., 0], atol=1e-5)


def test_a_baselines_trainer_needs_the_previous_network():
    gin.clear_config()
    gin.parse_config([b for b in TINY_BINDINGS if b.startswith("backbone")])
    seg = model.Segmenter(21)
    with pytest.raises(ValueError, match="previous step's network"):
        model.Trainer(seg, model.make_label_map(range(21)), 1e-3, loss=methods.StepLoss(methods.make("lwf"), 16, 5))
    with pytest.raises(ValueError, match="previous step's network"):  # RECALL's reads none
        model.Trainer(seg, model.make_label_map(range(21)), 1e-3, previous=seg)
    with pytest.raises(ValueError, match="unknown method 'ewc'"):
        methods.make("ewc")
    assert methods.make("recall").before_step(None) is methods.recall.LOSS
