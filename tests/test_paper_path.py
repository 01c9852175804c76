"""The paper's path script (benchmarks/bench_paper_path.py) with a tiny network: a VOC-layout folder through
prepare_data.py, then main.py --benchmark voc with an original config, each as its own command."""
import json
import os

import numpy as np
from PIL import Image

from benchmarks import bench_paper_path


def test_voc_folder_has_every_class_in_both_splits(tmp_path):
    root = bench_paper_path.make_voc(str(tmp_path / "VOC2012"), 20, 20, bench_paper_path.SMALL_SIZE)
    for split in ("train", "val"):
        with open(os.path.join(root, "ImageSets", "Segmentation", split + ".txt")) as f:
            ids = f.read().split()
        classes = set()
        for image_id in ids:
            label = Image.open(os.path.join(root, "SegmentationClassAug", image_id + ".png"))
            image = Image.open(os.path.join(root, "JPEGImages", image_id + ".jpg"))
            assert label.mode == "L" and label.size == image.size == bench_paper_path.SMALL_SIZE
            classes |= set(np.unique(np.asarray(label)).tolist())
        assert classes == set(range(21)) | {255}, split


def test_the_paper_path_runs_every_command_and_validates_every_step(tmp_path):
    out = bench_paper_path.paper_path(str(tmp_path / "run"), "DISJOINT", "ADD_FIVE_TWO_TIMES", n_train=20, n_val=20,
                                      small=True)
    assert out["steps"] == [0, 1, 2]
    assert set(out["seconds"]) == {"VOC folder and replay images", "prepare_data.py", "main.py"}
    assert out["phases"]["experiments: helpers"] > 0  # 10-5-5 trains a helper for classes 11-15
    with open(out["results"][:-len(".txt")] + ".json") as f:
        description = json.load(f)
    assert (description["config"], description["test_type"], description["replay_source"]) == (
        "DISJOINT", "ADD_FIVE_TWO_TIMES", "gan")
    with open(out["results"][:-len(".txt")] + ".gin") as f:
        operative = f.read()
    assert "training_steps_per_class_incremental = 1" in operative
    assert "lr_initial_value = 0.0005" in operative  # the original config's own values otherwise
