"""Tests of gan/generate_gan.py with tiny generators and classifiers saved by the test.

Generator class k paints the image in colour PROTO[k] (plus a little z-dependent texture); the classifier
scores an image by the distance of its mean colour to each PROTO[k]. Training images of VOC class c are
painted in PROTO[EXPECTED[c]], so the mapping must recover EXPECTED, and the generated images of class c
must have the colour PROTO[EXPECTED[c]] (checks that the one-hot y reaches the module).
"""
import io
import json
import os
import subprocess
import sys

from absl import flags
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from conftest import ROOT
import data_loader
from gan import generate_gan

K, Z_DIM, GEN_SIZE = 6, 8, 16
PROTO = np.array([[0.1, 0.8, 0.1], [0.9, 0.9, 0.1], [0.5, 0.5, 0.5], [0.1, 0.9, 0.9],
                  [0.9, 0.1, 0.1], [0.1, 0.1, 0.9]], np.float32)
EXPECTED = {1: 4, 2: 0, 3: 2}  # VOC class -> generator class
CLASSES = sorted(EXPECTED)


def _generator_fn(z, y, truncation, wz):
    base = tf.reshape(tf.matmul(y, tf.constant(PROTO)) * 2.0 - 1.0, [-1, 1, 1, 3])
    texture = tf.reshape(tf.tanh(tf.matmul(z, wz)), [-1, GEN_SIZE, GEN_SIZE, 3])
    return tf.clip_by_value(base + 0.1 * truncation * texture, -1.0, 1.0)


def _classifier_logits(images):
    mean = tf.reduce_mean(images, axis=[1, 2])  # [N, 3]
    return -40.0 * tf.reduce_sum(tf.square(mean[:, None, :] - tf.constant(PROTO)[None]), axis=-1)


def _save_tf2(path):
    wz = np.random.default_rng(1).normal(size=(Z_DIM, GEN_SIZE * GEN_SIZE * 3)).astype(np.float32)

    class Gen(tf.Module):

        def __init__(self):
            super().__init__()
            self.wz = tf.Variable(wz)

        @tf.function(input_signature=[tf.TensorSpec([None, Z_DIM], tf.float32, name="z"),
                                      tf.TensorSpec([None, K], tf.float32, name="y"),
                                      tf.TensorSpec([], tf.float32, name="truncation")])
        def generate(self, z, y, truncation):
            return {"default": _generator_fn(z, y, truncation, self.wz)}

    class Cls(tf.Module):

        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="images")])
        def classify(self, images):
            return {"logits": _classifier_logits(images)}

    gen, cls = Gen(), Cls()
    tf.saved_model.save(gen, path + "_gen", signatures={"serving_default": gen.generate})
    tf.saved_model.save(cls, path + "_cls", signatures={"serving_default": cls.classify})
    return path + "_gen", path + "_cls"


def _save_tf1_hub(path, inputs_fn, outputs_fn):
    """Writes a legacy TF1 Hub module: SavedModel with the empty tag set + tfhub_module.pb (08 03)."""
    graph = tf.Graph()
    with graph.as_default():
        inputs = inputs_fn()
        outputs = outputs_fn(**inputs)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(path)
            sig = tf.compat.v1.saved_model.predict_signature_def(inputs, outputs)
            builder.add_meta_graph_and_variables(sess, [], signature_def_map={"default": sig})
            builder.save()
    with open(os.path.join(path, "tfhub_module.pb"), "wb") as f:
        f.write(b"\x08\x03")
    return path


def _save_tf1(path):
    ph = tf.compat.v1.placeholder
    wz = np.random.default_rng(1).normal(size=(Z_DIM, GEN_SIZE * GEN_SIZE * 3)).astype(np.float32)
    gen = _save_tf1_hub(
        path + "_gen1",
        lambda: {"z": ph(tf.float32, [None, Z_DIM]), "y": ph(tf.float32, [None, K]),
                 "truncation": ph(tf.float32, [])},
        lambda z, y, truncation: {"default": _generator_fn(
            z, y, truncation, tf.compat.v1.get_variable("wz", initializer=tf.constant(wz)))})

    def cls_outputs(images):  # TF-Slim style: K + 1 outputs, background first.
        logits = _classifier_logits(images)
        return {"default": tf.concat([tf.fill([tf.shape(logits)[0], 1], 50.0), logits], axis=1)}

    cls = _save_tf1_hub(path + "_cls1", lambda: {"images": ph(tf.float32, [None, None, None, 3])},
                        cls_outputs)
    return gen, cls


