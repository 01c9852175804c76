"""TrainManager.plan(): the experiment as records, equal to what the original's getters say.

The getters are checked against SPEC.md's rules in test_train_manager.py; here every record of the plan is checked
against the getters for the same 216 experiments (9 configs x 8 setups x 3 sources), and one experiment's records
field by field.
"""
import dataclasses
import itertools
import os

import pytest

import train_manager
from test_train_manager import CONFIGS, SETUPS, SOURCES, make
from train_manager import Schedule


def _check_plan_equals_getters(m, where):
    p = m.plan()
    decoders, encoders = m.get_decoder_paths(), m.get_encoder_paths()
    train, mixed, val = m.get_train_paths(), m.get_mixed_train_paths(), m.get_val_paths()
    assert (p.uses_replay, p.train_encoder) == (m.uses_replay(), m.incremental.train_encoder), where

    first = p.first_step
    assert first.step == 0 and list(first.classes) == list(range(m.get_encoder_number() + 1)), where
    assert (first.train_path, first.pretrained_path, first.encoder_path, first.decoder_path) == \
        (train[0], m.get_encoder_pretrained_path(), m.get_encoder_path(), decoders[0]), where
    assert list(first.val_paths) == val[0] and first.schedule == m.first_step_schedule(), where
    if m.replay_source is None:
        assert first.replay == (), where
    else:
        assert [r.cls for r in first.replay] == m.get_replay_classes_no_helper(), where
        assert [r.source for r in first.replay] == m.get_replay_source_no_helper_paths(), where
        assert [r.output for r in first.replay] == m.get_replay_output_no_helper_paths(), where
        assert [r.name for r in first.replay] == m.get_replay_no_helper_tfrecords_names(), where

    assert [list(h.classes) for h in p.helpers] == m.get_helpers_classes(), where
    assert [h.decoder_path for h in p.helpers] == m.get_helper_out_paths(), where
    assert [h.train_path for h in p.helpers] == m.get_helper_train_paths(), where
    assert [h.schedule for h in p.helpers] == [m.helper_schedule(len(c)) for c in m.get_helpers_classes()], where
    assert [[r.source for r in h.replay] for h in p.helpers] == (m.get_replay_source_helper_paths() or []), where
    assert [[r.output for r in h.replay] for h in p.helpers] == m.get_replay_output_helper_paths(), where
    assert [[r.name for r in h.replay] for h in p.helpers] == m.get_replay_helper_tfrecords_names(), where
    assert [[r.cls for r in h.replay] for h in p.helpers] == m.get_helpers_classes(), where
    assert [r.output for r in p.replay_files] == m.get_replay_output_paths(), where
    for r in p.replay_files:
        assert r.debug_folder == os.path.join(m.get_replay_folder(), "debug", r.name), where

    # One record per incremental step the experiment trains: every step of the setup with a replay source (the
    # sweep's configs, fine-tuning included), none without one (the original names no incremental decoder then).
    assert len(p.incremental_steps) == len(decoders) - 1, where
    assert len(decoders) == (1 if m.replay_source is None else len(m.get_test_structure())), where
    assert [s.step for s in p.steps] == list(range(len(decoders))), where
    for s in p.incremental_steps:
        k = s.step
        assert list(s.old_classes) == m.get_old_classes_for_incremental_step(k), where
        assert list(s.new_classes) == m.get_new_classes_for_incremental_step(k), where
        assert (s.train_path, s.mixed_path, s.mix_labels) == (train[k], mixed[k], m.mix_labels()), where
        assert s.data_path == (mixed[k] if m.mix_labels() else train[k]), where
        assert list(s.val_paths) == val[k], where
        assert list(s.replay_paths) == (m.get_replay_tfrecords_for_step(k) if m.uses_replay() else []), where
        assert (s.decoder_path, s.encoder_path, s.previous_decoder_path, s.previous_encoder_path) == \
            (decoders[k], encoders[k], decoders[k - 1], encoders[k - 1]), where
        assert s.schedule == m.incremental_schedule(len(s.new_classes)), where
    return p


@pytest.mark.parametrize("config", CONFIGS)
def test_plan_equals_the_getters_for_every_setup_and_source(config):
    """The 216 experiments of test_train_manager's oracle: every record's every field is the getters' value."""
    for test_index, source in itertools.product(range(8), SOURCES):
        _check_plan_equals_getters(make(config, SETUPS[test_index][0], source), f"{config} {test_index} {source}")


@pytest.mark.parametrize("bindings", [
    ("TrainManager.mixed_labels_per_experiment = True",), ("TrainManager.helper_decoders_one_class = True",),
    ('TrainManager.base_folder_path = "/tmp/base"',)])
