"""Tests of the embedded_benchmark package: one reduced build of the whole embedded benchmark, checked phase
by phase.

The world is small (48x48 images, 6 training images per class, one large object per image) so that the
short classifier training still tells the classes apart; the default build uses the world's own sizes.
"""
import json
import os
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf

import gin

import data_loader
import embedded_benchmark
from flickr import download_flickr
from gan import generate_gan
import model  # registers the backbone binding

SIZES = dict(image_size=48, train_per_class=6, val_per_class=2, replay_per_class=10, generator_classes=24,
             bank_per_class=4, classifier_images_per_class=64, classifier_steps=600,
             object_count_probs=(1.0, 0.0, 0.0), min_scale=0.25, max_scale=0.4, pretrain_steps=20,
             pretrain_per_kind=4, web_wrong_class=0.1, web_no_object=0.1)
SEED = 3
TINY_BACKBONE = ["backbone.units = [1, 1, 1, 1]", "backbone.width = 0.0625"]


def _settings(base):
    with open(os.path.join(base, embedded_benchmark.SETTINGS_FILE)) as f:
        return json.load(f)


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    gin.clear_config()
    gin.parse_config(TINY_BACKBONE)
    base = str(tmp_path_factory.mktemp("embedded") / "embedded")
    timings = embedded_benchmark.build(base, SEED, **SIZES)
    return base, timings


def test_pretrained_encoder_loads_into_the_configured_network(built):
    base, _ = built
    seg = model.Segmenter(21)
    model.load_encoder(seg, embedded_benchmark.pretrained_encoder_path(base))
    assert _settings(base)["phases"]["encoder"]["backbone"] == {"units": [1, 1, 1, 1], "width": 0.0625}
    # Pretraining trained the batch norm statistics (a fresh network has mean 0 and variance 1).
    means = [v.numpy() for v in seg.encoder.non_trainable_variables if "moving_mean" in v.path]
    assert means and any(abs(m).max() > 1e-3 for m in means)


def test_every_output_exists(built):
    base, timings = built
    assert set(timings) == set(embedded_benchmark.PHASES) | {"total"}
    data = os.path.join(base, "data")
    for name in ("training_first_step/train_sequential_1-15.tfrecord",
                 "training_first_step/train_overlapped_1-10.tfrecord",
                 "training_incremental/train_disjoint_16-20.tfrecord",
                 "training_incremental/train_overlapped_11.tfrecord"):
        assert os.path.isfile(os.path.join(data, name)), name
    for c in embedded_benchmark.CLASSES:
        assert os.path.isfile(os.path.join(data, "validation", f"val_{c}.tfrecord"))
    for name in ("generator", "classifier"):
        assert os.path.isfile(os.path.join(base, "models", name, "saved_model.pb"))
    assert os.path.isfile(os.path.join(base, "voc", "world.json"))
    doc = _settings(base)
    assert doc["settings"]["seed"] == SEED and doc["settings"]["image_size"] == 48
    assert doc["settings"]["world_options"]["object_count_probs"] == [1.0, 0.0, 0.0]
    assert set(doc["phases"]) == set(embedded_benchmark.PHASES)


def test_generator_has_biggan_inputs_and_more_classes(built):
    base, _ = built
    path = os.path.join(base, "models", "generator")
    module = tf.saved_model.load(path)
    specs = module.signatures["default"].structured_input_signature[1]
    assert set(specs) == {"z", "y", "truncation"}
    assert specs["z"].shape.as_list() == [None, 128] and specs["truncation"].shape.rank == 0
    generator = generate_gan.Generator(path)
    assert generator.n_classes == SIZES["generator_classes"] > 20 and generator.z_dim == 128
    z = generate_gan.truncated_normal(np.random.default_rng(0), (6, 128))
    images = generator(z, 3, 1.0)
    assert images.shape == (6, 48, 48, 3) and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.std() > 0.1
    np.testing.assert_array_equal(images, generator(z, 3, 1.0))  # a function of z
    assert not np.array_equal(images, generator(z, 4, 1.0))  # y chooses the class
    assert len({im.tobytes() for im in images}) > 1  # z chooses the sample
    classifier = generate_gan.Classifier(os.path.join(base, "models", "classifier"))
    assert classifier.image_size == 48
    probs = classifier([np.zeros((30, 20, 3), np.uint8)] * 2)
    assert probs.shape == (2, SIZES["generator_classes"])


def test_class_mapping_is_found_by_the_classifier(built):
    base, _ = built
    report = _settings(base)["phases"]["gan_replay"]
    truth = embedded_benchmark.hidden_mapping(SEED, SIZES["generator_classes"])
    assert report["hidden_mapping"] == {str(c): k for c, k in truth.items()}
    assert sorted(truth.values()) != list(range(20))  # the world classes are not simply the first 20
    with open(os.path.join(base, "data", "replay_images", "gan", "class_mapping.json")) as f:
        found = {int(c): e["generator_class"] for c, e in json.load(f)["classes"].items()}
    assert {str(c): k for c, k in found.items()} == report["mapping"]
    correct = sum(found[c] == truth[c] for c in embedded_benchmark.CLASSES)
    assert correct == report["mapping_correct"] >= 12, report