def _class_image(rng, colour, size=40):
    image = colour * 255 + rng.normal(0, 10, size=(size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("models") / "m")
    tf2 = _save_tf2(base)
    tf1 = _save_tf1(base)
    return {"tf2": tf2, "tf1": tf1}


@pytest.fixture(scope="module")
def training_data(tmp_path_factory):
    """A labelled tfrecord (4 images per class, plus one image of class 5 only) and a class folder."""
    rng = np.random.default_rng(0)
    base = tmp_path_factory.mktemp("data")
    examples = []
    for i in range(12):
        c = CLASSES[i % 3]
        image = _class_image(rng, PROTO[EXPECTED[c]])
        label = np.zeros(image.shape[:2], np.uint8)
        label[10:30, 10:30] = c
        label[0, 0] = 255
        examples.append(data_loader.encode_example(image, label))
    other = np.zeros((40, 40), np.uint8) + 5  # class 5 images must not be scored
    examples.append(data_loader.encode_example(_class_image(rng, PROTO[1]), other))
    record = str(base / "train.tfrecord")
    data_loader.write_tfrecord(record, examples)
    folder = base / "folder"
    for c in CLASSES:
        os.makedirs(folder / ("%02d" % c))
        for i in range(3):
            Image.fromarray(_class_image(rng, PROTO[EXPECTED[c]])).save(folder / ("%02d" % c) / ("%d.jpg" % i))
    return record, str(folder)


def _read_images(path):
    images = []
    for raw in tf.data.TFRecordDataset(path):
        ex = tf.io.parse_single_example(raw, {"input": tf.io.FixedLenFeature([], tf.string)})
        images.append(tf.io.decode_jpeg(ex["input"]).numpy())
    return images


def _check_outputs(out, n, size, mapping):
    for c in CLASSES:
        images = _read_images(os.path.join(out, "%02d.tfrecord" % c))
        assert len(images) == n
        for image in images:
            assert image.shape == (size, size, 3) and image.dtype == np.uint8
            mean = image.reshape(-1, 3).mean(0) / 255.0
            assert np.abs(mean - PROTO[mapping[c]]).max() < 0.06, (c, mean)


def test_tf2_mapping_sampling_and_resume(models, training_data, tmp_path):
    gen, cls = models["tf2"]
    record, _ = training_data
    out = str(tmp_path / "gan")
    kwargs = dict(classes=CLASSES, images_per_class=5, batch_size=2, image_size=24, seed=3)
    mapping = generate_gan.generate(gen, output_dir=out, jpeg_dir=str(tmp_path / "jpeg"),
                                    classifier_handle=cls, mapping_tfrecords=[record],
                                    mapping_images_per_class=3, **kwargs)
    assert mapping == EXPECTED
    _check_outputs(out, 5, 24, EXPECTED)
    for c in CLASSES:
        assert len(os.listdir(tmp_path / "jpeg" / ("%02d" % c))) == 5
    with open(os.path.join(out, "class_mapping.json")) as f:
        doc = json.load(f)
    assert doc["generator_classes"] == K
    for c, k in EXPECTED.items():
        entry = doc["classes"][str(c)]
        assert entry["generator_class"] == k and entry["n_images"] == 3 and entry["source"] == "classifier"
        conf = [t["confidence"] for t in entry["top5"]]
        assert len(conf) == 5 and entry["top5"][0]["class"] == k and conf == sorted(conf, reverse=True)
        assert 0.5 < conf[0] <= 1.0
    assert not [n for n in os.listdir(out) if ".tmp" in n]

    # Determinism: same seed -> same bytes; other seed -> other images. The mapping JSON is reused
    # (no classifier given).
    again = str(tmp_path / "again")
    os.makedirs(again)
    with open(os.path.join(again, "class_mapping.json"), "w") as f:
        json.dump(doc, f)
    generate_gan.generate(gen, output_dir=again, **kwargs)
    for c in CLASSES:
        name = "%02d.tfrecord" % c
        with open(os.path.join(out, name), "rb") as a, open(os.path.join(again, name), "rb") as b:
            assert a.read() == b.read()

        # Resume: only the missing class is written, identically.
    stamps = {c: os.stat(os.path.join(again, "%02d.tfrecord" % c)).st_mtime_ns for c in CLASSES}
    with open(os.path.join(again, "02.tfrecord"), "rb") as f:
        before = f.read()
    os.remove(os.path.join(again, "02.tfrecord"))
    generate_gan.generate(gen, output_dir=again, **kwargs)
    with open(os.path.join(again, "02.tfrecord"), "rb") as f:
        assert f.read() == before
    for c in (1, 3):
        assert os.stat(os.path.join(again, "%02d.tfrecord" % c)).st_mtime_ns == stamps[c]

    other = str(tmp_path / "other")
    os.makedirs(other)
    with open(os.path.join(other, "class_mapping.json"), "w") as f:
        json.dump(doc, f)
    generate_gan.generate(gen, output_dir=other, **dict(kwargs, seed=4))
    assert not np.array_equal(_read_images(os.path.join(out, "01.tfrecord"))[0],
                              _read_images(os.path.join(other, "01.tfrecord"))[0])


def test_tf1_hub_format_generator_and_classifier(models, training_data, tmp_path):
    gen, cls = models["tf1"]
    generator = generate_gan.Generator(gen)
    assert (generator.n_classes, generator.z_dim, generator.signature_name) == (K, Z_DIM, "default")
    classifier = generate_gan.Classifier(cls)
    assert classifier.image_size == generate_gan.DEFAULT_CLASSIFIER_SIZE  # dynamic input size
    _, folder = training_data
    out = str(tmp_path / "gan")
    mapping = generate_gan.generate(gen, classes=CLASSES, output_dir=out, images_per_class=3,
                                    batch_size=4, image_size=0, classifier_handle=cls,
                                    mapping_folder=folder)
    assert mapping == EXPECTED
    _check_outputs(out, 3, GEN_SIZE, EXPECTED)


def test_user_mapping_overrides_and_errors(models, tmp_path):
    gen, cls = models["tf2"]
    user = tmp_path / "user.json"
    user.write_text(json.dumps({"aeroplane": 1, "2": {"generator_class": 5}}))
    out = str(tmp_path / "gan")
    mapping = generate_gan.generate(gen, classes=[1, 2], output_dir=out, images_per_class=2,
                                    image_size=8, mapping_file=str(user))
    assert mapping == {1: 1, 2: 5}
    images = _read_images(os.path.join(out, "02.tfrecord"))
    assert np.abs(images[0].reshape(-1, 3).mean(0) / 255 - PROTO[5]).max() < 0.06
    with open(os.path.join(out, "class_mapping.json")) as f:
        assert json.load(f)["classes"]["1"]["source"] == "user"

    user.write_text(json.dumps({"1": K}))
    with pytest.raises(ValueError, match="user.json"):
        generate_gan.generate(gen, classes=[1], output_dir=str(tmp_path / "x"), mapping_file=str(user))
    with pytest.raises(ValueError, match="--classifier"):
        generate_gan.generate(gen, classes=[4], output_dir=str(tmp_path / "y"))
    with pytest.raises(FileNotFoundError, match="missing.tfrecord"):
        generate_gan.generate(gen, classes=[4], output_dir=str(tmp_path / "z"), classifier_handle=cls,
                              mapping_tfrecords=[str(tmp_path / "missing.tfrecord")])
    with pytest.raises(ValueError, match="z, y, truncation"):
        generate_gan.Generator(cls)


def test_truncated_normal_is_bounded_and_seeded():
    a = generate_gan.truncated_normal(np.random.default_rng(0), (2000, 4))
    b = generate_gan.truncated_normal(np.random.default_rng(0), (2000, 4))
    assert a.dtype == np.float32 and np.abs(a).max() <= 2.0 and np.array_equal(a, b)
    assert 0.7 < a.std() < 0.95  # a normal truncated at 2 sigma has std 0.88


def test_command_line(models, tmp_path):
    gen, _ = models["tf2"]
    user = tmp_path / "user.json"
    user.write_text(json.dumps({"1": 3, "2": 0}))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "gan", "generate_gan.py"), "--generator=" + gen,
         "--classes=1,2", "--images_per_class=3", "--batch_size=2", "--image_size=12",
         "--mapping_file=" + str(user), "--output_dir=" + str(out), "--jpeg_dir=" + str(tmp_path / "j")],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [len(_read_images(str(out / n))) for n in ("01.tfrecord", "02.tfrecord")] == [3, 3]
    assert _read_images(str(out / "01.tfrecord"))[0].shape == (12, 12, 3)
    assert sorted(os.listdir(tmp_path / "j" / "02")) == ["0000.jpg", "0001.jpg", "0002.jpg"]


