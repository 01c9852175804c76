"""GAN replay: class-conditional images for every old class, as RECALL's GAN replay source.

Loads a class-conditional generator with `tensorflow_hub.load` (BigGAN-deep in the legacy TF1 Hub format,
or a TF2 SavedModel with the same inputs), maps every target class (the dataset's GAN classes, datasets.py: VOC
ids 1..20) to a generator class, and writes `data/replay_images/gan/{cc}.tfrecord` (paths.replay_file: images
only, JPEG, two-digit class).

Class mapping, as in the paper: a classifier over the generator's classes (EfficientNet-B2 from TF-Hub for
ImageNet) scores every training image that contains the target class (the whole image; an image with
several classes counts for each); the class maps to the generator class with the highest mean softmax
confidence. The original repository holds no code for this step (its `generate_gan.py` samples all 1000
ImageNet classes); the rule is the paper's. `--mapping_images_per_class N` caps the images scored per class
(a faster approximation; 0, the default, scores all of them). The mapping (with top-5 and confidences) is
written to JSON; a mapping file given by the user overrides it, class by class.

Images: as the original's `im2int` (tf.image.convert_image_dtype of (x + 1) / 2 to uint8, which truncates
after scaling by 255.5), and JPEG-encoded as the original's `matplotlib.image.imsave(... .jpg)` did, with
Pillow at its default quality 75 (`--jpeg_quality` to change it); the record holds those JPEG bytes, as the
original's record writer kept the bytes of its JPEG files.

Module contracts (checked, with errors naming the module and the expected inputs):
- generator: a signature (TF1 Hub: "default") with inputs `z` float [N, dim], `y` float one-hot [N, K] and
  `truncation` float scalar; output ("default", or the only output) float [N, H, W, 3] in [-1, 1], N
  images per call. K and dim are read from the signature. Every call's output is checked: another rank,
  dtype, image count or channel count (RGBA, greyscale, channels first), NaN/Inf, or values beyond
  OUTPUT_RANGE_MARGIN outside [-1, 1] (e.g. 0..255 pixels) is an error naming the generator, the class and
  what it returned; it comes while the class's record is written, so no record of the class appears.
- classifier: a signature with input `images` (or a single input) float [N, H, W, 3] in [0, 1]; output
  ("default", "logits", or the only output) [N, K] logits (or probabilities), or [N, K + 1] with a
  background class first (TF-Slim style), which is dropped.

Example:
  python gan/generate_gan.py --generator=https://tfhub.dev/deepmind/biggan-deep-512/1 \
      --classifier=https://tfhub.dev/google/efficientnet/b2/classification/1
"""

import io
import json
import math
import os

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_hub as hub
from tqdm import tqdm

import artifacts
import data_loader
import datasets
import paths

DEFAULT_OUTPUT_DIR = paths.replay_dir(paths.DATA_DIR, "gan")
DEFAULT_CLASSIFIER_SIZE = 260  # EfficientNet-B2's default input size.
# The original wrote its GAN images with matplotlib.image.imsave(".jpg"), which calls Pillow's JPEG encoder
# without a quality: Pillow's default, 75.
DEFAULT_JPEG_QUALITY = 75
# Outputs may pass +-1 by float rounding (one bfloat16 step above 1 is 2^-7 = 0.0078, a float16's 2^-10): values
# within this margin of [-1, 1] are accepted (to_uint8 clips them); farther ones break the contract.
OUTPUT_RANGE_MARGIN = 0.01


def _input_specs(signature):
    """Returns {input name: tf.TensorSpec} of a concrete function (keyword inputs)."""
    args, kwargs = signature.structured_input_signature
    specs = dict(kwargs)
    for i, spec in enumerate(args):
        specs[getattr(spec, "name", None) or "arg%d" % i] = spec
    return specs


