"""GAN replay: class-conditional images for every old class, as RECALL's GAN replay source.

Loads a class-conditional generator with `tensorflow_hub.load` (BigGAN-deep in the legacy TF1 Hub format,
or a TF2 SavedModel with the same inputs), maps every target class (the dataset's GAN classes, datasets.py: VOC
ids 1..20, ADE20K's 1..150 with `--dataset ade20k`) to a generator class, and writes
`data/replay_images/gan/{cc}.tfrecord` (paths.replay_file: images only, JPEG, class in at least two digits: 01,
20, 101).

The class mapping (the classifier, the mapping JSON and its report `<mapping>.md`, `--min_confidence` and
`--exclude_classes`) is gan/class_mapping.py's; its names are importable from this module as well.

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
- classifier: see gan/class_mapping.py.

Example:
  python gan/generate_gan.py --generator=https://tfhub.dev/deepmind/biggan-deep-512/1 \
      --classifier=https://tfhub.dev/google/efficientnet/b2/classification/1
  # ADE20K, prepared under ./ade20k/data (config/bases/ADE20K.gin's base folder); the mapping images default to
  # the data folder's train_overlapped_1-150.tfrecord
  python gan/generate_gan.py --dataset=ade20k --data_dir=ade20k/data --min_confidence=0.2 \
      --generator=... --classifier=...
"""

import io
import numbers
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
from gan.class_mapping import _input_specs, _pick_output, _signatures
# The class mapping's public names, re-exported: tests, embedded_benchmark and notebooks import them from here.
from gan.class_mapping import (  # noqa: F401
    DEFAULT_CLASSIFIER_SIZE, DEFAULT_MAPPING_TFRECORDS, Classifier, compute_class_mapping, default_mapping_tfrecords,
    excluded_classes, iter_folder_images, iter_tfrecord_images, mapping_report, read_mapping_file, report_path,
    resolve_mapping, write_mapping_report)

