"""TrainManager: names, paths, helper groups and class steps for every config x setup x replay source.

Expectations are derived here from SPEC.md's rules, written independently of train_manager.py.
"""
import itertools
import os
import re

import gin
import pytest

import methods
import train_manager
from train_manager import TrainManager

methods.load_all()  # the methods' gin configurables (lwf.*, ilt.*, ...), which the baselines' configs bind

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ["SEQUENTIAL", "DISJOINT", "OVERLAPPED", "JOINT", "FINE_TUNING", "FINE_TUNING_DISJOINT",
           "FINE_TUNING_DISJOINT_NO_MIX", "FINE_TUNING_OVERLAPPED", "FINE_TUNING_OVERLAPPED_NO_MIX"]
# SPEC.md: config -> (indices c.fs.h.i, first step, incremental, mix, steps fs, steps inc, ratio old, helpers)
SPEC_CONFIGS = {
    "SEQUENTIAL": ((1, 0, 0, 1), "sequential", "sequential", False, 1000, 1000, 4, "sequential"),
    "DISJOINT": ((1, 0, 0, 2), "sequential", "disjoint", True, 1000, 1000, 4, "sequential"),
    "OVERLAPPED": ((3, 1, 0, 0), "overlapped", "overlapped", True, 1500, 1500, 4, "overlapped"),
    "JOINT": ((3, 0, 0, 0), "sequential", "sequential", False, 1000, 1000, 4, "sequential"),
    "FINE_TUNING": ((1, 0, 0, 4), "sequential", "sequential", False, 1000, 1000, 0, "sequential"),
    "FINE_TUNING_DISJOINT": ((1, 0, 0, 5), "sequential", "disjoint", True, 1000, 1000, 0, "sequential"),
    "FINE_TUNING_DISJOINT_NO_MIX": ((1, 0, 0, 6), "sequential", "disjoint", False, 1000, 1000, 0,
                                    "sequential"),
    "FINE_TUNING_OVERLAPPED": ((2, 1, 0, 1), "overlapped", "overlapped", True, 1500, 1500, 0, "overlapped"),
    "FINE_TUNING_OVERLAPPED_NO_MIX": ((2, 1, 0, 2), "overlapped", "overlapped", False, 1500, 1500, 0,
                                      "overlapped"),
}
SETUPS = {  # index: (test_type, structure)
    0: ("ADD_ONE_ONE_TIME", [19, 1]), 1: ("ADD_FIVE_ONE_TIME", [15, 5]),
    2: ("ADD_FIVE_TWO_TIMES", [10, 5, 5]), 3: ("ADD_ONE_FIVE_TIMES", [15] + [1] * 5),
    4: ("ADD_TEN_ONE_TIME", [10, 10]), 5: ("ADD_TWO_FIVE_TIMES", [10] + [2] * 5),
    6: ("ADD_ONE_TEN_TIMES", [10] + [1] * 10), 7: ("JOINT", [20]),
}
SOURCES = [None, "gan", "flickr"]


def make(config, test_type, source, *bindings):
    gin.clear_config()
    gin.parse_config_files_and_bindings([os.path.join(ROOT, "config", config + ".gin")], list(bindings))
    return TrainManager(test_type=test_type, replay_source=source)