# ------------------------------------------------------------------------------ class mapping over all images

def _write_class_record(path, colours_by_class):
    """A labelled tfrecord: for each (class, colours), one 8x8 image per colour, in order."""
    rng = np.random.default_rng(0)
    examples = []
    for c, colours in colours_by_class:
        for colour in colours:
            label = np.full((8, 8), c, np.uint8)
            examples.append(data_loader.encode_example(_class_image(rng, colour, size=8), label))
    data_loader.write_tfrecord(path, examples)
    return path


def test_mapping_scores_every_image_by_default(models, tmp_path):
    """Class 1 has 250 images: the first 100 look like generator class 4, the other 150 like class 5. The
    original's rule (mean over every image of the class) gives 5; a cap of 100 images would give 4."""
    gen, cls = models["tf2"]
    record = _write_class_record(str(tmp_path / "train.tfrecord"),
                                 [(1, [PROTO[4]] * 100 + [PROTO[5]] * 150), (2, [PROTO[0]] * 3)])
    out = str(tmp_path / "gan")
    kwargs = dict(classes=[1, 2], output_dir=out, images_per_class=1, image_size=8, classifier_handle=cls,
                  mapping_tfrecords=[record])
    assert generate_gan.generate(gen, **kwargs) == {1: 5, 2: 0}
    with open(os.path.join(out, "class_mapping.json")) as f:
        doc = json.load(f)
    assert doc["images_per_class"] == 0
    assert doc["classes"]["1"]["n_images"] == 250 and doc["classes"]["2"]["n_images"] == 3
    top = {t["class"]: t["confidence"] for t in doc["classes"]["1"]["top5"]}
    assert abs(top[5] - 0.6) < 0.02 and abs(top[4] - 0.4) < 0.02  # mean of softmax confidences

    # The cap is a switch; a mapping computed with another cap is recomputed when a classifier is given.
    capped = generate_gan.generate(gen, mapping_images_per_class=100, **kwargs)
    assert capped == {1: 4, 2: 0}
    with open(os.path.join(out, "class_mapping.json")) as f:
        doc = json.load(f)
    assert doc["images_per_class"] == 100 and doc["classes"]["1"]["n_images"] == 100

    # Defaults of the function and of the command line: no cap.
    images = [(np.tile(PROTO[4] * 255, (8, 8, 1)).astype(np.uint8), {1})] * 120
    counts = []
    mapping = generate_gan.compute_class_mapping(
        lambda ims: counts.append(len(ims)) or np.eye(K)[[4] * len(ims)], [1], images, K)
    assert mapping[1]["n_images"] == 120 and sum(counts) == 120
    flag_values = flags.FlagValues()
    generate_gan.define_flags(flag_values)
    flag_values(["generate_gan.py", "--generator=g"])
    assert flag_values.mapping_images_per_class == 0 and flag_values.jpeg_quality == 75
    assert "0 = every" in flag_values["mapping_images_per_class"].help
    with pytest.raises(ValueError, match="images per class"):
        generate_gan.compute_class_mapping(lambda ims: None, [1], images, K, images_per_class=-1)