def test_replay_counts_and_web_noise(built):
    base, _ = built
    n = SIZES["replay_per_class"]
    for source in ("gan", "flickr"):
        for c in embedded_benchmark.CLASSES:
            path = os.path.join(base, "data", "replay_images", source, f"{c:02d}.tfrecord")
            assert data_loader.count_records(path) == n, path
    image = next(iter(data_loader.load_tfrecord(
        [os.path.join(base, "data", "replay_images", "flickr", "07.tfrecord")], "images")))["rgb_input"]
    assert image.shape == (48, 48, 3)
    with open(os.path.join(base, "web", "07", download_flickr.MANIFEST)) as f:
        manifest = json.load(f)
    assert manifest["class"] == 7 and manifest["keyword"] == download_flickr.KEYWORDS[7]
    contents = [e["content"] for e in manifest["images"]]
    assert contents.count("wrong_class") == 1 and contents.count("no_object") == 1
    assert all(e["shown_class"] not in (0, 7) for e in manifest["images"] if e["content"] == "wrong_class")
    assert [e["file"] for e in manifest["images"]] == [f"{i:04d}.jpg" for i in range(n)]


def test_rerun_skips_and_changed_settings_fail(built):
    base, _ = built
    before = os.path.getmtime(os.path.join(base, "data", "replay_images", "gan", "01.tfrecord"))
    start = time.time()
    timings = embedded_benchmark.build(base, SEED, **SIZES)
    assert time.time() - start < 2.0 and max(timings[p] for p in embedded_benchmark.PHASES) < 1.0
    assert os.path.getmtime(os.path.join(base, "data", "replay_images", "gan", "01.tfrecord")) == before
    with pytest.raises(ValueError, match="Delete the folder"):
        embedded_benchmark.build(base, SEED, **dict(SIZES, replay_per_class=11))
    with pytest.raises(ValueError, match="Delete the folder"):
        embedded_benchmark.build(base, SEED + 1, **SIZES)
    with pytest.raises(ValueError, match="unknown embedded build setting"):
        embedded_benchmark.build(base, SEED, **dict(SIZES, replay_per_klass=4))
    with pytest.raises(ValueError, match="generator_classes"):
        embedded_benchmark.build(base + "_other", SEED, **dict(SIZES, generator_classes=20))


def test_lost_outputs_are_remade_with_the_same_bytes(built):
    """Deleting the classifier remakes it, the mapping and the GAN replay; a lost web folder is remade."""
    base, _ = built
    gan = os.path.join(base, "data", "replay_images", "gan", "05.tfrecord")
    flickr = os.path.join(base, "data", "replay_images", "flickr", "05.tfrecord")
    old_gan, old_flickr = _bytes(gan), _bytes(flickr)
    old_times = {p: os.stat(p).st_mtime_ns for p in (gan, flickr)}
    shutil.rmtree(os.path.join(base, "models", "classifier"))
    shutil.rmtree(os.path.join(base, "web", "05"))
    timings = embedded_benchmark.build(base, SEED, **SIZES)
    assert timings["classifier"] > 1.0
    assert timings["world"] < 0.5 and timings["data"] < 0.5 and timings["generator"] < 0.5
    assert all(os.stat(p).st_mtime_ns > t for p, t in old_times.items())  # both were written again
    assert os.path.isfile(os.path.join(base, "web", "05", "0009.jpg"))
    assert _bytes(gan) == old_gan
    assert _bytes(flickr) == old_flickr


def test_parallel_build_pretrains_the_same_encoder_in_a_second_process(built, tmp_path):
    """parallel=True: the encoder phase runs in a spawned process, with this process' gin bindings (the
    backbone's size), and writes the weights the serial build wrote."""
    base, _ = built
    copy = str(tmp_path / "embedded")
    shutil.copytree(base, copy)
    path = embedded_benchmark.pretrained_encoder_path(copy)
    for name in os.listdir(os.path.dirname(path)):
        os.remove(os.path.join(os.path.dirname(path), name))
    timings = embedded_benchmark.build(copy, SEED, parallel=True, **SIZES)
    assert timings["encoder"] > 0 and timings["classifier"] < 0.5  # only the encoder was made again
    assert _settings(copy)["phases"]["encoder"]["backbone"] == {"units": [1, 1, 1, 1], "width": 0.0625}
    serial, parallel = model.Segmenter(21), model.Segmenter(21)
    model.load_encoder(serial, embedded_benchmark.pretrained_encoder_path(base))
    model.load_encoder(parallel, path)
    for a, b in zip(serial.encoder.weights, parallel.encoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