DEFAULT_OUTPUT_DIR = paths.replay_dir(paths.DATA_DIR, "gan")
# The original wrote its GAN images with matplotlib.image.imsave(".jpg"), which calls Pillow's JPEG encoder
# without a quality: Pillow's default, 75.
DEFAULT_JPEG_QUALITY = 75
# Outputs may pass +-1 by float rounding (one bfloat16 step above 1 is 2^-7 = 0.0078, a float16's 2^-10): values
# within this margin of [-1, 1] are accepted (to_uint8 clips them); farther ones break the contract.
OUTPUT_RANGE_MARGIN = 0.01


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
        classifier_outputs, min_confidence, exclude_classes (resolve_mapping: the classes they exclude get no
        record, and an earlier run's record of theirs is removed).

    Returns:
      {class: generator class} of the classes written (the excluded ones left out).
    """
    record = datasets.get(dataset)
    classes = list(record.gan_classes if classes is None else classes)
    outside = [c for c in classes
               if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 1 <= c <= record.n_classes]
    if outside:
        raise ValueError("classes %s are not class ids of %s; expected ids in 1..%d"
                         % (outside, record.name, record.n_classes))
    classes = [int(c) for c in classes]
    generator = Generator(generator_handle)
    if "mapping_images_per_class" in mapping_kwargs:
        mapping_kwargs["images_per_class"] = mapping_kwargs.pop("mapping_images_per_class")
    mapping = resolve_mapping(generator, list(classes),
                              mapping_output or os.path.join(output_dir, "class_mapping.json"),
                              batch_size=batch_size, dataset=record, **mapping_kwargs)
    os.makedirs(output_dir, exist_ok=True)
    for c in classes:
        path = os.path.join(output_dir, paths.replay_name(c))
        if c not in mapping:  # excluded: no record, not even an earlier run's, which an experiment would read
            if os.path.exists(path):
                os.remove(path)
                logging.warning("class %d (%s): excluded, removed its record %s of an earlier run", c,
                                record.class_name(c), path)
            continue
        if os.path.exists(path) and data_loader.count_records(path) == images_per_class:
            logging.info("class %d: %s complete, skipped", c, path)
            continue

        def examples(c=c):
            images = sample_images(generator, mapping[c], images_per_class, truncation, (seed, c), batch_size,
                                   image_size)
            desc = "class " + paths.class_folder_name(c)
            for i, image in enumerate(tqdm(images, total=images_per_class, desc=desc)):
                data = jpeg_bytes(image, jpeg_quality)
                if jpeg_dir:
                    artifacts.write_bytes(os.path.join(paths.web_class_dir(jpeg_dir, c), "%04d.jpg" % i), data)
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
    flags.DEFINE_string("data_dir", paths.DATA_DIR, "The data folder (prepare_data's --output_dir; ade20k/data for "
                        "config/ade20k/): default of --output_dir (<data_dir>/replay_images/gan) and of "
                        "--mapping_tfrecords.", **fv)
    flags.DEFINE_list("classes", None, "Target class ids (default: the dataset's GAN classes, 1..20 for voc, "
                      "1..150 for ade20k).", **fv)
    flags.DEFINE_float("min_confidence", 0.0, "Classes whose mapping has a mean classifier confidence below this "
                       "get no GAN record (listed in the log and the mapping report, <mapping>.md, as 'excluded: "
                       "use web replay': bind TrainManager.web_replay_classes); 0 keeps every class.",
                       lower_bound=0.0, upper_bound=1.0, **fv)
    flags.DEFINE_list("exclude_classes", [], "Class ids that get no GAN record whatever their mapping (use web "
                      "replay: TrainManager.web_replay_classes), e.g. 1,3,4 (ade20k's wall, sky, floor).", **fv)
    flags.DEFINE_integer("images_per_class", 500, "Images generated per class.", lower_bound=1, **fv)
    flags.DEFINE_integer("batch_size", 8, "Generator and classifier batch size.", lower_bound=1, **fv)
    flags.DEFINE_float("truncation", 1.0, "Truncation (z scale and module input).", **fv)
    flags.DEFINE_integer("seed", 0, "Sampling seed (class c uses (seed, c)).", **fv)
    flags.DEFINE_integer("image_size", 512, "Output side in pixels (0 = generator's size).", lower_bound=0, **fv)
    flags.DEFINE_integer("jpeg_quality", DEFAULT_JPEG_QUALITY, "JPEG quality of the images (Pillow); 75 is "
                         "the original's (Pillow's default through matplotlib.image.imsave).", lower_bound=1,
                         upper_bound=100, **fv)
    flags.DEFINE_string("output_dir", None, "Folder of {cc}.tfrecord (default <data_dir>/replay_images/gan, "
                        f"{DEFAULT_OUTPUT_DIR}).", **fv)
    flags.DEFINE_string("jpeg_dir", None, "Optional folder of JPEGs ({cc}/{i}.jpg) for inspection.", **fv)
    flags.DEFINE_string("mapping_output", None, "Mapping JSON (default output_dir/class_mapping.json).", **fv)
    flags.DEFINE_string("mapping_file", None, "User mapping JSON {class: generator class}; overrides.", **fv)
    flags.DEFINE_list("mapping_tfrecords", None, "Labelled training tfrecords scored by the classifier (default: "
                      "the data folder's first step of every class: "
                      f"{os.path.basename(DEFAULT_MAPPING_TFRECORDS[0])} for voc, "
                      f"{os.path.basename(default_mapping_tfrecords(datasets.ADE20K)[0])} for ade20k).", **fv)
    flags.DEFINE_string("mapping_folder", None, "Instead of tfrecords: folder/{cc}/*.jpg per class.", **fv)
    flags.DEFINE_integer("mapping_images_per_class", 0, "Images scored per class for the mapping: 0 = every "
                         "training image that contains the class (the original's rule); N > 0 = only the "
                         "first N (faster, approximate).", lower_bound=0, **fv)
    flags.DEFINE_integer("classifier_image_size", 0, "Classifier input side (0 = module's, else 260).", **fv)
    flags.DEFINE_enum("classifier_outputs", "logits", ["logits", "probabilities"],
                      "What the classifier outputs.", **fv)
    flags.mark_flag_as_required("generator", flag_values=flag_values)
    flags.register_multi_flags_validator(["classes", "dataset"], _classes_valid, "--classes: expected class ids "
                                         "of the dataset (voc: 1..20, ade20k: 1..150), e.g. 1,2,20",
                                         flag_values=flag_values)
    flags.register_multi_flags_validator(["exclude_classes", "dataset"], _exclude_classes_valid, "--exclude_classes: "
                                         "expected class ids of the dataset (voc: 1..20, ade20k: 1..150), e.g. 1,3,4",
                                         flag_values=flag_values)
    flags.register_validator("truncation", lambda v: v > 0, "--truncation: expected a number > 0",
                             flag_values=flag_values)


def _classes_valid(values):
    n = datasets.get(values["dataset"]).n_classes
    return values["classes"] is None or all(c.strip().isdigit() and 1 <= int(c) <= n for c in values["classes"])


def _exclude_classes_valid(values):
    return _classes_valid({"classes": values["exclude_classes"], "dataset": values["dataset"]})


def main(argv):
    del argv
    f = flags.FLAGS
    classes = None if f.classes is None else [int(c) for c in f.classes]
    output_dir = f.output_dir or paths.replay_dir(f.data_dir, "gan")
    mapping_tfrecords = f.mapping_tfrecords or list(default_mapping_tfrecords(f.dataset, f.data_dir))
    generate(f.generator, classes, output_dir, f.images_per_class, f.batch_size,
             f.truncation, f.seed, f.image_size, f.jpeg_dir, f.mapping_output, f.jpeg_quality, f.dataset,
             classifier_handle=f.classifier, mapping_file=f.mapping_file,
             mapping_tfrecords=mapping_tfrecords, mapping_folder=f.mapping_folder,
             mapping_images_per_class=f.mapping_images_per_class,
             classifier_image_size=f.classifier_image_size, classifier_outputs=f.classifier_outputs,
             min_confidence=f.min_confidence, exclude_classes=[int(c) for c in f.exclude_classes])


def cli():
    """The console script `recall-generate-gan`."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    cli()