# ------------------------------------------------------------------------------ images as the original's

def test_images_quantized_and_encoded_as_the_original(models, tmp_path):
    # im2int: tf.image.convert_image_dtype scales by 255.5 and truncates (0.5 -> 127, not 128).
    assert generate_gan.to_uint8(np.array([-0.1, 0.0, 0.5, 0.999, 1.0, 1.2])).tolist() == [0, 0, 127, 255,
                                                                                            255, 255]
    gen, _ = models["tf2"]
    user = tmp_path / "user.json"
    user.write_text(json.dumps({"1": 3}))
    out, jpegs = tmp_path / "gan", tmp_path / "jpeg"
    generate_gan.generate(gen, classes=[1], output_dir=str(out), images_per_class=2, image_size=16,
                          jpeg_dir=str(jpegs), mapping_file=str(user))
    reference = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(reference, format="JPEG")  # Pillow's default
    reference = Image.open(reference)
    for i, raw in enumerate(tf.data.TFRecordDataset(str(out / "01.tfrecord"))):
        data = tf.train.Example.FromString(raw.numpy()).features.feature["input"].bytes_list.value[0]
        assert data == (jpegs / "01" / ("%04d.jpg" % i)).read_bytes()  # the record holds the file's bytes
        image = Image.open(io.BytesIO(data))
        assert image.format == "JPEG" and image.quantization == reference.quantization  # quality 75


# ------------------------------------------------------------------------------ hostile input

@pytest.mark.parametrize("value", [True, False, 1.5, "3", None, [1], {"generator_class": True},
                                   {"generator_class": 2.0}])