def _signatures(module):
    """Yields (name, concrete function), "default" first, then "serving_default", then the rest."""
    sigs = getattr(module, "signatures", {}) or {}
    names = sorted(sigs.keys(), key=lambda n: (n != "default", n != "serving_default", n))
    for name in names:
        yield name, sigs[name]


def _pick_output(outputs, preferred, handle):
    """Returns the key of the output to use among `preferred`, or the only one."""
    for key in preferred:
        if key in outputs:
            return key
    if len(outputs) == 1:
        return next(iter(outputs))
    raise ValueError("module %r: cannot choose an output among %s; expected one of %s or a single output"
                     % (handle, sorted(outputs), list(preferred)))


class Generator:
    """A class-conditional generator loaded from a TF1 Hub module or a TF2 SavedModel.

    Attributes:
      n_classes: K, the number of generator classes (width of the one-hot `y` input).
      z_dim: width of the latent input `z`.
    """

    def __init__(self, handle):
        """Loads the generator.

        Args:
          handle: local directory or TF-Hub handle (URL needs the network or a filled TFHUB_CACHE_DIR).
        """
        self.handle = handle
        module = hub.load(handle)
        self._module = module  # keeps the variables alive
        for name, sig in _signatures(module):
            specs = _input_specs(sig)
            if {"z", "y", "truncation"} <= set(specs):
                break
        else:
            raise ValueError("generator %r: no signature with inputs z, y, truncation (found signatures %s)"
                             % (handle, list(getattr(module, "signatures", {}) or {})))
        self._sig = sig
        self.signature_name = name
        z_shape, y_shape = specs["z"].shape, specs["y"].shape
        if z_shape.rank != 2 or z_shape[1] is None or y_shape.rank != 2 or y_shape[1] is None:
            raise ValueError("generator %r: expected inputs z [N, dim] and y [N, K] with static dim and K, "
                             "got z %s, y %s" % (handle, z_shape, y_shape))
        self.z_dim, self.n_classes = int(z_shape[1]), int(y_shape[1])
        self._dtypes = {k: specs[k].dtype for k in ("z", "y", "truncation")}
        self._out = _pick_output(sig.structured_outputs, ("default",), handle)
        logging.info("generator %s: signature %r, z_dim %d, %d classes", handle, name, self.z_dim,
                     self.n_classes)

    def __call__(self, z, class_index, truncation):
        """Generates images.

        Args:
          z: float32 [N, z_dim] latent vectors (already scaled by the truncation).
          class_index: int generator class in [0, n_classes).
          truncation: float, passed to the module.

        Returns:
          float32 numpy [N, H, W, 3] in [-1, 1] (within OUTPUT_RANGE_MARGIN).

        Raises:
          ValueError: the output breaks the contract (see _check_output), naming the generator and the class.
        """
        y = tf.one_hot([class_index] * len(z), self.n_classes, dtype=self._dtypes["y"])
        out = self._sig(z=tf.constant(z, self._dtypes["z"]), y=y,
                        truncation=tf.constant(truncation, self._dtypes["truncation"]))[self._out]
        return self._check_output(out, len(z), class_index)

    def _check_output(self, out, n, class_index):
        """Returns the module's output tensor as float32 numpy [n, H, W, 3] in [-1, 1].

        Raises:
          ValueError naming the generator, the class and what it returned (dtype, shape, value range): a rank
          other than 4, another image count than n, a channel count other than 3 (RGBA, greyscale, channels
          first), empty images, a non-float dtype, NaN or Inf, or values beyond OUTPUT_RANGE_MARGIN outside
          [-1, 1] (0..255 pixels, for one).
        """
        shape, dtype = out.shape.as_list(), out.dtype
        values = out.numpy().astype(np.float32) if dtype.is_floating or dtype.is_integer or dtype.is_bool else None
        faults = [] if dtype.is_floating else ["dtype %s, not float" % dtype.name]
        if len(shape) != 4:
            faults.append("rank %d%s" % (len(shape), " (no channel axis)" if len(shape) == 3 else ""))
        else:
            if shape[0] != n:
                faults.append("%d images of %d asked" % (shape[0], n))
            if shape[3] != 3:
                channels = {1: "1 channel (greyscale)", 4: "4 channels (RGBA)"}.get(shape[3], "%d channels" % shape[3])
                faults.append(channels + (", channels first" if shape[1] == 3 else ""))
            if shape[0] and 0 in shape[1:3]:
                faults.append("empty images")
        finite = values is not None and np.isfinite(values).all()
        if values is not None and not finite and not faults:  # a well-shaped output with NaN or Inf
            bad = ~np.isfinite(values)
            raise ValueError("generator %r: output for generator class %d holds %d non-finite values (NaN or "
                             "Inf) in %d of %d images; expected values in [-1, 1]"
                             % (self.handle, class_index, int(bad.sum()),
                                int(bad.reshape(len(values), -1).any(axis=1).sum()), len(values)))
        if values is None:
            held = "of dtype %s" % dtype.name
        elif not values.size:
            held = "with no values"
        elif not finite:
            held = "with NaN or Inf"
        else:
            low, high = float(values.min()), float(values.max())
            held = "with values in [%.4g, %.4g]" % (low, high)
            if low < -1.0 - OUTPUT_RANGE_MARGIN or high > 1.0 + OUTPUT_RANGE_MARGIN:
                faults.append("values outside [-1, 1]")
        if faults:
            raise ValueError("generator %r: output for generator class %d is %s %s %s: %s; expected float "
                             "[%d, H, W, 3] in [-1, 1] (margin %g)"
                             % (self.handle, class_index, dtype.name, shape, held, "; ".join(faults), n,
                                OUTPUT_RANGE_MARGIN))
        return values