def expected(config, test_index, source, one_class=False):
    """Everything TrainManager should say, from SPEC.md's rules."""
    (c, fs, h, i), fs_type, inc_type, _, _, _, _, helper_type = SPEC_CONFIGS[config]
    structure = SETUPS[test_index][1]
    n0 = structure[0]
    bounds = list(itertools.accumulate(structure))
    steps = [list(range(b - n + 1, b + 1)) for b, n in zip(bounds, structure)]
    grp = lambda cl: str(cl[0]) if len(cl) == 1 else f"{cl[0]}-{cl[-1]}"
    inc = structure[1:]
    helper_size = 0 if len(inc) <= 1 else (1 if one_class else inc[0])
    replay = source is not None and test_index != 7
    helper_classes = list(range(n0 + 1, bounds[-2] + 1)) if replay and len(bounds) > 1 else []
    helpers = ([helper_classes[k:k + helper_size] for k in range(0, len(helper_classes), helper_size)]
               if helper_size and replay else [])
    suffix = "_1" if one_class else ""
    decoders = [f"P{c}.{fs}_E{n0}"]
    if source is not None:
        decoders += [f"P{c}.{fs}.{h}.{i}_T{test_index}_S{s}_{source}{suffix}" for s in range(1, len(structure))]
    result_name = f"{config} (T{test_index}_P{c}.{fs}.{h}.{i}" + (f"_{source}" if source else "") + suffix + ")"
    no_helper_names = [f"P{c}.{fs}.{h}_E{n0}_H0_C{k}_{source}" for k in range(1, n0 + 1)] if replay else []
    helper_names = [[f"P{c}.{fs}.{h}_E{n0}_H{helper_size}_C{k}_{source}" for k in g] for g in helpers]
    return dict(
        encoder=f"./checkpoints/encoders/P{c}.{fs}_E{n0}",
        decoders=["./checkpoints/decoders/" + d for d in decoders],
        helpers=[f"./checkpoints/helper_decoders/P{c}.{fs}.{h}_E{n0}_C{g[0]}-{g[-1]}" for g in helpers],
        helper_classes=helpers,
        helper_size=helper_size,
        train=[f"./data/training_first_step/train_{fs_type}_{grp(steps[0])}.tfrecord"] +
              [f"./data/training_incremental/train_{inc_type}_{grp(s)}.tfrecord" for s in steps[1:]],
        # The original's name: protocol, classes and parameter indices only (shared by setups and sources).
        mixed=[None] + [f"./data/training_incremental/mixed/train_{inc_type}_{grp(s)}_P{c}.{fs}.{h}.{i}.tfrecord"
                        for s in steps[1:]],
        # TrainManager.mixed_labels_per_experiment = True: named after the decoder of the setup, step and source
        # whose model made the labels (the switch's tag ends it, as it ends that decoder's name).
        mixed_own=[None] + [f"./data/training_incremental/mixed/train_{inc_type}_{grp(s)}_P{c}.{fs}.{h}.{i}"
                            f"_T{test_index}_S{k}_{source}{suffix}__mixed_labels_per_experiment-True.tfrecord"
                            for k, s in enumerate(steps[1:], start=1)],
        helper_train=[f"./data/training_incremental/train_{helper_type}_{grp(g)}.tfrecord" for g in helpers],
        val=[[f"./data/validation/val_{k}.tfrecord" for k in range(1, s[-1] + 1)] for s in steps],
        results=f"./outputs/{result_name}" + suffix + ".txt",
        replay_out=["./data/replay_images_and_labels/" + n + ".tfrecord"
                    for n in no_helper_names + [x for g in helper_names for x in g]],
        replay_in_no_helper=[f"./data/replay_images/{source}/{k:02d}.tfrecord" for k in range(1, n0 + 1)]
        if replay else [],
        replay_in_helper=[[f"./data/replay_images/{source}/{k:02d}.tfrecord" for k in g] for g in helpers],
        steps=steps,
    )


@pytest.mark.parametrize("config", CONFIGS)
def test_every_setup_and_source(config):
    """9 configs x 8 setups x 3 sources: every name, path and class group against SPEC.md's rules."""
    for test_index, source in itertools.product(range(8), SOURCES):
        test_type = SETUPS[test_index][0]
        m = make(config, test_type, source)
        e = expected(config, test_index, source)
        where = f"{config} {test_type} {source}"
        assert m.get_test_index() == test_index, where
        assert m.get_test_structure() == SETUPS[test_index][1], where
        assert m.get_encoder_path() == e["encoder"], where
        assert m.get_decoder_paths() == e["decoders"], where
        assert m.get_helper_out_paths() == e["helpers"], where
        assert m.get_helpers_classes() == e["helper_classes"], where
        assert m.get_helper_size() == e["helper_size"], where
        assert m.get_train_paths() == e["train"], where
        assert m.get_mixed_train_paths() == e["mixed"], where
        own = make(config, test_type, source, "TrainManager.mixed_labels_per_experiment = True")
        assert own.get_mixed_train_paths() == e["mixed_own"], where
        assert m.get_helper_train_paths() == e["helper_train"], where
        assert m.get_val_paths() == e["val"], where
        assert m.get_validation_file_path() == e["results"], where
        assert m.get_replay_output_paths() == e["replay_out"], where
        assert m.test_structure_to_steps() == e["steps"], where
        assert m.get_encoder_pretrained_path() == "./checkpoints/encoders/pretrained"
        if source is None:
            assert m.get_replay_source_helper_paths() is None
            with pytest.raises(ValueError, match="replay_source"):
                m.get_replay_source_no_helper_paths()
        else:
            assert m.get_replay_source_no_helper_paths() == e["replay_in_no_helper"], where
            assert m.get_replay_source_helper_paths() == e["replay_in_helper"], where
        for step in range(1, len(e["steps"])):
            old = [0] + [k for s in e["steps"][:step] for k in s]
            assert m.get_old_classes_for_incremental_step(step) == old, where
            assert m.get_new_classes_for_incremental_step(step) == e["steps"][step], where
            assert m.get_replay_tfrecords_for_step(step) == e["replay_out"][:len(old) - 1], where


