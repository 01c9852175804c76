"""ADE20K end to end on a generated ADEChallengeData2016 folder (tests/ade_folder.py): prepare_data, then tiny
100-50 and 50-50 runs of RECALL with web replay made from a local image folder, and of a baseline, through the
sweep main.py runs; the summary and the plots. Also the ADE20K configs and TrainManager's checks of the dataset."""
import os

import gin
import numpy as np
import pytest
from PIL import Image

from ade_folder import make_ade_folder
from conftest import TINY_BINDINGS
import datasets
import paths
import sweep
from train_manager import TrainManager

ADE_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "ade20k")


@pytest.fixture(scope="module")
def ade_base(tmp_path_factory):
    """A base folder holding data/ prepared from a generated ADE20K folder and web replay of every class, made
    as flickr/download_flickr.py --to_tfrecord makes it from downloaded class folders."""
    import prepare_data
    from flickr import download_flickr
    root = tmp_path_factory.mktemp("ade")
    ade = make_ade_folder(str(root), per_class=2, size=(24, 32), seed=0)
    data = root / "base" / "data"
    prepare_data.prepare(ade, str(data), dataset="ade20k")
    images_dir = paths.web_images_dir(str(data))
    rng = np.random.default_rng(0)
    for c in datasets.ADE20K.classes:
        folder = paths.web_class_dir(images_dir, c)
        os.makedirs(folder)
        for k in range(2):
            Image.fromarray(rng.integers(0, 255, (20, 28, 3), dtype=np.uint8)).save(os.path.join(folder, f"{k}.jpg"))
    download_flickr.folders_to_tfrecords(images_dir, paths.replay_dir(str(data), "flickr"), datasets.ADE20K.classes)
    return root / "base"


def _manager(config, test_type, source=None, bindings=()):
    gin.clear_config()
    gin.parse_config_files_and_bindings([os.path.join(ADE_CONFIGS, config + ".gin")], list(bindings),
                                        skip_unknown=True)
    try:
        return TrainManager(test_type, source)
    finally:
        gin.clear_config()


def test_the_configs_name_ade20k_setups_and_files():
    m = _manager("OVERLAPPED", "100-10", "flickr")
    assert m.dataset is datasets.ADE20K and m.test_structure == [100, 10, 10, 10, 10, 10]
    assert m.short_name() == "100-10" and m.get_helpers_classes()[0] == list(range(101, 111))
    assert m.get_train_paths()[0].endswith("ade20k/data/training_first_step/train_overlapped_1-100.tfrecord")
    assert [len(v) for v in m.get_val_paths()] == [100, 110, 120, 130, 140, 150]
    assert m.get_validation_file_name() == "OVERLAPPED (T1_P3.1.0.0_flickr)"
    m = _manager("OVERLAPPED", "50-50", "gan")
    assert m.test_structure == [50, 50, 50] and m.short_name() == "50-50"
    assert m.incremental_schedule(50).steps == 50 * 1500  # the original's steps per class, scaled by the classes
    assert _manager("PLOP_OVERLAPPED", "100-5").test_structure == [100] + [5] * 10


@pytest.mark.parametrize("binding, message", [
    ('TrainManager.dataset = "ade"', r"TrainManager.dataset: unknown dataset 'ade'; expected one of \['ade20k', 'voc'\]"),
    ("TrainManager.n_classes = 21", r"n_classes = 21, but TrainManager.dataset = 'ade20k' has 150 classes and "
                                    r"background: expected 151"),
    ('TrainManager.dataset_type_incremental = "disjoint"', r"dataset_type_incremental: unknown protocol 'disjoint' "
                                                           r"on dataset 'ade20k'; expected one of \['overlapped'\]"),
    ("TrainManager.web_replay_classes = [0, 3]", r"web_replay_classes = \[0, 3\]: expected a list of class ids of "
                                                 r"ade20k \(1..150\)"),
])
def test_bad_bindings_are_named(binding, message):
    with pytest.raises(ValueError, match=message):
        _manager("OVERLAPPED", "100-50", "gan", [binding])


def test_a_voc_setup_on_ade20k_is_refused_with_the_setups_it_has():
    with pytest.raises(ValueError, match=r"unknown test_type 'ADD_ONE_ONE_TIME' of dataset 'ade20k'; expected one "
                                         r"of \['100-50', '100-10', '50-50', '100-5', 'JOINT'\]"):
        _manager("OVERLAPPED", "ADD_ONE_ONE_TIME", "gan")


def test_web_replay_classes_read_the_web_source_under_their_own_names():
    plain = _manager("OVERLAPPED", "100-50", "gan")
    m = _manager("OVERLAPPED", "100-50", "gan", ["TrainManager.web_replay_classes = [3, 1]"])
    assert m.web_replay_classes == (1, 3)
    sources = m.get_replay_source_no_helper_paths()
    assert [os.path.basename(os.path.dirname(p)) for p in sources[:4]] == ["flickr", "gan", "flickr", "gan"]
    names = m.get_replay_no_helper_tfrecords_names()
    # a class read from the web is labelled as in a web experiment (the same file); the others as before
    assert names[0] == _manager("OVERLAPPED", "100-50", "flickr").get_replay_no_helper_tfrecords_names()[0]
    assert names[1] == plain.get_replay_no_helper_tfrecords_names()[1]
    # the decoders and results made with them are another experiment's
    assert m.get_validation_file_name().startswith("OVERLAPPED (T0_P3.1.0.0_gan+flickr-")
    assert m.get_decoder_paths()[1] != plain.get_decoder_paths()[1]
    assert m.made_by("incremental")["TrainManager.web_replay_classes"] == [1, 3]
    assert "TrainManager.web_replay_classes" not in plain.made_by("incremental")
    # the labelled replay it shares with the web experiment is recorded as that experiment records it
    assert m.made_by("replay") == _manager("OVERLAPPED", "100-50", "flickr").made_by("replay")


