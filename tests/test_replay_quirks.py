"""The original's replay quirks (README "Behaviours of the original"): labelled replay and mixed labels went
through two image folders, paired by position in two unsorted directory listings (Training.folder_pairing), and
the replay labelling's temporary folder kept the files of earlier classes (training.replay_leftovers)."""
import hashlib
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

import data_loader
import embedded_benchmark  # noqa: F401  (registers embedded.*, as the fixtures need it, before gin locks)
import model
import training
from conftest import ROOT, TINY_BINDINGS, record_bytes
from train_manager import TrainManager

SETUP = "ADD_FIVE_TWO_TIMES"  # 10-5-5: classes 1..10 by the step-0 model, 11..15 by one helper
HASH = 'Training.folder_pairing = "hash_order"'


def manager(base, extra=()):
    gin.clear_config()
    gin.parse_config_files_and_bindings([os.path.join(ROOT, "config", "DISJOINT.gin")],
                                        TINY_BINDINGS + [f'TrainManager.base_folder_path = "{base}"'] + list(extra))
    return TrainManager(test_type=SETUP, replay_source="gan")


def decoded(png):
    return tf.io.decode_png(png).numpy()[..., 0]


def test_folder_pairs():
    """creation_order: each image with its own label. hash_order: the i-th name of the images' listing with
    the i-th of the labels', each listing the names sorted by MD5 (str(i).zfill(digits) + extension)."""
    assert training.folder_pairs(5, "creation_order") == [(i, i) for i in range(5)]
    for digits, name in ((0, "{}"), (4, "{:04d}")):
        pairs = training.folder_pairs(300, "hash_order", digits)
        images, labels = zip(*pairs)
        for listing, extension in ((images, "jpg"), (labels, "png")):
            names = [name.format(i) + "." + extension for i in range(300)]
            assert [names[i] for i in listing] == sorted(names, key=lambda n: hashlib.md5(n.encode()).digest())
        assert sum(i == j for i, j in pairs) < 10  # a random pairing keeps about one of them
    assert training.folder_pairs(300, "hash_order", 0) != training.folder_pairs(300, "hash_order", 4)
    assert training.folder_pairs(0, "hash_order") == []
    with pytest.raises(ValueError, match="folder_pairing: 'sorted' is not one of"):
        training.folder_pairs(3, "sorted")


def test_the_switch_is_a_binding_validated_and_tags_replay_and_later_names(tmp_path):
    default = manager(tmp_path)
    m = manager(tmp_path, [HASH])
    t = training.Training(m)
    assert t.folder_pairing == "hash_order"
    tag = "__folder_pairing-hash_order"
    assert m.get_encoder_path() == default.get_encoder_path()  # step 0 and helpers are shared
    assert m.get_helper_out_paths() == default.get_helper_out_paths()
    assert all(p.endswith(tag + ".tfrecord") for p in m.get_replay_output_paths())
    assert m.get_mixed_train_paths()[1].endswith(tag + ".tfrecord")
    assert m.get_decoder_paths()[1].endswith(tag)
    with pytest.raises(ValueError, match="Training.folder_pairing: 'ext4' is not one of"):
        training.Training(manager(tmp_path), folder_pairing="ext4")


def _label_both_ways(base, m, seg, source):
    """{pairing: records of the labelled replay of `source`}."""
    out = {}
    for pairing in training.FOLDER_PAIRINGS:
        path = str(base / f"labelled_{pairing}.tfrecord")
        training.Training(m, folder_pairing=pairing)._label_replay(seg, source, path, str(base / "debug" / pairing))
        out[pairing] = record_bytes(path)
    return out


