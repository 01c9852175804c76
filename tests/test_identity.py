"""An artifact's identity: the behaviour switches that change it are part of its name (behaviours.tag), and what
made it is recorded beside it and checked when it is reused (artifacts.write_record / check_record)."""
import json
import os

import gin
import pytest

import artifacts
import embedded_benchmark  # noqa: F401  (registers embedded.*, as the fixtures need it, before gin locks)
import behaviours
import training
from conftest import ROOT, TINY_BINDINGS
from train_manager import TrainManager

SETUP = "ADD_FIVE_TWO_TIMES"  # 10-5-5: step 0, a helper, labelled replay, mixed labels, two incremental steps
MEAN = 'Training.replay_label_input = "mean_subtracted"'
OWN_MIXED = "TrainManager.mixed_labels_per_experiment = True"


def manager(base, extra=(), config="DISJOINT"):
    gin.clear_config()
    gin.parse_config_files_and_bindings([os.path.join(ROOT, "config", config + ".gin")],
                                        TINY_BINDINGS + [f'TrainManager.base_folder_path = "{base}"'] + list(extra))
    return TrainManager(test_type=SETUP, replay_source="gan")


def files(base):
    """{path: (inode, mtime_ns)} of every file under base's checkpoints, data (but the prepared data) and
    outputs."""
    found = {}
    for top in ("checkpoints", "data/replay_images_and_labels", "data/training_incremental/mixed", "outputs"):
        for root, _, names in os.walk(os.path.join(base, top)):
            for name in names:
                path = os.path.join(root, name)
                found[path] = (os.stat(path).st_ino, os.stat(path).st_mtime_ns)
    return found


def test_default_names_are_the_originals_and_a_switch_tags_the_stages_it_changes(tmp_path):
    default = manager(tmp_path)
    assert default.get_encoder_name() == "P1.0_E10"
    assert default.get_decoders_names()[1] == "P1.0.0.2_T2_S1_gan"
    assert default.get_validation_file_name() == "DISJOINT (T2_P1.0.0.2_gan)"
    tagged = manager(tmp_path, [MEAN])
    tag = "__replay_label_input-mean_subtracted"
    # Step 0 and the helpers do not depend on how replay is labelled: shared; the rest has its own names.
    assert tagged.get_encoder_path() == default.get_encoder_path()
    assert tagged.get_helper_out_paths() == default.get_helper_out_paths()
    for name, original in zip(tagged.get_replay_output_paths(), default.get_replay_output_paths()):
        assert name == original[:-len(".tfrecord")] + tag + ".tfrecord"
    assert [p for p in tagged.get_decoder_paths()[1:]] == [p + tag for p in default.get_decoder_paths()[1:]]
    assert tagged.get_mixed_train_paths()[1] == default.get_mixed_train_paths()[1].replace(".tfrecord",
                                                                                            tag + ".tfrecord")
    assert tagged.get_validation_file_name() == default.get_validation_file_name() + tag
    # A switch of step 0 renames everything from step 0 on.
    bn = manager(tmp_path, ["Training.train_batch_norm = False"])
    assert bn.get_encoder_name() == "P1.0_E10__train_batch_norm-False"
    assert bn.get_helper_out_paths()[0].endswith("__train_batch_norm-False")
    assert behaviours.variant(tagged.behaviours) == "Training.replay_label_input = 'mean_subtracted'"
    assert behaviours.variant(default.behaviours) == "original"
    # Mixed labels of the experiment's own (not the original's shared name): its decoders and results trained on
    # them are tagged too, so they are never taken for the original's.
    own = manager(tmp_path, [OWN_MIXED])
    tag = "__mixed_labels_per_experiment-True"
    assert own.get_replay_output_paths() == default.get_replay_output_paths()
    assert own.get_decoder_paths()[1:] == [p + tag for p in default.get_decoder_paths()[1:]]
    assert own.get_mixed_train_paths()[1].endswith("_P1.0.0.2_T2_S1_gan" + tag + ".tfrecord")
    assert own.get_validation_file_name() == default.get_validation_file_name() + tag