class Classifier:
    """An image classifier over the generator's classes, loaded with hub.load."""

    def __init__(self, handle, image_size=0, outputs="logits"):
        """Loads the classifier.

        Args:
          handle: local directory or TF-Hub handle.
          image_size: square input size; 0 = the module's static input size, else 260.
          outputs: "logits" (softmax applied here) or "probabilities".
        """
        if outputs not in ("logits", "probabilities"):
            raise ValueError("classifier outputs must be 'logits' or 'probabilities', got %r" % (outputs,))
        self.handle, self.outputs = handle, outputs
        module = hub.load(handle)
        self._module = module
        for name, sig in _signatures(module):
            specs = _input_specs(sig)
            if "images" in specs or len(specs) == 1:
                break
        else:
            raise ValueError("classifier %r: no signature with an 'images' input or a single input (found %s)"
                             % (handle, list(getattr(module, "signatures", {}) or {})))
        self._sig = sig
        self._in = "images" if "images" in specs else next(iter(specs))
        shape = specs[self._in].shape
        if shape.rank != 4:
            raise ValueError("classifier %r: input %r must be [N, H, W, 3], got %s" % (handle, self._in, shape))
        static = shape[1] if shape[1] is not None and shape[1] == shape[2] else None
        self.image_size = int(image_size or static or DEFAULT_CLASSIFIER_SIZE)
        self._out = _pick_output(sig.structured_outputs, ("default", "logits", "probabilities"), handle)
        logging.info("classifier %s: signature %r, input %r at %d px, output %r", handle, name, self._in,
                     self.image_size, self._out)

    def __call__(self, images):
        """Scores images.

        Args:
          images: list of uint8 [H, W, 3] arrays (any sizes).

        Returns:
          float32 numpy [N, n_outputs] probabilities.
        """
        batch = tf.stack([tf.image.resize(tf.cast(im, tf.float32) / 255.0,
                                          [self.image_size, self.image_size], antialias=True)
                          for im in images])
        out = self._sig(**{self._in: batch})[self._out]
        out = tf.cast(tf.reshape(out, [len(images), -1]), tf.float32)
        return (tf.nn.softmax(out) if self.outputs == "logits" else out).numpy()