def test_replay_hash_order_gives_image_k_the_label_of_its_listing_partner(copy_base):
    m = manager(copy_base)
    seg = model.Segmenter(21)
    source = str(copy_base / "data" / "replay_images" / "gan" / "01.tfrecord")
    out = _label_both_ways(copy_base, m, seg, source)
    own = out["creation_order"]
    # The default keeps the pairing: record k is source image k with the label predicted for it.
    images = np.stack([s["rgb_input"].numpy() for s in data_loader.load_tfrecord(source, "images")])
    predicted = seg.predict_ids(images.astype(np.float32)).numpy()
    assert len(own) == len(images) == 4
    for k, (_, label) in enumerate(own):
        np.testing.assert_array_equal(decoded(label), predicted[k])
    # hash_order: record k holds image p(k) and label q(k) of the two listings ("{i}.jpg", "{i}.png").
    pairs = training.folder_pairs(len(own), "hash_order", digits=0)
    assert out["hash_order"] == [(own[i][0], own[j][1]) for i, j in pairs]
    assert any(own[i][1] != own[j][1] for i, j in pairs)  # some image really gets another one's label


def test_mixed_labels_hash_order_uses_the_four_digit_names(copy_base):
    m = manager(copy_base)
    previous = model.Segmenter(21)
    source = m.get_train_paths()[1]
    out = {}
    for pairing in training.FOLDER_PAIRINGS:
        path = str(copy_base / f"mixed_{pairing}.tfrecord")
        training.Training(m, folder_pairing=pairing)._mix_labels(previous, source, path)
        out[pairing] = record_bytes(path)
    own = out["creation_order"]
    samples = list(data_loader.load_tfrecord(source, "validation"))
    assert len(own) == len(samples) > 10
    for (_, label), sample in zip(own, samples):  # the default: each image's own label, mixed
        prediction = previous.predict_ids(sample["input"][None])[0].numpy()
        np.testing.assert_array_equal(decoded(label), training.mix_labels(sample["label"].numpy(), prediction))
    pairs = training.folder_pairs(len(own), "hash_order", digits=4)  # the original's "0007.jpg" / "0007.png"
    assert pairs != training.folder_pairs(len(own), "hash_order", digits=0)
    assert out["hash_order"] == [(own[i][0], own[j][1]) for i, j in pairs]
    assert sum(own[i][1] != own[j][1] for i, j in pairs) > len(own) // 2


def test_replay_leftovers_rule():
    assert training.replay_leftovers([100, 80, 120, 100, 40, 120]) == [0, 20, 0, 20, 80, 0]
    assert training.replay_leftovers([5, 5, 5]) == [0, 0, 0]
    assert training.replay_leftovers([]) == []


def test_replay_leftovers_counted_per_temporary_folder(copy_base, monkeypatch):
    """Classes 1..10 (step-0 model) share one temporary folder, and so do the helper's classes 11..15; each
    group starts from an empty folder. The tiny world has 4 replay images a class; here classes 3, 4, 5, 12 and
    13 have 2, 6, 3, 2 and 3."""
    gan = copy_base / "data" / "replay_images" / "gan"
    for c, n in {3: 2, 4: 6, 5: 3, 12: 2, 13: 3}.items():
        path = str(gan / f"{c:02d}.tfrecord")
        kept = [r.numpy() for r in tf.data.TFRecordDataset(path)]
        data_loader.write_tfrecord(path, (kept * 2)[:n])
    m = manager(copy_base)
    t = training.Training(m)
    leftovers = {c: t._replay_leftovers(path) for c, path in enumerate(m.get_replay_output_paths(), start=1)}
    # 1..10 hold 4, 4, 2, 6, 3, 4, 4, 4, 4, 4 images; 11..15 hold 4, 2, 3, 4, 4 (class 4's 6 files are gone).
    assert leftovers == {1: 0, 2: 0, 3: 2, 4: 0, 5: 3, 6: 2, 7: 2, 8: 2, 9: 2, 10: 2,
                         11: 0, 12: 2, 13: 1, 14: 0, 15: 0}
    assert t._replay_leftovers(str(copy_base / "another.tfrecord")) == 0
    # Labelling says so, and writes the class's own images only.
    warnings = []
    monkeypatch.setattr(training.logging, "warning", lambda message, *args: warnings.append(message % args))
    output = m.get_replay_output_paths()[2]
    t._label_replay(model.Segmenter(21), m.get_replay_source_no_helper_paths()[2], output, str(copy_base / "debug"))
    assert len(record_bytes(output)) == 2
    assert len(warnings) == 1 and "03.tfrecord holds 2 images, 2 fewer" in warnings[0]