def test_issue_example_disjoint_10_1_gan():
    m = make("DISJOINT", "ADD_ONE_TEN_TIMES", "gan")
    names = m.get_decoders_names()
    assert names[0] == "P1.0_E10"
    assert names[1:] == [f"P1.0.0.2_T6_S{s}_gan" for s in range(1, 11)]
    assert m.get_helper_names() == [f"P1.0.0_E10_C{k}-{k}" for k in range(11, 20)]
    assert m.get_validation_file_path() == "./outputs/DISJOINT (T6_P1.0.0.2_gan).txt"
    assert m.get_replay_no_helper_tfrecords_names()[0] == "P1.0.0_E10_H0_C1_gan"
    assert m.get_replay_helper_tfrecords_names()[0] == ["P1.0.0_E10_H1_C11_gan"]


def test_one_class_helpers_suffix():
    m = make("SEQUENTIAL", "ADD_TWO_FIVE_TIMES", "flickr", "TrainManager.helper_decoders_one_class = True")
    e = expected("SEQUENTIAL", 5, "flickr", one_class=True)
    assert m.get_helper_size() == 1
    assert m.get_helpers_classes() == [[k] for k in range(11, 19)]
    assert m.get_decoder_paths() == e["decoders"]
    assert m.get_decoder_paths()[1].endswith("_T5_S1_flickr_1")
    # The original appends "_1" inside the name and again to the file name; kept for compatibility.
    assert m.get_validation_file_path() == "./outputs/SEQUENTIAL (T5_P1.0.0.1_flickr_1)_1.txt"
    assert m.get_replay_output_paths() == e["replay_out"]


def test_parameters_and_mix_labels_follow_spec():
    for config, (idx, fs_type, inc_type, mix, fs_steps, inc_steps, ratio_old, helper_type) in \
        SPEC_CONFIGS.items():
        m = make(config, "ADD_FIVE_ONE_TIME", "gan")
        p = m.get_parameters()
        assert m.parameter_to_str() == ".".join(map(str, idx))
        assert (m.dataset_type_first_step, m.dataset_type_incremental, m.dataset_type_helpers) == \
            (fs_type, inc_type, helper_type), config
        assert m.mix_labels() == (mix and inc_type in ("disjoint", "overlapped")), config
        assert (p["training_steps_per_class"], p["training_steps_per_class_incremental"]) == \
            (fs_steps, inc_steps), config
        assert (p["interleave_ratio_old"], p["interleave_ratio_new"]) == (ratio_old, 4), config
        assert (p["batch_size"], p["n_classes"], p["train_image_size"]) == (4, 21, 321)
        assert p["dataset_mean"] == [104.00698793, 116.66876762, 122.67891434]
        assert (p["momentum"], p["decay_power"], p["l2_decay"], p["start_decay_step"]) == (0.9, 0.9, 1e-4, 0)
        assert (p["lr_initial_value_helper"], p["lr_final_value_helper"]) == (2e-4, 2e-6)
        expected_inc_lr = (1e-4, 1e-6) if config == "JOINT" else (5e-4, 5e-6)
        assert (p["lr_initial_value_incremental"], p["lr_final_value_incremental"]) == expected_inc_lr
        assert m.get_validate() is True and m.base_folder_path == "."