def iter_tfrecord_images(paths):
    """Yields (uint8 [H, W, 3] image, set of label values) from labelled tfrecords."""
    for path in paths:
        for ex in data_loader.load_tfrecord([path], "validation+"):
            yield ex["rgb_input"].numpy(), set(np.unique(ex["label"].numpy()).tolist())


def iter_folder_images(folder, classes):
    """Yields (uint8 [H, W, 3] image, {class}) from `folder/{cc}/*` (two-digit class folders)."""
    for c in classes:
        sub = os.path.join(folder, "%02d" % c)
        if not os.path.isdir(sub):
            raise FileNotFoundError("mapping folder %r has no class folder %r (expected folder/%02d/*.jpg)"
                                    % (folder, sub, c))
        for name in sorted(os.listdir(sub)):
            if name.lower().endswith((".jpg", ".jpeg", ".png")):
                with Image.open(os.path.join(sub, name)) as im:
                    yield np.asarray(im.convert("RGB")), {c}


def _cap(images_per_class):
    """The per-class image cap: 0 or None means no cap (every image, the original's rule)."""
    if images_per_class is None or images_per_class == 0:
        return math.inf
    if isinstance(images_per_class, bool) or not isinstance(images_per_class, int) or images_per_class < 0:
        raise ValueError("mapping images per class must be an int >= 0 (0 = every image), got %r"
                         % (images_per_class,))
    return images_per_class


def default_mapping_tfrecords(dataset=datasets.DEFAULT, data=paths.DATA_DIR):
    """The labelled images the classifier scores by default: the first-step file of every class of the dataset in
    the data folder `data` (VOC: data/training_first_step/train_sequential_1-20.tfrecord, JOINT's)."""
    return (paths.first_step_file(data, "sequential", datasets.get(dataset).classes),)


DEFAULT_MAPPING_TFRECORDS = default_mapping_tfrecords()


def compute_class_mapping(classifier, classes, labelled_images, n_generator_classes,
                          images_per_class=0, batch_size=16, dataset=datasets.DEFAULT):
    """Maps each target class to the generator class of highest mean classifier confidence.

    The mean is over the softmax probabilities of every image that contains the class (the original's rule),
    or of its first `images_per_class` images when capped.

    Args:
      classifier: a Classifier (or any callable list of uint8 images -> [N, K or K+1] probabilities).
      classes: target class ids.
      labelled_images: iterable of (uint8 [H, W, 3], set of class ids in the image).
      n_generator_classes: K.
      images_per_class: 0 or None (default): every image of the class is scored; N > 0: at most N.
      batch_size: classifier batch size.
      dataset: the dataset whose class names the log shows.

    Returns:
      {class: {"generator_class", "top5": [{"class", "confidence"}], "n_images", "source": "classifier"}}.
    """
    cap = _cap(images_per_class)
    sums = {c: np.zeros(n_generator_classes, np.float64) for c in classes}
    counts = {c: 0 for c in classes}  # images taken (scored or waiting in `pending`)
    pending = []  # (image, classes it counts for)

    def flush():
        probs = np.asarray(classifier([im for im, _ in pending]))
        if probs.shape[1] == n_generator_classes + 1:
            probs = probs[:, 1:]  # TF-Slim style classifiers put a background class first.
        elif probs.shape[1] != n_generator_classes:
            raise ValueError("classifier outputs %d classes, the generator has %d (expected %d or %d)"
                             % (probs.shape[1], n_generator_classes, n_generator_classes,
                                n_generator_classes + 1))
        if not np.isfinite(probs).all():
            raise ValueError("classifier %r: non-finite (NaN or Inf) confidences for images of classes %s"
                             % (getattr(classifier, "handle", classifier),
                                sorted({c for _, wanted in pending for c in wanted})))
        for p, (_, wanted) in zip(probs, pending):
            for c in wanted:
                sums[c] += p
        pending.clear()

    with tqdm(total=None if cap == math.inf else cap * len(classes), desc="class mapping") as bar:
        for image, present in labelled_images:
            wanted = [c for c in classes if c in present and counts[c] < cap]
            if wanted:
                pending.append((image, wanted))
                for c in wanted:
                    counts[c] += 1
                bar.update(len(wanted))
            if len(pending) >= batch_size:
                flush()
            if all(counts[c] >= cap for c in classes):
                break
        if pending:
            flush()
    mapping = {}
    for c in classes:
        if counts[c] == 0:
            raise ValueError("class %d: no training image found to score for the class mapping" % c)
        mean = sums[c] / counts[c]
        top = np.argsort(-mean)[:5]
        mapping[c] = {"generator_class": int(top[0]), "n_images": counts[c], "source": "classifier",
                      "top5": [{"class": int(k), "confidence": float(mean[k])} for k in top]}
        logging.info("class %d (%s) -> generator class %d (mean confidence %.3f over %d images)", c,
                     datasets.get(dataset).class_name(c), top[0], mean[top[0]], counts[c])
    return mapping