def test_mapping_file_rejects_non_integers(tmp_path, value):
    path = tmp_path / "user.json"
    path.write_text(json.dumps({"2": 1, "bird": value}))
    with pytest.raises(ValueError, match=r"user\.json.*class 'bird' maps to .*expected an int"):
        generate_gan.read_mapping_file(str(path), K)


def test_mapping_file_other_errors(models, tmp_path):
    path = tmp_path / "user.json"
    path.write_text('{"1": 3,')
    with pytest.raises(ValueError, match=r"mapping file .*user\.json.* is not valid JSON"):
        generate_gan.read_mapping_file(str(path), K)
    path.write_text('{"1": 3, "aeroplane": 2}')
    with pytest.raises(ValueError, match=r"user\.json.*class 1 is given twice"):
        generate_gan.read_mapping_file(str(path), K)
    path.write_text('{"1": 3, "cat": 1, "dog": 0}')
    assert generate_gan.read_mapping_file(str(path), K) == {1: 3, 8: 1, 12: 0}
    # A damaged mapping output of an earlier run is named too.
    gen, _ = models["tf2"]
    out = tmp_path / "gan"
    out.mkdir()
    (out / "class_mapping.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"mapping output .*class_mapping\.json.* is not valid JSON"):
        generate_gan.generate(gen, classes=[1], output_dir=str(out), mapping_file=str(path))


def _save_bad_generator(path):
    """Generator class 2 outputs NaN, class 3 Inf, the others a grey image."""

    class Gen(tf.Module):

        @tf.function(input_signature=[tf.TensorSpec([None, Z_DIM], tf.float32, name="z"),
                                      tf.TensorSpec([None, K], tf.float32, name="y"),
                                      tf.TensorSpec([], tf.float32, name="truncation")])
        def generate(self, z, y, truncation):
            del truncation
            shape = [tf.shape(z)[0], GEN_SIZE, GEN_SIZE, 3]
            k = tf.reshape(tf.argmax(y, axis=1), [-1, 1, 1, 1])
            out = tf.where(k == 2, np.nan, tf.where(k == 3, np.inf, tf.zeros(shape)))
            return {"default": out}

    gen = Gen()
    tf.saved_model.save(gen, path, signatures={"serving_default": gen.generate})
    return path


@pytest.mark.parametrize("generator_class", [2, 3])
def test_non_finite_generator_output_fails_naming_generator_and_class(tmp_path, generator_class):
    gen = _save_bad_generator(str(tmp_path / "bad_gen"))
    user = tmp_path / "user.json"
    user.write_text(json.dumps({"1": 0, "4": generator_class}))
    out = tmp_path / "gan"
    with pytest.raises(ValueError, match=r"class 4 \(boat\): generator '.*bad_gen': output for generator "
                                         r"class %d holds \d+ non-finite" % generator_class):
        generate_gan.generate(gen, classes=[1, 4], output_dir=str(out), images_per_class=3, batch_size=2,
                              image_size=0, mapping_file=str(user))
    assert sorted(os.listdir(out)) == ["01.tfrecord", "class_mapping.json", "class_mapping.md"]


# ------------------------------------------------------------------------------ generator contract, per call

def _save_contract_generator(path, dtype=tf.float32):
    """A generator whose class k breaks the output contract (float [N, H, W, 3] in [-1, 1]) as CONTRACT[k]
    says; class 0 keeps it but passes +-1 by a rounding error (0.004); a uint8 generator paints 0..255."""
    s = GEN_SIZE

    class Gen(tf.Module):

        @tf.function(input_signature=[tf.TensorSpec([None, Z_DIM], tf.float32, name="z"),
                                      tf.TensorSpec([None, len(CONTRACT)], tf.float32, name="y"),
                                      tf.TensorSpec([], tf.float32, name="truncation")])
        def generate(self, z, y, truncation):
            del truncation
            n = tf.shape(z)[0]
            ramp = tf.broadcast_to(tf.linspace(0.0, 255.0, s)[None, None, :, None], [n, s, s, 3])
            if dtype == tf.uint8:
                return {"default": tf.cast(ramp, tf.uint8)}
            signs = tf.sign(ramp - 127.0)  # -1 on the left half of the image, +1 on the right
            branches = [lambda: 1.004 * signs,  # within the margin: accepted
                        lambda: ramp,  # 0..255 pixels
                        lambda: tf.zeros([n, s, s]),  # no channel axis
                        lambda: tf.zeros([n, s, s, 4]),  # RGBA
                        lambda: tf.zeros([n, 3, s, s]),  # channels first
                        lambda: tf.zeros([n, s, s, 1]),  # one channel
                        lambda: tf.zeros([n - 1, s, s, 3]),  # fewer images than asked
                        lambda: tf.zeros([0, s, s, 3]),  # no image
                        lambda: 1.05 * signs]  # beyond the margin
            return {"default": tf.switch_case(tf.cast(tf.argmax(y[0]), tf.int32), branches)}

    gen = Gen()
    tf.saved_model.save(gen, path, signatures={"serving_default": gen.generate})
    return path


# generator class -> what the error must say about the output of a call for 2 images of 16 x 16
CONTRACT = [None,
            r"float32 \[2, 16, 16, 3\] with values in \[0, 255\]: values outside \[-1, 1\]",
            r"float32 \[2, 16, 16\] .*: rank 3 \(no channel axis\)",
            r"float32 \[2, 16, 16, 4\] .*: 4 channels \(RGBA\)",
            r"float32 \[2, 3, 16, 16\] .*: 16 channels, channels first",
            r"float32 \[2, 16, 16, 1\] .*: 1 channel \(greyscale\)",
            r"float32 \[1, 16, 16, 3\] .*: 1 images? of 2 asked",
            r"float32 \[0, 16, 16, 3\] with no values: 0 images of 2 asked",
            r"float32 \[2, 16, 16, 3\] with values in \[-1.05, 1.05\]: values outside \[-1, 1\]"]


@pytest.fixture(scope="module")
def contract_generators(tmp_path_factory):
    base = tmp_path_factory.mktemp("contract")
    return (_save_contract_generator(str(base / "contract_gen")),
            _save_contract_generator(str(base / "uint8_gen"), tf.uint8))


@pytest.mark.parametrize("generator_class", range(1, len(CONTRACT)))
def test_generator_output_contract_checked_per_call(contract_generators, tmp_path, generator_class):
    gen, _ = contract_generators
    user = tmp_path / "user.json"
    user.write_text(json.dumps({"4": generator_class}))
    out = tmp_path / "gan"
    with pytest.raises(ValueError, match=r"class 4 \(boat\): generator '.*contract_gen': output for generator "
                                         r"class %d is %s; expected float \[2, H, W, 3\] in \[-1, 1\]"
                                         % (generator_class, CONTRACT[generator_class])) as error:
        generate_gan.generate(gen, classes=[4], output_dir=str(out), images_per_class=3, batch_size=2,
                              image_size=0, mapping_file=str(user))
    assert "nothing written to %s" % (out / "04.tfrecord") in str(error.value)
    assert sorted(os.listdir(out)) == ["class_mapping.json", "class_mapping.md"]  # no record, no temporary


def test_generator_output_dtype_and_rounding_margin(contract_generators, tmp_path):
    gen, uint8_gen = contract_generators
    user = tmp_path / "user.json"
    user.write_text(json.dumps({"4": 0}))
    out = tmp_path / "gan"
    with pytest.raises(ValueError, match=r"generator '.*uint8_gen': output for generator class 0 is uint8 "
                                         r"\[2, 16, 16, 3\] with values in \[0, 255\]: dtype uint8, not float; "
                                         r"values outside \[-1, 1\]"):
        generate_gan.generate(uint8_gen, classes=[4], output_dir=str(out), images_per_class=3, batch_size=2,
                              image_size=0, mapping_file=str(user))
    assert sorted(os.listdir(out)) == ["class_mapping.json", "class_mapping.md"]
    # 1.004 is within the margin of a rounding error: accepted, and clipped to the pixel range.
    generate_gan.generate(gen, classes=[4], output_dir=str(tmp_path / "ok"), images_per_class=3, batch_size=2,
                          image_size=0, mapping_file=str(user))
    images = _read_images(str(tmp_path / "ok" / "04.tfrecord"))
    assert len(images) == 3
    assert images[0][:, :4].max() < 10 and images[0][:, -4:].min() > 245
    assert generate_gan.OUTPUT_RANGE_MARGIN == 0.01


# ------------------------------------------------------------------------------ ADE20K: 150 classes, weak ones excluded

# ADE20K class -> generator class; wall's images lie between generator classes 2 and 5, a little nearer 2 (a
# "stuff" class no generator class draws: a weak mapping, mean confidence about 0.7); the others are clear.
ADE_EXPECTED = {1: 2, 2: 0, 101: 4, 150: 5}
ADE_COLOURS = {1: 0.52 * PROTO[2] + 0.48 * PROTO[5], 2: PROTO[0], 101: PROTO[4], 150: PROTO[5]}
ADE_CLASSES = sorted(ADE_EXPECTED)


def _ade_data(base):
    """A data folder holding ADE20K's default mapping file (train_overlapped_1-150: labels up to 150)."""
    data = str(base / "data")
    (record,) = generate_gan.default_mapping_tfrecords("ade20k", data)
    assert record == os.path.join(data, "training_first_step", "train_overlapped_1-150.tfrecord")
    rng = np.random.default_rng(0)
    examples = []
    for c in ADE_CLASSES * 3:
        label = np.zeros((8, 8), np.uint8)
        label[2:, :] = c
        label[0, 0] = 255
        examples.append(data_loader.encode_example(_class_image(rng, ADE_COLOURS[c], size=8), label))
    examples.append(data_loader.encode_example(_class_image(rng, PROTO[1], size=8), np.full((8, 8), 3, np.uint8)))
    os.makedirs(os.path.dirname(record))
    data_loader.write_tfrecord(record, examples)
    return data


def _report_rows(path):
    """(class, generator class, confidence, margin, replay) of the report's table rows, in order."""
    rows = []
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("| ") and cells[0].isdigit():
                rows.append((int(cells[0]), cells[1], cells[2], cells[3], cells[4], cells[6]))
    return rows


def test_ade20k_mapping_report_and_exclusions(models, tmp_path, caplog):
    gen, cls = models["tf2"]
    data = _ade_data(tmp_path)
    out = os.path.join(data, "replay_images", "gan")
    kwargs = dict(classes=ADE_CLASSES, output_dir=out, images_per_class=2, image_size=8, dataset="ade20k",
                  classifier_handle=cls, mapping_tfrecords=list(generate_gan.default_mapping_tfrecords("ade20k", data)))
    assert generate_gan.generate(gen, **kwargs) == ADE_EXPECTED
    assert sorted(os.listdir(out)) == ["01.tfrecord", "02.tfrecord", "101.tfrecord", "150.tfrecord",
                                       "class_mapping.json", "class_mapping.md"]
    _check_ade_images(out, [1, 2, 101, 150])
    with open(os.path.join(out, "class_mapping.json")) as f:
        doc = json.load(f)
    assert doc["dataset"] == "ade20k" and doc["excluded"] == {} and doc["classes"]["101"]["name"] == "poster"
    assert {int(c): e["n_images"] for c, e in doc["classes"].items()} == {c: 3 for c in ADE_CLASSES}
    confidence = {int(c): e["top5"][0]["confidence"] for c, e in doc["classes"].items()}
    margin = {int(c): e["top5"][0]["confidence"] - e["top5"][1]["confidence"] for c, e in doc["classes"].items()}
    assert 0.55 < confidence[1] < 0.85 and min(confidence[c] for c in (2, 101, 150)) > 0.95
    assert doc["classes"]["1"]["top5"][1]["class"] == 5  # the runner-up of wall

    # The report: every class, weakest first, with its name, generator class, confidence and margin.
    report = os.path.join(out, "class_mapping.md")
    rows = _report_rows(report)
    assert [r[0] for r in rows] == sorted(ADE_CLASSES, key=confidence.get) and rows[0][:3] == (1, "wall", "2")
    assert [float(r[3]) for r in rows] == [round(confidence[r[0]], 3) for r in rows]
    assert [float(r[4]) for r in rows] == [round(margin[r[0]], 3) for r in rows]
    assert all(r[5] == "GAN" for r in rows)
    assert "Excluded: none" in open(report).read()

    # --min_confidence excludes wall, --exclude_classes flag; the mapping is reused (same cap), their records of
    # the first run are removed, and the log, the report and the JSON name them.
    caplog.set_level("INFO", logger="absl")
    mapping = generate_gan.generate(gen, min_confidence=0.9, exclude_classes=[150], **kwargs)
    assert mapping == {2: 0, 101: 4}
    assert sorted(os.listdir(out)) == ["02.tfrecord", "101.tfrecord", "class_mapping.json", "class_mapping.md"]
    rows = _report_rows(report)
    assert [r[0] for r in rows] == sorted(ADE_CLASSES, key=confidence.get)
    replay = {r[0]: r[5] for r in rows}
    assert replay[1] == "excluded: use web replay (confidence %.3f < min_confidence 0.900)" % confidence[1]
    assert replay[150] == "excluded: use web replay (exclude_classes)"
    assert replay[2] == replay[101] == "GAN"
    text = open(report).read()
    assert "Excluded (no GAN record; use web replay): 1 (wall), 150 (flag)" in text
    assert "    TrainManager.web_replay_classes = [1, 150]\n" in text
    with open(os.path.join(out, "class_mapping.json")) as f:
        doc = json.load(f)
    assert doc["min_confidence"] == 0.9 and sorted(doc["excluded"]) == ["1", "150"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("2 class(es) excluded, no GAN record (use web replay): 1 (wall): confidence" in w and
               "150 (flag): exclude_classes" in w and "TrainManager.web_replay_classes = [1, 150]" in w
               for w in warnings), warnings
    assert any("class 1 (wall): excluded, removed its record" in w for w in warnings), warnings
    infos = "\n".join(r.getMessage() for r in caplog.records)
    assert "| 1 | wall | 2 | %.3f |" % confidence[1] in infos  # the table is logged too

    # A class excluded by name needs no mapping (no classifier, no image); wrong values are named.
    assert generate_gan.generate(gen, **dict(kwargs, classes=[3, 101], classifier_handle=None),
                                 exclude_classes=[3]) == {101: 4}
    with pytest.raises(ValueError, match=r"exclude_classes \[7\] are not among the classes generated \[1, 2, 101, "
                                         r"150\]"):
        generate_gan.generate(gen, exclude_classes=[7], **kwargs)
    with pytest.raises(ValueError, match=r"min_confidence must be a number in \[0, 1\].*got 1.5"):
        generate_gan.generate(gen, min_confidence=1.5, **kwargs)
    with pytest.raises(ValueError, match=r"classes \[151\] are not class ids of ade20k; expected ids in 1..150"):
        generate_gan.generate(gen, **dict(kwargs, classes=[2, 151]))
    with pytest.raises(ValueError, match=r"classes \[101\] are not class ids of voc; expected ids in 1..20"):
        generate_gan.generate(gen, **dict(kwargs, classes=[101], dataset="voc"))
    # Another dataset's mapping, and so its folder, is refused (VOC's class 1 is aeroplane, not wall).
    with pytest.raises(ValueError, match=r"mapping output '.*class_mapping\.json' was made for dataset 'ade20k', "
                                         r"not 'voc'"):
        generate_gan.generate(gen, **dict(kwargs, classes=[1], dataset="voc"))


def _check_ade_images(out, classes):
    for c in classes:
        images = _read_images(os.path.join(out, "%s.tfrecord" % ("%02d" % c)))
        assert len(images) == 2
        mean = images[0].reshape(-1, 3).mean(0) / 255.0
        assert np.abs(mean - PROTO[ADE_EXPECTED[c]]).max() < 0.06, (c, mean)


def test_ade20k_command_line_defaults_from_the_data_folder(models, tmp_path):
    """--dataset=ade20k --data_dir=D: the mapping scores D's train_overlapped_1-150 and the records go to
    D/replay_images/gan; --exclude_classes and --min_confidence leave classes out, named on stderr."""
    gen, cls = models["tf2"]
    data = _ade_data(tmp_path)
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "gan", "generate_gan.py"), "--generator=" + gen, "--classifier=" + cls,
         "--dataset=ade20k", "--data_dir=" + data, "--classes=1,2,101,150", "--exclude_classes=2",
         "--min_confidence=0.9", "--images_per_class=2", "--image_size=8"],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = os.path.join(data, "replay_images", "gan")
    assert sorted(os.listdir(out)) == ["101.tfrecord", "150.tfrecord", "class_mapping.json", "class_mapping.md"]
    _check_ade_images(out, [101, 150])
    assert "excluded, no GAN record (use web replay): 1 (wall): confidence" in result.stderr
    assert "2 (building): exclude_classes" in result.stderr
    assert "TrainManager.web_replay_classes = [1, 2]" in result.stderr

    flag_values = flags.FlagValues()
    generate_gan.define_flags(flag_values)
    flag_values(["generate_gan.py", "--generator=g", "--dataset=ade20k", "--classes=101,150",
                 "--exclude_classes=150"])
    assert flag_values.exclude_classes == ["150"] and flag_values.output_dir is None
    for bad in ("--exclude_classes=151", "--classes=0", "--min_confidence=1.5"):
        with pytest.raises(flags.IllegalFlagValueError):
            flag_values(["generate_gan.py", "--generator=g", "--dataset=ade20k", bad])