def test_a_switch_flipped_shares_nothing_it_changes_and_other_values_under_one_index_fail(copy_base):
    """A run, the same run with one switch flipped, then the first again: the second makes its own labelled
    replay, mixed labels, decoders and results (reusing only step 0 and the helper, which the switch does not
    change); the third reuses everything of the first; the first run's files are never written again. Then
    reuses with other bound values under the same indices: each is an error."""
    first = manager(copy_base)
    training.Training(first).train()
    before = files(copy_base)
    flipped = manager(copy_base, [MEAN])
    training.Training(flipped).train()
    after = files(copy_base)
    assert all(after[p] == v for p, v in before.items()), "the flipped run rewrote a file of the first run"
    new = set(after) - set(before)
    tag = "__replay_label_input-mean_subtracted"
    made = {os.path.basename(p) for p in new}
    assert any(n.startswith(os.path.basename(flipped.get_decoder_paths()[2])) for n in made)
    assert os.path.basename(flipped.get_validation_file_path()) in made
    untagged = [p for p in new if tag not in os.path.relpath(p, copy_base)]
    assert not untagged, untagged  # nothing new without the tag (the debug images are in tagged folders)
    for path in flipped.get_replay_output_paths() + flipped.get_mixed_train_paths()[1:]:
        assert path in new and tag in path
    assert flipped.get_encoder_path() + artifacts.CHECKPOINT_SUFFIX in before  # step 0 reused
    # Mixed labels of its own: the first run's decoders and results are not reused for it, nor rewritten.
    own = manager(copy_base, [OWN_MIXED])
    training.Training(own).train()
    with_own = files(copy_base)
    assert all(with_own[p] == v for p, v in after.items()), "the run with its own mixed labels rewrote a file"
    own_new = {os.path.relpath(p, copy_base) for p in set(with_own) - set(after)}
    assert os.path.relpath(own.get_validation_file_path(), copy_base) in own_new
    assert not [p for p in own_new if "__mixed_labels_per_experiment-True" not in p], own_new
    after = with_own
    # The first run again, with a binding that changes no artifact: finished, nothing written, not even its
    # operative config and description (they describe what made the results).
    training.Training(manager(copy_base, ["Training.log_every = 5"])).train()
    assert files(copy_base) == after
    assert "Training.log_every = 5" not in open(first.get_validation_file_path()[:-4] + ".gin").read()

    # A checkpoint damaged inside (same size, bytes flipped): its recorded digest no longer matches.
    decoder = first.get_decoder_paths()[1] + artifacts.CHECKPOINT_SUFFIX
    good = open(decoder, "rb").read()
    data = bytearray(good)
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    open(decoder, "wb").write(bytes(data))
    with pytest.raises(ValueError, match=r"P1.0.0.2_T2_S1_gan.weights.h5 is not the file that was written"):
        training.Training(manager(copy_base)).train()
    open(decoder, "wb").write(good)

    # A config that binds other values under the same parameter index would reuse artifacts made with the old
    # ones: the error names the binding, both values and the index to change.
    other = manager(copy_base, ["TrainManager.lr_initial_value_incremental = 0.5"])
    other_decoder = other.get_decoder_paths()[1]
    with pytest.raises(ValueError, match=r"lr_initial_value_incremental = .*0\.5.*parameters_incremental_index"):
        training.Training(other).train()
    assert artifacts.checkpoint_exists(other_decoder)  # untouched
    # FINE_TUNING_DISJOINT given DISJOINT's incremental index: the mixed labels it would reuse were made with
    # replay (interleave_ratio_old 4 in DISJOINT), which it does not have.
    fine_tuning = manager(copy_base, ["TrainManager.parameters_incremental_index = 2"], config="FINE_TUNING_DISJOINT")
    with pytest.raises(ValueError, match="interleave_ratio_old"):
        training.Training(fine_tuning).train()
    # A step-0 value under the same first-step index names the first-step index.
    steps = manager(copy_base, ["TrainManager.training_steps_per_class = 3"])
    with pytest.raises(ValueError, match=r"training_steps_per_class = 3.*parameters_fs_index"):
        training.Training(steps).train()
    seeded = manager(copy_base, ["Training.seed = 5"])
    with pytest.raises(ValueError, match=r"Training.seed = 5"):
        training.Training(seeded).train()


def test_records_round_trip_and_a_corrupt_record_is_named(tmp_path):
    path = str(tmp_path / "checkpoints" / "decoders" / "P1.0_E10")
    artifacts.write_record(path, {"TrainManager.dataset_mean": (1.0, 2.0), "Training.seed": 0})
    artifacts.check_record(path, {"TrainManager.dataset_mean": [1.0, 2.0], "Training.seed": 0, "new": 1},
                           lambda name: "X")
    with pytest.raises(ValueError, match=r"Training.seed = 0.*Training.seed = 1.*change X"):
        artifacts.check_record(path, {"Training.seed": 1}, lambda name: "X")
    artifacts.check_record(str(tmp_path / "none"), {"Training.seed": 1}, lambda name: "X")  # no record: reused
    with open(artifacts.record_path(path), "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="P1.0_E10.made.json"):
        artifacts.check_record(path, {"Training.seed": 0}, lambda name: "X")


def test_an_artifact_killed_before_its_seal_is_sealed_on_reuse(tmp_path):
    """A run killed between an artifact's rename and seal_record leaves a record without digest: the first reuse
    seals it, so that damage after that is found (it used to be reused unchecked for good)."""
    path = str(tmp_path / "data" / "mixed" / "train_disjoint_16-20.tfrecord")
    made = {"Training.seed": 0}
    artifacts.write_record(path, made)
    artifacts.write_bytes(path, b"whole file")  # renamed complete, then killed before seal_record
    with open(artifacts.record_path(path)) as f:
        assert "sha256" not in json.load(f)
    artifacts.check_record(path, made, lambda name: "X")
    with open(artifacts.record_path(path)) as f:
        assert set(json.load(f)["sha256"]) == {"train_disjoint_16-20.tfrecord"}
    with open(path, "r+b") as f:  # the same size, other bytes
        f.write(b"W")
    with pytest.raises(ValueError, match="train_disjoint_16-20.tfrecord is not the file that was written"):
        artifacts.check_record(path, made, lambda name: "X")