def _load_json(path, what):
    """Parses a JSON file; ValueError naming the file when it is not valid JSON."""
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError("%s %r is not valid JSON (%s)" % (what, path, e)) from None


def read_mapping_file(path, n_generator_classes, dataset=datasets.DEFAULT):
    """Reads a user mapping: {"classes": {cls: {"generator_class": k}}} (our format) or {cls: k}.

    Class keys are ids ("1") or the dataset's class names (VOC: "aeroplane"); values are JSON integers (not
    true/false, 1.5 or "3").

    Returns:
      {class id: generator class}.

    Raises:
      FileNotFoundError: no such file. ValueError (naming the file, and the class when one is at fault): not
      JSON, not an object, a class that is neither an id nor a VOC name, a class given twice, a value that
      is not an int in [0, n_generator_classes).
    """
    if not os.path.exists(path):
        raise FileNotFoundError("mapping file %r not found" % path)
    data = _load_json(path, "mapping file")
    entries = data.get("classes", data) if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise ValueError("mapping file %r: expected a JSON object {class: generator class}" % path)
    mapping, keys, names = {}, {}, datasets.get(dataset).class_names
    for key, value in entries.items():
        c = names.index(key) if key in names else None
        if c is None:
            try:
                c = int(key)
            except ValueError:
                raise ValueError("mapping file %r: class %r is neither an id nor a %s class name"
                                 % (path, key, datasets.get(dataset).name.upper())) from None
        if c in keys:
            raise ValueError("mapping file %r: class %d is given twice (as %r and %r)"
                             % (path, c, keys[c], key))
        keys[c] = key
        k = value.get("generator_class") if isinstance(value, dict) else value
        # bool is a subclass of int in Python: JSON true would otherwise map to generator class 1.
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n_generator_classes:
            raise ValueError("mapping file %r: class %r maps to %s, expected an int in [0, %d)"
                             % (path, key, json.dumps(k), n_generator_classes))
        mapping[c] = k
    return mapping