def test_ade20k_runs_recall_with_web_replay_and_a_baseline(ade_base):
    """Tiny 100-50 and 50-50 runs: RECALL (web replay; 50-50 trains a helper for 51-100) and MiB on 100-50 (on
    RECALL's step 0); every step validated, the summary's rows and plots are the setups'."""
    import results
    runs = [("OVERLAPPED", "100-50", "flickr", ()), ("OVERLAPPED", "50-50", "flickr", ()),
            ("MIB_OVERLAPPED", "100-50", "flickr", ())]
    params = TINY_BINDINGS + [f'TrainManager.base_folder_path = "{ade_base}"', "Training.validation_batch = 64"] + [
        f"TrainManager.{name} = 1" for name in (
            "training_steps_per_class", "decay_steps_per_class", "training_steps_per_class_helper",
            "decay_steps_per_class_helper", "training_steps_per_class_incremental",
            "decay_steps_per_class_incremental")]
    records = sweep.experiments(runs, ADE_CONFIGS, params=params)
    assert [r.error for r in records] == [None] * 3
    assert sweep.run(records, jobs=1) == []
    outputs = ade_base / "outputs"
    files = {f for f in os.listdir(outputs) if f.endswith(".txt")}
    assert files == {"OVERLAPPED (T0_P3.1.0.0_flickr).txt", "OVERLAPPED (T2_P3.1.0.0_flickr).txt",
                     "MIB_OVERLAPPED (T0_P3.1.0.10_flickr).txt"}
    blocks = results.parse_results_file(str(outputs / "OVERLAPPED (T2_P3.1.0.0_flickr).txt"))
    assert [b["step"] for b in blocks] == [0, 1, 2]
    helper = os.listdir(ade_base / "checkpoints" / "helper_decoders")
    assert any("_C51-100" in name for name in helper), helper
    rows = results.summarize(str(outputs))
    assert sorted((r["config"], r["setup"]) for r in rows) == [
        ("MIB_OVERLAPPED", "100-50"), ("OVERLAPPED", "100-50"), ("OVERLAPPED", "50-50")]
    plots = os.listdir(outputs / "plots")
    assert any("100-50" in p for p in plots) and any("50-50" in p for p in plots), plots


def test_the_default_ade20k_sweep_and_its_setups():
    """main.py --dataset ade20k: config/ade20k/'s configs on ADE20K's setups, RECALL with both sources, the baselines
    on 100-10 only."""
    import main
    from absl import flags
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["main.py", "--dataset", "ade20k"])
    try:
        config_dir, configs, setups, method_setups = main.selection("ade20k")
        assert flags.FLAGS.benchmark == "ade20k"
    finally:
        flags.FLAGS.unparse_flags()
    assert config_dir == ADE_CONFIGS and setups == ["100-50", "100-10", "50-50", "100-5"]
    assert configs == ["JOINT", "OVERLAPPED", "FINE_TUNING_OVERLAPPED", "ILT_OVERLAPPED", "LWF_OVERLAPPED",
                       "MIB_OVERLAPPED", "PLOP_OVERLAPPED"]
    runs = sweep.plan(configs, setups, ["gan", "flickr"], config_dir, method_test_types=method_setups,
                      dataset="ade20k")
    assert runs[0] == ("JOINT", "JOINT", None, ())
    assert sorted({(c, t) for c, t, _, _ in runs if c.endswith("_OVERLAPPED") and c != "FINE_TUNING_OVERLAPPED"}) == [
        (c, "100-10") for c in ("ILT_OVERLAPPED", "LWF_OVERLAPPED", "MIB_OVERLAPPED", "PLOP_OVERLAPPED")]
    assert len(runs) == 1 + 2 * 4 + 4 + 4


def test_auto_runs_voc_then_ade20k_where_prepared(tmp_path, monkeypatch):
    import main
    monkeypatch.chdir(tmp_path)
    assert main.chosen_benchmarks("auto") == ["embedded"]
    os.makedirs(os.path.dirname(paths.validation_file(paths.data_dir("ade20k"), 1)))
    open(paths.validation_file(paths.data_dir("ade20k"), 1), "w").close()
    assert main.chosen_benchmarks("auto") == ["ade20k"]
    os.makedirs(os.path.dirname(paths.validation_file(paths.data_dir("."), 1)))
    open(paths.validation_file(paths.data_dir("."), 1), "w").close()
    assert main.chosen_benchmarks("auto") == ["voc", "ade20k"]
    assert main.chosen_benchmarks("embedded") == ["embedded"]


def test_a_voc_setup_with_dataset_ade20k_is_a_usage_error(tmp_path):
    import subprocess
    import sys
    root = os.path.dirname(ADE_CONFIGS.rstrip(os.sep).rsplit(os.sep, 1)[0])
    done = subprocess.run([sys.executable, os.path.join(root, "main.py"), "--dataset", "ade20k", "--test_type",
                           "ADD_ONE_ONE_TIME"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "ade20k: --test_type: unknown ['ADD_ONE_ONE_TIME']; expected some of ['100-50'" in done.stderr
    assert "Traceback" not in done.stderr and os.listdir(tmp_path) == []