def test_plan_follows_the_bindings_that_rename(bindings):
    for config, test_index in (("DISJOINT", 5), ("OVERLAPPED", 3), ("SEQUENTIAL", 2)):
        _check_plan_equals_getters(make(config, SETUPS[test_index][0], "flickr", *bindings), (config, bindings))


@pytest.mark.parametrize("config", ["MIB_DISJOINT", "LWF_OVERLAPPED", "PLOP_DISJOINT"])
def test_plan_of_a_method_that_trains_the_encoder_or_not(config):
    p = _check_plan_equals_getters(make(config, "ADD_TWO_FIVE_TIMES", "gan"), config)
    trains = config != "LWF_OVERLAPPED"
    assert p.train_encoder is trains and not p.uses_replay
    assert all(s.replay_paths == () for s in p.incremental_steps)  # the field's methods replay nothing
    for s in p.incremental_steps:
        assert (s.encoder_path != p.first_step.encoder_path) is trains
        assert s.previous_encoder_path == (p.steps[s.step - 1].encoder_path)


def test_records_of_disjoint_10_5_5_gan():
    """DISJOINT 10-5-5 gan (T2, indices 1.0.0.2, base folder "."), field by field, from SPEC.md's rules."""
    p = make("DISJOINT", "ADD_FIVE_TWO_TIMES", "gan").plan()
    replay_dir = "./data/replay_images_and_labels/"

    def replay(c, helper_size):
        name = f"P1.0.0_E10_H{helper_size}_C{c}_gan"
        return train_manager.ReplayFile(c, f"./data/replay_images/gan/{c:02d}.tfrecord",
                                        replay_dir + name + ".tfrecord", name, replay_dir + "debug/" + name)

    val = tuple(f"./data/validation/val_{k}.tfrecord" for k in range(1, 21))
    assert p.first_step == train_manager.FirstStepPlan(
        classes=tuple(range(11)), train_path="./data/training_first_step/train_sequential_1-10.tfrecord",
        pretrained_path="./checkpoints/encoders/pretrained", encoder_path="./checkpoints/encoders/P1.0_E10",
        decoder_path="./checkpoints/decoders/P1.0_E10", val_paths=val[:10],
        schedule=Schedule(10 * 1000, 5e-4, 5e-6, 11 * 1000), replay=tuple(replay(c, 0) for c in range(1, 11)))
    assert p.helpers == (train_manager.HelperPlan(
        classes=(11, 12, 13, 14, 15), train_path="./data/training_incremental/train_sequential_11-15.tfrecord",
        decoder_path="./checkpoints/helper_decoders/P1.0.0_E10_C11-15", schedule=Schedule(5000, 2e-4, 2e-6, 6000),
        replay=tuple(replay(c, 5) for c in range(11, 16))),)
    assert p.uses_replay and not p.train_encoder and len(p.incremental_steps) == 2
    step1, step2 = p.incremental_steps
    assert step2 == train_manager.IncrementalStepPlan(
        step=2, old_classes=tuple(range(16)), new_classes=(16, 17, 18, 19, 20),
        train_path="./data/training_incremental/train_disjoint_16-20.tfrecord",
        mixed_path="./data/training_incremental/mixed/train_disjoint_16-20_P1.0.0.2.tfrecord", mix_labels=True,
        val_paths=val, replay_paths=tuple(r.output for r in p.replay_files),
        decoder_path="./checkpoints/decoders/P1.0.0.2_T2_S2_gan", encoder_path="./checkpoints/encoders/P1.0_E10",
        previous_decoder_path="./checkpoints/decoders/P1.0.0.2_T2_S1_gan",
        previous_encoder_path="./checkpoints/encoders/P1.0_E10", schedule=Schedule(5000, 5e-4, 5e-6, 5000))
    assert step2.data_path == step2.mixed_path and len(step2.replay_paths) == 15
    assert (step1.old_classes, step1.new_classes, step1.val_paths) == (tuple(range(11)), (11, 12, 13, 14, 15), val[:15])
    assert step1.replay_paths == tuple(r.output for r in p.first_step.replay)  # classes 1..10
    assert step1.previous_decoder_path == p.first_step.decoder_path and p.steps == (p.first_step, step1, step2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        step1.decoder_path = "elsewhere"


def test_without_replay_source_the_plan_has_no_incremental_step():
    p = make("DISJOINT", "ADD_FIVE_TWO_TIMES", None).plan()
    assert p.incremental_steps == () and p.helpers == () and p.first_step.replay == () and not p.uses_replay