def test_typed_groups_equal_the_original_dictionary():
    for config in CONFIGS:
        m = make(config, "ADD_FIVE_ONE_TIME", "gan")
        p = m.get_parameters()
        groups = {"": m.common, "_first": m.first_step, "_helper": m.helper, "_incremental": m.incremental}
        for suffix, group in groups.items():
            for field, value in vars(group).items():
                key = {"protocol": None, "mix_labels": None, "dataset_mean": "dataset_mean", "method": None,
                       "train_encoder": None}.get(field, field)  # the last two: not the original's
                if key is None:
                    continue
                if suffix in ("_helper", "_incremental") and key in ("lr_initial_value", "lr_final_value",
                                                                     "training_steps_per_class",
                                                                     "decay_steps_per_class"):
                    key += suffix
                assert (list(value) if key == "dataset_mean" else value) == p[key], (config, field)
        assert (m.first_step.protocol, m.helper.protocol, m.incremental.protocol) == \
            (m.dataset_type_first_step, m.dataset_type_helpers, m.dataset_type_incremental)
        assert m.incremental.mix_labels == bool(m.mix_labels_incremental)


def test_stage_schedules_are_the_originals_formulas():
    """training.py of the original: step 0 trains N0 x steps per class and decays over (N0 + 1) x decay per
    class; a helper of k classes k x steps, decay (k + 1) x; an incremental step of n classes n x both."""
    m = make("DISJOINT", "ADD_TWO_FIVE_TIMES", "gan", "TrainManager.training_steps_per_class = 7",
             "TrainManager.decay_steps_per_class = 11", "TrainManager.training_steps_per_class_helper = 3",
             "TrainManager.decay_steps_per_class_helper = 5", "TrainManager.training_steps_per_class_incremental = 2",
             "TrainManager.decay_steps_per_class_incremental = 13")
    assert m.first_step_schedule() == train_manager.Schedule(70, 5e-4, 5e-6, 121)
    assert m.helper_schedule(2) == train_manager.Schedule(6, 2e-4, 2e-6, 15)
    assert m.incremental_schedule(2) == train_manager.Schedule(4, 5e-4, 5e-6, 26)


@pytest.mark.parametrize("config,test_type,source,replays", [
    ("DISJOINT", "ADD_FIVE_ONE_TIME", "gan", True), ("SEQUENTIAL", "ADD_ONE_TEN_TIMES", "flickr", True),
    ("DISJOINT", "ADD_FIVE_ONE_TIME", None, False), ("FINE_TUNING_DISJOINT", "ADD_FIVE_ONE_TIME", "gan", False),
    ("JOINT", "JOINT", "gan", False)])
def test_uses_replay(config, test_type, source, replays):
    assert make(config, test_type, source).uses_replay() is replays


def test_original_style_config_parses(tmp_path):
    """Tabs, trailing comments and '#PARAMETERS' headers, as the original writes its configs."""
    text = open(os.path.join(ROOT, "config", "FINE_TUNING_OVERLAPPED.gin")).read()
    text = re.sub(r" +#", "\t\t\t\t#", text) + "\n\t\n"
    path = tmp_path / "orig.gin"
    path.write_text(text)
    gin.clear_config()
    gin.parse_config_file(str(path))
    m = TrainManager(test_type="ADD_TEN_ONE_TIME", replay_source="flickr")
    assert m.get_validation_file_name() == "FINE_TUNING_OVERLAPPED (T4_P2.1.0.1_flickr)"


def test_misspelt_binding_fails_at_parse(tmp_path):
    path = tmp_path / "bad.gin"
    path.write_text(open(os.path.join(ROOT, "config", "DISJOINT.gin")).read() +
                    "\nTrainManager.interleave_ratio_olld = 4\n")
    gin.clear_config()
    with pytest.raises(ValueError, match="interleave_ratio_olld"):
        gin.parse_config_file(str(path))


@pytest.mark.parametrize("kwargs, match", [
    (dict(test_type="ADD_SIX", replay_source="gan"), "ADD_SIX.*ADD_ONE_ONE_TIME"),
    (dict(test_type="ADD_FIVE_ONE_TIME", replay_source="web"), "'web'.*gan"),
])
def test_bad_constructor_arguments(kwargs, match):
    gin.clear_config()
    gin.parse_config_file(os.path.join(ROOT, "config", "DISJOINT.gin"))
    with pytest.raises(ValueError, match=match):
        TrainManager(**kwargs)


