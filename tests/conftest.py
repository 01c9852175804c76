"""Shared fixtures: a tiny generated VOC-like world, prepared into every tfrecord, with replay images."""
import os
import shutil

import numpy as np
import pytest

import runtime  # noqa: F401  (before TensorFlow: oneDNN kernels on every x86 CPU, as main.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_terminal_summary(terminalreporter):
    """Every run's output ends with the CPU kind (also under -q): floats differ between kinds (README "Every CPU
    kind"), so a failure report names the kind it came from."""
    terminalreporter.write_line(f"CPU kind: {runtime.cpu_kind()}; ONEDNN_MAX_CPU_ISA="
                                f"{os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}")


TESTS = os.path.join(ROOT, "tests")  # a test subprocess works here, so that it imports the tests' modules

# Gin bindings of a tiny experiment: the same code as the paper's, a small network on 32x32 images.
TINY_BINDINGS = [
    "TrainManager.train_image_size = 32",
    "TrainManager.batch_size = 8",
    "TrainManager.training_steps_per_class = 2",
    "TrainManager.decay_steps_per_class = 2",
    "TrainManager.training_steps_per_class_helper = 2",
    "TrainManager.decay_steps_per_class_helper = 2",
    "TrainManager.training_steps_per_class_incremental = 2",
    "TrainManager.decay_steps_per_class_incremental = 2",
    "backbone.units = [1, 1, 1, 1]",
    "backbone.width = 0.0625",
    "Training.require_pretrained = False",
]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A base folder holding data/ (every tfrecord of a 32x32 world) and gan replay images of every class.
    Copy it (copy_base) before writing into it."""
    import data_loader
    import prepare_data
    from embedded_benchmark import world
    root = tmp_path_factory.mktemp("tiny")
    world.generate_world(str(root / "voc"), seed=0, image_size=32, train_per_class=6, val_per_class=2)
    prepare_data.prepare(str(root / "voc"), str(root / "base" / "data"))
    rng = np.random.default_rng(0)
    for c in range(1, 21):
        examples = [data_loader.encode_example(world.render_object(c, 32, rng)[0]) for _ in range(4)]
        data_loader.write_tfrecord(str(root / "base" / "data" / "replay_images" / "gan" / f"{c:02d}.tfrecord"),
                                   examples)
    return root / "base"


@pytest.fixture
def copy_base(tiny_data, tmp_path):
    """A fresh writable copy of the tiny base folder."""
    base = tmp_path / "base"
    shutil.copytree(tiny_data, base)
    return base


def write_tf1_checkpoint(prefix, arrays):
    """A checkpoint as the original's tf.train.Saver writes it (`prefix`.index + .data-*), from a dict
    TF1 variable name -> array."""
    import tensorflow as tf
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    with tf.Graph().as_default():
        variables = {name: tf.compat.v1.Variable(value, name="v%d" % i)
                     for i, (name, value) in enumerate(arrays.items())}
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, prefix, write_meta_graph=False, write_state=False)


def record_bytes(path):
    """[(image bytes, label bytes)] of the records of a labelled tfrecord, in order."""
    import tensorflow as tf
    out = []
    for raw in tf.data.TFRecordDataset(path):
        feature = tf.train.Example.FromString(raw.numpy()).features.feature
        out.append((feature["input"].bytes_list.value[0], feature["label"].bytes_list.value[0]))
    return out