def resolve_mapping(generator, classes, mapping_output, classifier_handle=None, mapping_file=None,
                    mapping_tfrecords=None, mapping_folder=None,
                    images_per_class=0, classifier_image_size=0, classifier_outputs="logits",
                    batch_size=16, dataset=datasets.DEFAULT):
    """Returns {class: generator class}; writes the full mapping to `mapping_output` (JSON).

    Classifier entries already in `mapping_output` (same generator size) are reused, unless a classifier is
    given and they were computed with another image cap (`images_per_class`, 0 = every image; files
    without the field were made with the former cap of 100); missing classes are computed with the
    classifier; entries of the user's `mapping_file` override both. mapping_tfrecords None: the dataset's
    (default_mapping_tfrecords).
    """
    if mapping_tfrecords is None:
        mapping_tfrecords = default_mapping_tfrecords(dataset)
    cap = 0 if _cap(images_per_class) == math.inf else images_per_class
    entries = {}
    if os.path.exists(mapping_output):
        old = _load_json(mapping_output, "mapping output")
        if not isinstance(old, dict) or not isinstance(old.get("classes", {}), dict):
            raise ValueError("mapping output %r: expected the JSON object this script writes; remove the "
                             "file to recompute the mapping" % mapping_output)
        old_cap = old.get("images_per_class", 100)  # files without the field: the former default cap
        if old.get("generator_classes") == generator.n_classes:
            entries = {int(c): e for c, e in old.get("classes", {}).items()
                       if isinstance(e, dict) and e.get("source") == "classifier"}
        if entries and old_cap != cap:
            if classifier_handle:
                logging.info("class mapping: %s was computed with %s images per class, %s asked: recomputed",
                             mapping_output, old_cap or "all", cap or "all")
                entries = {}
            else:
                logging.warning("class mapping: reused %s, computed with %s images per class (%s asked; give "
                                "--classifier to recompute)", mapping_output, old_cap or "all", cap or "all")
    user = read_mapping_file(mapping_file, generator.n_classes, dataset) if mapping_file else {}
    todo = [c for c in classes if c not in entries and c not in user]
    if todo:
        if not classifier_handle:
            raise ValueError("classes %s have no generator class: give --classifier or a --mapping_file "
                             "that covers them" % todo)
        classifier = Classifier(classifier_handle, classifier_image_size, classifier_outputs)
        if mapping_folder:
            images = iter_folder_images(mapping_folder, todo)
        else:
            missing = [p for p in mapping_tfrecords if not os.path.exists(p)]
            if missing or not mapping_tfrecords:
                raise FileNotFoundError("mapping tfrecords not found: %s (give --mapping_tfrecords or "
                                        "--mapping_folder)" % (missing or "none given"))
            images = iter_tfrecord_images(mapping_tfrecords)
        entries.update(compute_class_mapping(classifier, todo, images, generator.n_classes,
                                             images_per_class, batch_size, dataset))
    else:
        logging.info("class mapping: reused %s", mapping_output if entries else mapping_file)
    for c, k in user.items():
        entries[c] = {"generator_class": k, "source": "user"}
    doc = {"generator": str(generator.handle), "generator_classes": generator.n_classes,
           "classifier": classifier_handle or None, "images_per_class": cap,
           "classes": {str(c): dict(entries[c], name=datasets.get(dataset).class_name(c))
                       for c in sorted(entries)}}
    artifacts.write_bytes(mapping_output, json.dumps(doc, indent=1).encode())
    return {c: entries[c]["generator_class"] for c in classes}


def truncated_normal(rng, shape, bound=2.0):
    """float32 standard normal samples redrawn until all lie in [-bound, bound] (as BigGAN's sampler)."""
    z = rng.standard_normal(shape)
    bad = np.abs(z) > bound
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > bound
    return z.astype(np.float32)


def sample_images(generator, generator_class, n, truncation=1.0, seed=0, batch_size=8, image_size=0):
    """Yields n uint8 [S, S, 3] images of one generator class (deterministic for the seed).

    Args:
      generator: a Generator.
      generator_class: int in [0, generator.n_classes).
      n: number of images.
      truncation: z = truncation * truncated_normal; also given to the module.
      seed: int or tuple of ints for numpy's default_rng.
      batch_size: images per generator call.
      image_size: output side S; 0 keeps the generator's size.
    """
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = truncation * truncated_normal(rng, (m, generator.z_dim))
        images = (generator(z, generator_class, truncation) + 1.0) / 2.0  # [0, 1]
        if image_size and images.shape[1:3] != (image_size, image_size):
            images = tf.image.resize(images, [image_size, image_size], antialias=True).numpy()
        yield from to_uint8(images)


def to_uint8(images):
    """float [..] in [0, 1] -> uint8, as the original's im2int (tf.image.convert_image_dtype: scale by
    255.5, then truncate); values outside [0, 1] are clipped first."""
    return np.minimum(np.floor(np.clip(images, 0.0, 1.0) * 255.5), 255).astype(np.uint8)