def test_unknown_protocol_and_missing_binding():
    with pytest.raises(ValueError, match="dataset_type_incremental.*'disjointed'.*overlapped"):
        make("DISJOINT", "ADD_FIVE_ONE_TIME", "gan", 'TrainManager.dataset_type_incremental = "disjointed"')
    with pytest.raises(ValueError, match="dataset_type_first_step.*'disjoint'"):
        make("DISJOINT", "ADD_FIVE_ONE_TIME", "gan", 'TrainManager.dataset_type_first_step = "disjoint"')
    text = open(os.path.join(ROOT, "config", "DISJOINT.gin")).read()
    gin.clear_config()
    gin.parse_config(re.sub(r"TrainManager.batch_size = 4", "", text))
    with pytest.raises(ValueError, match=r"missing gin binding\(s\) TrainManager.batch_size;"):
        TrainManager(test_type="ADD_FIVE_ONE_TIME", replay_source="gan")


def test_unequal_incremental_steps_are_rejected(monkeypatch):
    monkeypatch.setattr(TrainManager, "TESTS", TrainManager.TESTS + [("ODD", [10, 5, 3])])
    with pytest.raises(ValueError, match=r"unequal sizes \[5, 3\]"):
        make("DISJOINT", "ODD", "gan")


def test_short_names():
    want = ["19-1", "15-5", "10-5-5", "15-1", "10-10", "10-2", "10-1", "joint"]
    got = [make("DISJOINT", SETUPS[k][0], "gan").short_name() for k in range(8)]
    assert got == want


def test_checks_and_find_step_see_only_complete_artifacts(tmp_path):
    m = make("DISJOINT", "ADD_FIVE_TWO_TIMES", "gan", f'TrainManager.base_folder_path = "{tmp_path}"')
    assert not m.check_encoder() and not m.check_decoders() and not m.check_helpers()
    assert m.find_step() == 0
    dec = m.get_decoder_paths()
    os.makedirs(os.path.dirname(dec[0]))
    open(dec[0] + ".weights.h5.tmp-123", "w").close()  # an interrupted write does not count
    assert m.find_step() == 0
    open(dec[0] + train_manager.CHECKPOINT_SUFFIX, "w").close()
    assert m.find_step() == 1
    open(dec[1] + ".index", "w").close()  # a TF1 checkpoint of the original counts
    assert m.find_step() == 2 and not m.check_decoders()
    open(dec[2] + train_manager.CHECKPOINT_SUFFIX, "w").close()
    assert m.find_step() == -1 and m.check_decoders()
    assert not m.check_labels_no_helper()
    assert not m.exists_mixed_tfrecord(0) and not m.exists_mixed_tfrecord(1)
    os.makedirs(os.path.dirname(m.get_mixed_train_paths()[1]))
    open(m.get_mixed_train_paths()[1], "w").close()
    assert m.exists_mixed_tfrecord(1)
    with pytest.raises(ValueError, match="step 3 out of range 1..2"):
        m.get_new_classes_for_incremental_step(3)


# The field's baselines (README "Baselines"): config -> (method, trains the encoder, incremental index). Each
# reuses the step-0 networks of the RECALL config of its protocol: the same common and first-step indices.
METHOD_CONFIGS = {"LWF": ("lwf", False, 7), "ILT": ("ilt", True, 8), "ILT_FROZEN": ("ilt", False, 9),
                  "MIB": ("mib", True, 10), "PLOP": ("plop", True, 11)}


@pytest.mark.parametrize("protocol", ["DISJOINT", "OVERLAPPED"])
def test_baseline_configs_share_step_0_and_name_an_encoder_per_step(tmp_path, protocol):
    recall = make(protocol, "ADD_TWO_FIVE_TIMES", "gan")
    assert (recall.incremental.method, recall.incremental.train_encoder) == ("recall", False)  # the defaults
    indices = set()
    for name, (method, trains, i) in METHOD_CONFIGS.items():
        m = make(f"{name}_{protocol}", "ADD_TWO_FIVE_TIMES", "gan", f'TrainManager.base_folder_path = "{tmp_path}"')
        where = f"{name}_{protocol}"
        assert (m.incremental.method, m.incremental.train_encoder, m.parameters_incremental_index) == \
            (method, trains, i), where
        assert (m.parameters_common_index, m.parameters_fs_index, m.first_step) == \
            (recall.parameters_common_index, recall.parameters_fs_index, recall.first_step), where
        assert m.get_encoder_name() == recall.get_encoder_name() and m.common == recall.common, where
        assert m.dataset_type_incremental == protocol.lower() and not m.mix_labels() and not m.uses_replay(), where
        indices.add(m.parameter_to_str())
        decoders, encoders = m.get_decoder_paths(), m.get_encoder_paths()
        assert len(encoders) == len(decoders) == 6 and encoders[0] == m.get_encoder_path()
        if trains:  # checkpoints/encoders/<the decoder's name>
            assert encoders[1:] == [d.replace("/decoders/", "/encoders/") for d in decoders[1:]], where
            assert encoders[3].endswith(f"/checkpoints/encoders/P{m.parameter_to_str()}_T5_S3_gan")
        else:
            assert encoders == [m.get_encoder_path()] * 6, where
    assert len(indices) == len(METHOD_CONFIGS)  # every baseline has its own artifacts


def test_find_step_waits_for_the_encoder_of_a_step_that_trains_it(tmp_path):
    m = make("MIB_DISJOINT", "ADD_FIVE_TWO_TIMES", "gan", f'TrainManager.base_folder_path = "{tmp_path}"')
    for folder in ("encoders", "decoders"):
        os.makedirs(tmp_path / "checkpoints" / folder)
    for path in m.get_decoder_paths():
        open(path + train_manager.CHECKPOINT_SUFFIX, "w").close()
    assert m.find_step() == 1  # step 0's encoder is not asked for (the original's rule); step 1's is
    open(m.get_encoder_paths()[1] + train_manager.CHECKPOINT_SUFFIX, "w").close()
    assert m.find_step() == 2
    open(m.get_encoder_paths()[2] + ".index", "w").close()
    assert m.find_step() == -1


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="method: unknown method 'ewc'.*'recall'"):
        make("DISJOINT", "ADD_ONE_ONE_TIME", "gan", 'TrainManager.method = "ewc"')
    with pytest.raises(ValueError, match="train_encoder_incremental: expected True or False"):
        make("DISJOINT", "ADD_ONE_ONE_TIME", "gan", "TrainManager.train_encoder_incremental = 1")


@pytest.mark.parametrize("binding, expected", [
    ("TrainManager.training_steps_per_class = -3", "training_steps_per_class = -3: expected an integer >= 1"),
    ("TrainManager.training_steps_per_class_incremental = 0", "training_steps_per_class_incremental = 0"),
    ("TrainManager.decay_steps_per_class_helper = 2.5", "decay_steps_per_class_helper = 2.5"),
    ("TrainManager.batch_size = 0", "batch_size = 0: expected an integer >= 1"),
    ("TrainManager.train_image_size = 0", "train_image_size = 0"),
    ("TrainManager.lr_initial_value = 0", "lr_initial_value = 0: expected a number > 0"),
    ("TrainManager.lr_final_value_incremental = -1e-6", "lr_final_value_incremental = -1e-06"),
    ("TrainManager.interleave_ratio_old = -1", "interleave_ratio_old = -1"),
    ("TrainManager.dataset_mean = [1, 2]", "dataset_mean = [1, 2]: expected 3 numbers"),
    ("TrainManager.n_classes = 300", "n_classes = 300: expected an integer >= 2 and <= 255"),
    ("TrainManager.momentum = 1.5", "momentum = 1.5"),
    ("TrainManager.validate = 'yes'", "validate = 'yes': expected True or False"),
    ("TrainManager.parameters_fs_index = -1", "parameters_fs_index = -1"),
])
def test_bad_binding_values_name_the_binding(binding, expected):
    """A value that would train nothing or nonsense fails at once, naming the binding."""
    with pytest.raises(ValueError, match=re.escape(expected)):
        make("DISJOINT", "ADD_ONE_ONE_TIME", "gan", binding)
    with pytest.raises(ValueError, match="both 0"):
        make("DISJOINT", "ADD_ONE_ONE_TIME", "gan", "TrainManager.interleave_ratio_old = 0",
             "TrainManager.interleave_ratio_new = 0")