def jpeg_bytes(image, quality=DEFAULT_JPEG_QUALITY):
    """uint8 [H, W, 3] -> JPEG file bytes, with Pillow's encoder (as the original, through matplotlib)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def generate(generator_handle, classes=None, output_dir=DEFAULT_OUTPUT_DIR,
             images_per_class=500, batch_size=8, truncation=1.0, seed=0, image_size=512, jpeg_dir=None,
             mapping_output=None, jpeg_quality=DEFAULT_JPEG_QUALITY, dataset=datasets.DEFAULT, **mapping_kwargs):
    """Writes `output_dir/{cc}.tfrecord` for every class (skipping complete ones).

    Args:
      generator_handle: generator path or hub handle.
      classes: target class ids; None: the dataset's GAN classes (VOC: 1..20).
      output_dir: folder of the per-class tfrecords (the data folder's replay_images/gan for TrainManager).
      images_per_class, batch_size, truncation, seed, image_size: see sample_images (the seed of class c
        is (seed, c), so a resumed run writes the same images).
      jpeg_dir: if set, also writes jpeg_dir/{cc}/{i:04d}.jpg (the same bytes as the record) for inspection.
      mapping_output: mapping JSON path (default output_dir/class_mapping.json).
      jpeg_quality: JPEG quality of the images (Pillow); the original's was Pillow's default, 75.
      dataset: the dataset (name or datasets.Dataset): its GAN classes, class names and mapping tfrecords.
      **mapping_kwargs: classifier_handle, mapping_file, mapping_tfrecords, mapping_folder,
        images_per_class (as mapping_images_per_class; 0 = every image), classifier_image_size,
        classifier_outputs.

    Returns:
      {class: generator class}.
    """
    record = datasets.get(dataset)
    classes = record.gan_classes if classes is None else classes
    generator = Generator(generator_handle)
    if "mapping_images_per_class" in mapping_kwargs:
        mapping_kwargs["images_per_class"] = mapping_kwargs.pop("mapping_images_per_class")
    mapping = resolve_mapping(generator, list(classes),
                              mapping_output or os.path.join(output_dir, "class_mapping.json"),
                              batch_size=batch_size, dataset=record, **mapping_kwargs)
    os.makedirs(output_dir, exist_ok=True)
    for c in classes:
        path = os.path.join(output_dir, paths.replay_name(c))
        if os.path.exists(path) and data_loader.count_records(path) == images_per_class:
            logging.info("class %d: %s complete, skipped", c, path)
            continue

        def examples(c=c):
            images = sample_images(generator, mapping[c], images_per_class, truncation, (seed, c), batch_size,
                                   image_size)
            for i, image in enumerate(tqdm(images, total=images_per_class, desc="class %02d" % c)):
                data = jpeg_bytes(image, jpeg_quality)
                if jpeg_dir:
                    artifacts.write_bytes(os.path.join(jpeg_dir, "%02d" % c, "%04d.jpg" % i), data)
                yield data_loader.serialize_example(data)

        try:
            count = data_loader.write_tfrecord(path, examples())
        except ValueError as e:
            raise ValueError("class %d (%s): %s; nothing written to %s"
                             % (c, record.class_name(c), e, path)) from e
        logging.info("class %d (%s): wrote %d images of generator class %d to %s", c, record.class_name(c), count,
                     mapping[c], path)
    return mapping


def define_flags(flag_values=flags.FLAGS):
    """Defines the command-line flags (only when run as a script, so importing defines none)."""
    fv = dict(flag_values=flag_values)
    flags.DEFINE_string("generator", None, "Generator: local directory or TF-Hub handle.", **fv)
    flags.DEFINE_string("classifier", None, "Classifier over the generator's classes (for the mapping).",
                        **fv)
    flags.DEFINE_enum("dataset", datasets.DEFAULT, sorted(datasets.DATASETS), "The dataset (datasets.py): its "
                      "classes and class names.", **fv)
    flags.DEFINE_list("classes", None, "Target class ids (default: the dataset's GAN classes, 1..20 for voc).",
                      **fv)
    flags.DEFINE_integer("images_per_class", 500, "Images generated per class.", lower_bound=1, **fv)
    flags.DEFINE_integer("batch_size", 8, "Generator and classifier batch size.", lower_bound=1, **fv)
    flags.DEFINE_float("truncation", 1.0, "Truncation (z scale and module input).", **fv)
    flags.DEFINE_integer("seed", 0, "Sampling seed (class c uses (seed, c)).", **fv)
    flags.DEFINE_integer("image_size", 512, "Output side in pixels (0 = generator's size).", lower_bound=0, **fv)
    flags.DEFINE_integer("jpeg_quality", DEFAULT_JPEG_QUALITY, "JPEG quality of the images (Pillow); 75 is "
                         "the original's (Pillow's default through matplotlib.image.imsave).", lower_bound=1,
                         upper_bound=100, **fv)
    flags.DEFINE_string("output_dir", DEFAULT_OUTPUT_DIR, "Folder of {cc}.tfrecord.", **fv)
    flags.DEFINE_string("jpeg_dir", None, "Optional folder of JPEGs ({cc}/{i}.jpg) for inspection.", **fv)
    flags.DEFINE_string("mapping_output", None, "Mapping JSON (default output_dir/class_mapping.json).", **fv)
    flags.DEFINE_string("mapping_file", None, "User mapping JSON {class: generator class}; overrides.", **fv)
    flags.DEFINE_list("mapping_tfrecords", None, "Labelled training tfrecords scored by the classifier (default: "
                      f"the dataset's first step of every class, {DEFAULT_MAPPING_TFRECORDS[0]} for voc).", **fv)
    flags.DEFINE_string("mapping_folder", None, "Instead of tfrecords: folder/{cc}/*.jpg per class.", **fv)
    flags.DEFINE_integer("mapping_images_per_class", 0, "Images scored per class for the mapping: 0 = every "
                         "training image that contains the class (the original's rule); N > 0 = only the "
                         "first N (faster, approximate).", lower_bound=0, **fv)
    flags.DEFINE_integer("classifier_image_size", 0, "Classifier input side (0 = module's, else 260).", **fv)
    flags.DEFINE_enum("classifier_outputs", "logits", ["logits", "probabilities"],
                      "What the classifier outputs.", **fv)
    flags.mark_flag_as_required("generator", flag_values=flag_values)
    flags.register_multi_flags_validator(["classes", "dataset"], _classes_valid, "--classes: expected class ids "
                                         "of the dataset (voc: 1..20), e.g. 1,2,20", flag_values=flag_values)
    flags.register_validator("truncation", lambda v: v > 0, "--truncation: expected a number > 0",
                             flag_values=flag_values)


def _classes_valid(values):
    n = datasets.get(values["dataset"]).n_classes
    return values["classes"] is None or all(c.strip().isdigit() and 1 <= int(c) <= n for c in values["classes"])


def main(argv):
    del argv
    f = flags.FLAGS
    classes = None if f.classes is None else [int(c) for c in f.classes]
    generate(f.generator, classes, f.output_dir, f.images_per_class, f.batch_size,
             f.truncation, f.seed, f.image_size, f.jpeg_dir, f.mapping_output, f.jpeg_quality, f.dataset,
             classifier_handle=f.classifier, mapping_file=f.mapping_file,
             mapping_tfrecords=f.mapping_tfrecords, mapping_folder=f.mapping_folder,
             mapping_images_per_class=f.mapping_images_per_class,
             classifier_image_size=f.classifier_image_size, classifier_outputs=f.classifier_outputs)


def cli():
    """The console script `recall-generate-gan`."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    cli()
