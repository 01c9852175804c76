"""Reads and writes the TFRecord files of RECALL and builds the tf.data input pipelines.

Record schema (the original's, so its published files load unchanged): a `tf.train.Example` with the bytes
feature `input` (JPEG image) and, for labelled records, `label` (single-channel PNG of class ids, 255 =
void). Images keep the channel order of the file; `dataset_mean` is subtracted in that order.

Modes of `load_tfrecord` (one dict per sample):
  "training":    {"input": float32 [S,S,3] mean-subtracted and augmented, "label": uint8 [S,S]}
  "validation":  {"input": float32 [H,W,3] mean-subtracted, "label": uint8 [H,W]}
  "validation+": as "validation" plus {"rgb_input": uint8 [H,W,3]}
  "images":      {"input": float32 [H,W,3] mean-subtracted, "rgb_input": uint8 [H,W,3]}
`read_samples` yields the samples of one file in the last three modes as numpy arrays, a small file without a
tf.data pipeline (a sweep reads hundreds of them: a pipeline's start-up costs more than their decoding).

Bad data: inside the pipelines a label of another size than its image, or a label value that is neither below
`n_classes` nor 255, fails a tf.debugging assertion whose message holds the file and record index. A
corrupt record or an undecodable image can only fail with TensorFlow's own message there, so call
`check_tfrecord` once per file before use: it raises ValueError naming the file and record index for all
of these.
"""

import functools
import os
import struct

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image
from tqdm import tqdm

import artifacts
import datasets

DEFAULT_MEAN = (104.00698793, 116.66876762, 122.67891434)
VOC_CLASSES = datasets.VOC.class_names  # class id -> Pascal VOC name (the dataset record's; kept for notebooks)
VOID = datasets.VOID  # the label of void pixels (object borders, unlabelled): ignored by the loss and the metrics
DEFAULT_N_CLASSES = datasets.VOC.n_classes + 1  # label values below it (background included) are valid by default
MODES = ("training", "validation", "validation+", "images")
DEFAULT_SHUFFLE_BUFFER = 1000
# A file smaller than this is read without a tf.data pipeline (read_samples, check_tfrecord): its records in one
# call of a traced loop. A pipeline's start-up (0.1-0.2 s: its functions instantiated, its threads started) costs
# more than its parallel decoding saves on a few MB of JPEG; a larger file goes through one.
EAGER_FILE_BYTES = 4 * 2 ** 20
# tf.data's default graph rewrites of a training input (training_dataset): off. The same batches (tested), and a
# stage's input starts sooner (to its first batch 374 -> 303 ms for a step of 8 replay files; BENCHMARKS.md).
INPUT_GRAPH_REWRITES = False

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_RECORD_OVERHEAD = 16  # TFRecord framing: length (8) + its CRC (4) + data CRC (4)


# ----------------------------------------------------------------------------------------------------------
# Writing records
# ----------------------------------------------------------------------------------------------------------

def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


voc_palette = datasets.voc_colour_map  # the Pascal VOC colour map, uint8 [256, 3] (kept for notebooks)


def colorize(label, dataset=datasets.DEFAULT):
    """uint8 [H, W] class ids -> uint8 [H, W, 3] colours of the dataset's palette, for label images saved for
    inspection."""
    return datasets.get(dataset).palette()[np.asarray(label, np.uint8)]


def serialize_example(image_bytes, label_bytes=None):
    """Builds one record from already-encoded files.

    Args:
      image_bytes: bytes of a JPEG file (PNG also decodes, but the schema says JPEG).
      label_bytes: bytes of a single-channel PNG of class ids, or None for an unlabelled record.

    Returns:
      bytes: a serialized tf.train.Example with `input` (and `label`).
    """
    feature = {"input": _bytes_feature(image_bytes)}
    if label_bytes is not None:
        feature["label"] = _bytes_feature(label_bytes)
    # deterministic: else the feature map's order, and so the bytes, vary between processes (hash seeds)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def encode_example(image, label=None, quality=95):
    """Encodes arrays into one record (`input` JPEG, `label` PNG).

    Args:
      image: uint8 array [H,W,3].
      label: uint8 array [H,W] (or [H,W,1]) of class ids, 255 = void; None for an unlabelled record.
      quality: JPEG quality of the image.

    Returns:
      bytes: a serialized tf.train.Example.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be uint8 [H,W,3], got {image.dtype} {image.shape}")
    label_bytes = None
    if label is not None:
        label = np.asarray(label)
        if label.ndim == 3 and label.shape[-1] == 1:
            label = label[..., 0]
        if label.dtype != np.uint8 or label.shape != image.shape[:2]:
            raise ValueError(f"label must be uint8 {image.shape[:2]} like its image, got {label.dtype} "
                             f"{label.shape}")
        label_bytes = tf.io.encode_png(label[..., None]).numpy()
    image_bytes = tf.io.encode_jpeg(image, quality=quality).numpy()
    return serialize_example(image_bytes, label_bytes)


def write_tfrecord(path, examples):
    """Writes serialized examples to `path` atomically (temporary name, then rename).

    Args:
      path: output file; its folder is created if missing.
      examples: iterable of serialized tf.train.Example bytes.

    Returns:
      int: the number of records written.
    """
    count = 0
    with artifacts.atomic_path(path, fsync=True) as tmp:
        with tf.io.TFRecordWriter(tmp) as writer:
            for example in examples:
                writer.write(example)
                count += 1
    return count


def _image_file_bytes(path):
    """File bytes when already JPEG/PNG, else the image re-encoded as JPEG."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(_JPEG_MAGIC) or data.startswith(_PNG_MAGIC):
        return data
    with Image.open(path) as im:
        return tf.io.encode_jpeg(np.asarray(im.convert("RGB")), quality=95).numpy()


def _label_file_bytes(path):
    """File bytes of a grayscale PNG label; palette or other images are re-encoded as class-id PNG.

    A palette PNG (VOC's SegmentationClass) decodes to colours in TensorFlow, so its indices are stored.
    """
    with Image.open(path) as im:
        if im.format == "PNG" and im.mode == "L":
            with open(path, "rb") as f:
                return f.read()
        if im.mode not in ("L", "P"):
            raise ValueError(f"{path}: a label must be a single-channel or palette image of class ids, "
                             f"got mode {im.mode}")
        ids = np.asarray(im)
    return tf.io.encode_png(ids.astype(np.uint8)[..., None]).numpy()


def tfrecord_from_paths(image_paths, output, label_paths=None):
    """Writes a record file from lists of image files (and label files, paired by position).

    Args:
      image_paths: list of image files (JPEG kept as is, other formats re-encoded as JPEG).
      output: output path; ".tfrecord" is appended when it has another extension (as the original).
      label_paths: list of label images (same length), or None for unlabelled records.

    Returns:
      int: the number of records written.
    """
    if os.path.splitext(output)[1] != ".tfrecord":
        output = output + ".tfrecord"
    for p in list(image_paths) + list(label_paths or []):
        if not os.path.isfile(p):
            raise FileNotFoundError(f"image or label file not found: {p}")
    if label_paths is not None and len(label_paths) != len(image_paths):
        raise ValueError(f"{len(image_paths)} images but {len(label_paths)} labels for {output}")

    def examples():
        for i in tqdm(range(len(image_paths)), desc=os.path.basename(output)):
            label = _label_file_bytes(label_paths[i]) if label_paths is not None else None
            yield serialize_example(_image_file_bytes(image_paths[i]), label)

    return write_tfrecord(output, examples())


def _list_files(folder):
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder not found: {folder}")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, f)))


def tfrecord_from_folder(folders, output, include_labels=False):
    """Writes a record file from a folder of images (and a folder of labels), as the original.

    Files are paired by sorted name; paired files must have the same name without extension.

    Args:
      folders: [image_folder] or [image_folder, label_folder].
      output: output path; ".tfrecord" is appended when it has another extension.
      include_labels: store the labels of folders[1].

    Returns:
      int: the number of records written.
    """
    images = _list_files(folders[0])
    labels = None
    if include_labels:
        if len(folders) < 2:
            raise ValueError(f"include_labels needs [image_folder, label_folder], got {folders}")
        labels = _list_files(folders[1])
        if len(labels) != len(images):
            raise ValueError(f"{folders[0]} has {len(images)} files but {folders[1]} has {len(labels)}")
        for im, lb in zip(images, labels):
            if os.path.splitext(os.path.basename(im))[0] != os.path.splitext(os.path.basename(lb))[0]:
                raise ValueError(f"image {im} is paired with label {lb}: names must match")
    return tfrecord_from_paths(images, output, labels)


# ----------------------------------------------------------------------------------------------------------
# Checking records
# ----------------------------------------------------------------------------------------------------------

def require_files(paths):
    """A list of record files from a path, a list of paths or a folder (its *.tfrecord files)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = os.fspath(paths)
        if os.path.isdir(paths):
            paths = sorted(os.path.join(paths, f) for f in os.listdir(paths) if f.endswith(".tfrecord"))
            if not paths:
                raise FileNotFoundError(f"no .tfrecord file in folder {paths}")
        else:
            paths = [paths]
    paths = [os.fspath(p) for p in paths]
    for p in paths:
        if not tf.io.gfile.exists(p):
            raise FileNotFoundError(f"tfrecord not found: {p}")
    return paths


def framed_record_count(path):
    """Records in a TFRecord file counted from its framing (fast, no decoding); None when the file is
    missing or ends inside a record (a write cut short)."""
    if not os.path.isfile(path):
        return None
    count, size = 0, os.path.getsize(path)
    with open(path, "rb") as f:
        while f.tell() < size:
            header = f.read(12)
            if len(header) < 12:
                return None
            length = struct.unpack("<Q", header[:8])[0]
            if f.tell() + length + 4 > size:
                return None
            f.seek(length + 4, os.SEEK_CUR)
            count += 1
    return count


def count_records(path):
    """Counts the records of one file.

    Returns:
      int: the number of records. Raises FileNotFoundError if missing, ValueError if corrupt.
    """
    path = require_files([path])[0]
    return sum(1 for _ in _raw_records(path))


def _check_file_end(path, index, consumed):
    """TensorFlow reads a file cut inside a record header as a clean end; the byte count tells."""
    size = tf.io.gfile.stat(path).length
    if consumed != size:
        raise ValueError(f"{path}: record {index}: corrupt TFRecord data (file truncated: {size} bytes, "
                         f"the {index} complete records take {consumed})")


def _check_record_eager(path, index, raw, n_classes, require_labels):
    """Raises ValueError naming path and index when one serialized record is unusable."""
    where = f"{path}: record {index}"
    try:
        feats = tf.train.Example.FromString(raw).features.feature
    except Exception as e:  # protobuf's DecodeError
        raise ValueError(f"{where}: not a tf.train.Example ({e})") from None
    if "input" not in feats or not feats["input"].bytes_list.value:
        raise ValueError(f"{where}: no 'input' bytes feature (expected a JPEG image)")
    try:
        image = tf.io.decode_jpeg(feats["input"].bytes_list.value[0], channels=3)
    except tf.errors.OpError as e:
        raise ValueError(f"{where}: the image cannot be decoded ({e.message})") from None
    if "label" not in feats or not feats["label"].bytes_list.value:
        if require_labels:
            raise ValueError(f"{where}: no 'label' bytes feature (expected a PNG label)")
        return
    try:
        label = tf.io.decode_png(feats["label"].bytes_list.value[0], channels=1).numpy()
    except tf.errors.OpError as e:
        raise ValueError(f"{where}: the label cannot be decoded ({e.message})") from None
    _check_label_values(where, tuple(image.shape[:2]), label[..., 0], n_classes)


def _check_label_values(where, image_hw, label, n_classes):
    if tuple(label.shape[:2]) != tuple(image_hw):
        raise ValueError(f"{where}: label size {tuple(label.shape[:2])} differs from image size "
                         f"{tuple(image_hw)}")
    if n_classes is not None:
        bad = np.unique(label[(label >= n_classes) & (label != VOID)])
        if bad.size:
            raise ValueError(f"{where}: label values {bad.tolist()} are neither a class id below "
                             f"{n_classes} nor {VOID}")


def check_tfrecord(path, n_classes=None, require_labels=True):
    """Decodes every record of a file and checks it (call once per file before training on it).

    Args:
      path: a record file.
      n_classes: label values must be < n_classes or 255; None skips the value check.
      require_labels: every record must have a `label`.

    Returns:
      int: the number of records. Raises FileNotFoundError when missing, ValueError naming the file and
      record index for a corrupt record, an undecodable image or label, a missing feature, a label of
      another size than its image, or a bad label value.
    """
    path = require_files([path])[0]
    summarize = _summary_fn(-1 if n_classes is None else int(n_classes))
    # Fast path: a small file in one call, a larger one decoded in parallel; any failure is then located record by
    # record in eager mode.
    if _small(path):
        summaries = _small_file_summaries(path, -1 if n_classes is None else int(n_classes))
    else:
        summaries = tf.data.TFRecordDataset(path).map(summarize, num_parallel_calls=tf.data.AUTOTUNE,
                                                      deterministic=True).prefetch(tf.data.AUTOTUNE)
    count = consumed = 0
    try:
        for length, image_hw, has_label, label_hw, any_bad in summaries:
            if not has_label and require_labels:
                raise ValueError(f"{path}: record {count}: no 'label' bytes feature (expected a PNG label)")
            if has_label and (any_bad or tuple(np.asarray(label_hw)) != tuple(np.asarray(image_hw))):
                break  # located and described below
            count += 1
            consumed += int(length) + _RECORD_OVERHEAD
        else:
            _check_file_end(path, count, consumed)
            return count
    except (tf.errors.OpError, UnicodeDecodeError):  # TF's message may hold undecodable record bytes
        pass
    for index, raw in enumerate(_raw_records(path)):
        _check_record_eager(path, index, raw, n_classes, require_labels)
    raise ValueError(f"{path}: unreadable (no single bad record found)")


@functools.lru_cache(maxsize=None)
def _summary_fn(n_cls):
    """check_tfrecord's summary of one serialized record (scalar string): (its length, image [H, W], has a label,
    label [H, W] (zeros without one), a label value neither below n_cls nor 255 (never when n_cls < 0)). A
    tf.function traced once per process for each n_cls."""
    def summarize(raw):
        ex = tf.io.parse_single_example(raw, {
            "input": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.string, default_value="")})
        image_hw = tf.shape(tf.io.decode_jpeg(ex["input"], channels=3))[:2]
        has_label = tf.strings.length(ex["label"]) > 0

        def label_stats():
            label = tf.io.decode_png(ex["label"], channels=1)
            bad = (tf.cast(label, tf.int32) >= n_cls) & (label != VOID) if n_cls >= 0 else \
                tf.zeros_like(label, tf.bool)
            return tf.shape(label)[:2], tf.reduce_any(bad)

        label_hw, any_bad = tf.cond(has_label, label_stats,
                                    lambda: (tf.zeros([2], tf.int32), tf.constant(False)))
        return tf.strings.length(raw), image_hw, has_label, label_hw, any_bad
    return tf.function(summarize, input_signature=[tf.TensorSpec([], tf.string)])


@functools.lru_cache(maxsize=None)
def _file_summary_fn(n_cls):
    """_summary_fn over every record of a file (raws [N]) in one call: a tensor [N, ...] of each summary."""
    summarize = _summary_fn(n_cls).python_function
    signature = (tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.bool),
                 tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.bool))
    return tf.function(lambda raws: tf.map_fn(summarize, raws, fn_output_signature=signature),
                       input_signature=[tf.TensorSpec([None], tf.string)])


def _small_file_summaries(path, n_cls):
    """Yields check_tfrecord's summary (numpy values) of each record of a small file, all computed in one call
    (_file_summary_fn); a bad record fails the call (tf.errors), as it fails the per-record summary."""
    raws = list(_eager_records(path))
    if raws:
        yield from zip(*(t.numpy() for t in _file_summary_fn(n_cls)(tf.constant(raws))))


def _small(path):
    return tf.io.gfile.stat(path).length < EAGER_FILE_BYTES


def _eager_records(path):
    """Yields the serialized records (bytes) of one file without a tf.data pipeline; the same framing and CRC
    checks as TFRecordDataset's (tf.errors.DataLossError), a file cut inside a record header read as a clean end
    alike. (tf_record_iterator is deprecated for TFRecordDataset, whose iterator costs ~20 ms a file; its warning
    is logged once per process.)"""
    return tf.compat.v1.io.tf_record_iterator(path)


def _raw_records(path):
    """Yields the raw bytes of each record; ValueError with the index where the file is corrupt."""
    index = consumed = 0
    iterator = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            raw = next(iterator).numpy()
        except StopIteration:
            _check_file_end(path, index, consumed)
            return
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            raise ValueError(f"{path}: record {index}: corrupt TFRecord data ({e.message})") from None
        yield raw
        index += 1
        consumed += len(raw) + _RECORD_OVERHEAD


# ----------------------------------------------------------------------------------------------------------
# Decoding and preprocessing
# ----------------------------------------------------------------------------------------------------------

def _records(files, sequential):
    """Dataset of (file, index in file, serialized record); round-robin over files unless sequential."""
    def per_file(f):
        return tf.data.TFRecordDataset(f).enumerate().map(lambda i, r: (f, i, r))
    if len(files) == 1:  # the same records without interleave's start-up (half of a small file's reading time)
        return per_file(tf.constant(files[0]))
    ds = tf.data.Dataset.from_tensor_slices(files)
    return ds.interleave(per_file, cycle_length=1 if sequential else len(files), block_length=1)


def _decode(file, index, raw, with_label, n_classes):
    """Decodes one record. Returns image uint8 [H,W,3] and label uint8 [H,W,1] (or None)."""
    if not with_label:
        ex = tf.io.parse_single_example(raw, {"input": tf.io.FixedLenFeature([], tf.string)})
        return tf.io.decode_jpeg(ex["input"], channels=3, fancy_upscaling=False), None
    ex = tf.io.parse_single_example(raw, {"input": tf.io.FixedLenFeature([], tf.string),
                                          "label": tf.io.FixedLenFeature([], tf.string)})
    image = tf.io.decode_jpeg(ex["input"], channels=3, fancy_upscaling=False)
    label = tf.io.decode_png(ex["label"], channels=1)
    checks = [tf.debugging.Assert(
        tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(label)[:2])),
        ["label size differs from image size in", file, "record", index,
         "image", tf.shape(image)[:2], "label", tf.shape(label)[:2]])]
    if n_classes is not None:
        bad = (tf.cast(label, tf.int32) >= n_classes) & (label != VOID)
        checks.append(tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(bad)),
            ["label value neither below", n_classes, "nor 255 in", file, "record", index,
             "values", tf.boolean_mask(label, bad)[:5]]))
    with tf.control_dependencies(checks):
        return tf.identity(image), tf.identity(label)


def _check_mean(mean):
    if len(mean) != 3:
        raise ValueError(f"dataset_mean must hold 3 values (one per channel), got {mean!r}")


def _subtract_mean(image, mean):
    return tf.cast(image, tf.float32) - tf.constant(mean, tf.float32)


def augment(image, label, size, seed):
    """Training augmentation of the original: random scale 0.5-1.5, random mirror, random crop with pad.

    Resizing follows TF1's resize_images (no half-pixel centres): bilinear for the image, nearest for the
    label. Padding goes to the bottom/right with 0 for the image (i.e. the mean, after mean subtraction)
    and 255 (void) for the label.

    Args:
      image: float32 [H,W,3], mean-subtracted.
      label: uint8 [H,W,1].
      size: int, the side S of the output crop.
      seed: int64 [2], stateless seed of this sample.

    Returns:
      image float32 [S,S,3], label uint8 [S,S].
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    scale = tf.random.stateless_uniform([], seeds[0], 0.5, 1.5)
    hw = tf.shape(image)[:2]
    new_hw = tf.maximum(tf.cast(tf.cast(hw, tf.float32) * scale, tf.int32), 1)
    image = tf.raw_ops.ResizeBilinear(images=image[None], size=new_hw, align_corners=False,
                                      half_pixel_centers=False)[0]
    label = tf.raw_ops.ResizeNearestNeighbor(images=label[None], size=new_hw, align_corners=False,
                                             half_pixel_centers=False)[0]
    mirror = tf.random.stateless_uniform([], seeds[1]) < 0.5
    image = tf.cond(mirror, lambda: tf.reverse(image, [1]), lambda: image)
    label = tf.cond(mirror, lambda: tf.reverse(label, [1]), lambda: label)
    pad_h = tf.maximum(size - new_hw[0], 0)
    pad_w = tf.maximum(size - new_hw[1], 0)
    image = tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]], constant_values=0.0)
    label = tf.pad(label, [[0, pad_h], [0, pad_w], [0, 0]], constant_values=VOID)
    top = tf.random.stateless_uniform([], seeds[2], 0, new_hw[0] + pad_h - size + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seeds[3], 0, new_hw[1] + pad_w - size + 1, dtype=tf.int32)
    image = tf.ensure_shape(image[top:top + size, left:left + size], [size, size, 3])
    label = tf.ensure_shape(label[top:top + size, left:left + size, 0], [size, size])
    return image, label


def _random_seed(seed):
    return int(np.random.SeedSequence().entropy % (2 ** 31)) if seed is None else int(seed)


# The map functions are tf.functions of the record (file, index, raw) made once per process for each distinct
# Python value they bake in (a mean, a crop size, a mode): a pipeline made with them traces no decoding again, so a
# process that reads hundreds of small files (a sweep's replay and validation files) pays the tracing once.
_RECORD_SIGNATURE = [tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.string)]


@functools.lru_cache(maxsize=None)
def _training_fn(size, mean, n_classes):
    """(counter, file, index, raw, seed, stream) -> {"input", "label"}; the augmentation seeded by (seed,
    counter * 2 + stream), all int64 scalars."""
    def fn(counter, file, index, raw, seed, stream):
        image, label = _decode(file, index, raw, with_label=True, n_classes=n_classes)
        sample_seed = tf.stack([seed, counter * 2 + stream])
        image, label = augment(_subtract_mean(image, mean), label, size, sample_seed)
        return {"input": image, "label": label}
    int64 = tf.TensorSpec([], tf.int64)
    return tf.function(fn, input_signature=[int64, *_RECORD_SIGNATURE, int64, int64])


@functools.lru_cache(maxsize=None)
def _sample_fn(mode, mean, n_classes):
    """(file, index, raw) -> the sample dict of load_tfrecord's `mode` (not "training")."""
    def fn(file, index, raw):
        image, label = _decode(file, index, raw, with_label=mode != "images", n_classes=n_classes)
        out = {"input": _subtract_mean(image, mean)}
        if label is not None:
            out["label"] = label[..., 0]
        if mode in ("validation+", "images"):
            out["rgb_input"] = image
        return out
    return tf.function(fn, input_signature=_RECORD_SIGNATURE)


# The sample dict's keys of each mode, with their dtypes (as _sample_fn makes them).
_SAMPLE_DTYPES = {"validation": {"input": tf.float32, "label": tf.uint8},
                  "validation+": {"input": tf.float32, "label": tf.uint8, "rgb_input": tf.uint8},
                  "images": {"input": tf.float32, "rgb_input": tf.uint8}}


@functools.lru_cache(maxsize=None)
def _file_fn(mode, mean, n_classes):
    """(file, raws [N]) -> {key: (its N values flattened and concatenated, their shapes [N, rank])}: the samples of
    _sample_fn for every record of a small file in one call, a graph loop over the records rather than a call per
    record (about 1 ms of call overhead each, where decoding a 64x64 record takes a tenth of that)."""
    sample = _sample_fn(mode, mean, n_classes).python_function
    dtypes = _SAMPLE_DTYPES[mode]

    def fn(file, raws):
        n = tf.size(raws)
        values = {k: tf.TensorArray(d, size=n, infer_shape=False, element_shape=[None]) for k, d in dtypes.items()}
        shapes = {k: tf.TensorArray(tf.int32, size=n) for k in dtypes}
        for i in tf.range(n):
            out = sample(file, tf.cast(i, tf.int64), raws[i])
            values = {k: values[k].write(i, tf.reshape(out[k], [-1])) for k in dtypes}
            shapes = {k: shapes[k].write(i, tf.shape(out[k])) for k in dtypes}
        return {k: (values[k].concat(), shapes[k].stack()) for k in dtypes}
    return tf.function(fn, input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([None], tf.string)])


def _small_file_samples(path, mode, mean, n_classes):
    """[sample dict of numpy arrays] of every record of a small file, in order (_file_fn)."""
    raws = list(_eager_records(path))
    if not raws:
        return raws, []
    out = _file_fn(mode, mean, n_classes)(tf.constant(path), tf.constant(raws))
    split = {}
    for k, (flat, shapes) in out.items():
        flat, shapes = flat.numpy(), shapes.numpy()
        ends = np.cumsum(np.prod(shapes, axis=1))
        split[k] = [part.reshape(shape) for part, shape in zip(np.split(flat, ends[:-1]), shapes)]
    return raws, [{k: split[k][i] for k in split} for i in range(len(raws))]


def _key(mean, n_classes):
    """The mean and n_classes as keys of the map functions' caches (the same constants in the graph)."""
    return tuple(float(m) for m in mean), None if n_classes is None else int(n_classes)


def _training_map(size, mean, n_classes, seed, stream):
    """Map function over (counter, (file, index, raw)) -> {"input", "label"}; seeds from (seed, counter)."""
    fn = _training_fn(size, *_key(mean, n_classes))
    return lambda counter, record: fn(counter, *record, tf.constant(seed, tf.int64), tf.constant(stream, tf.int64))


def load_tfrecord(paths, mode, train_image_size=None, dataset_mean=DEFAULT_MEAN, n_classes=DEFAULT_N_CLASSES,
                  seed=None):
    """Loads record files as a dataset of per-sample dicts (no batching, no shuffling, no repeat).

    Args:
      paths: a record file, a list of them, or a folder (its *.tfrecord files, sorted).
      mode: "training", "validation", "validation+" or "images" (see the module docstring).
      train_image_size: crop side S, required for "training".
      dataset_mean: 3 floats subtracted from the image, in the file's channel order.
      n_classes: label values must be < n_classes or 255 (checked in the pipeline); None skips it.
      seed: int making the "training" augmentation repeatable; None draws one.

    Returns:
      tf.data.Dataset of dicts, files read in order.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    files = require_files(paths)
    _check_mean(dataset_mean)
    records = _records(files, sequential=True)
    if mode == "training":
        if not train_image_size:
            raise ValueError("mode 'training' needs train_image_size")
        fn = _training_map(int(train_image_size), dataset_mean, n_classes, _random_seed(seed), 0)
        return records.enumerate().map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return records.map(_sample_fn(mode, *_key(dataset_mean, n_classes)), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)


def read_samples(path, mode, dataset_mean=DEFAULT_MEAN, n_classes=DEFAULT_N_CLASSES):
    """Yields every record of one file, in order, as (its `input` bytes (the stored JPEG), its sample: a dict of
    numpy arrays as load_tfrecord's `mode` makes it, bit for bit).

    For the many small files of a sweep (a class's replay, a validation file): a file under EAGER_FILE_BYTES is
    decoded whole in one call of a traced loop (_file_fn), without the start-up of a tf.data pipeline; a larger one
    in parallel through load_tfrecord's. Bad data fails as in load_tfrecord (tf.errors naming the file and record index).

    Args:
      path: a record file. mode: "validation", "validation+" or "images".
      dataset_mean, n_classes: as load_tfrecord's.
    """
    if mode not in MODES or mode == "training":
        raise ValueError(f"mode must be one of {MODES[1:]}, got {mode!r}")
    path = require_files([path])[0]
    _check_mean(dataset_mean)
    fn = _sample_fn(mode, *_key(dataset_mean, n_classes))
    if _small(path):
        samples = zip(*_small_file_samples(path, mode, *_key(dataset_mean, n_classes)))
    else:
        samples = _records([path], sequential=True).map(
            lambda file, index, raw: (raw, fn(file, index, raw)), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True).prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
    for raw, sample in samples:
        yield tf.train.Example.FromString(raw).features.feature["input"].bytes_list.value[0], sample


def _training_stream(paths, size, mean, n_classes, seed, stream, buffer_size, sequential):
    files = require_files(paths)
    ds = _records(files, sequential=sequential)
    ds = ds.shuffle(buffer_size, seed=seed + stream, reshuffle_each_iteration=True).repeat()
    fn = _training_map(size, mean, n_classes, seed, stream)
    return ds.enumerate().map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _batch_shuffled_stream(paths, size, mean, n_classes, seed, batch_size, buffer_size):
    """The original's first-step and helper input (`.batch(b).shuffle(1000).repeat()`): batches of
    consecutive records in file order, whole batches shuffled, every epoch anew. An epoch's last partial batch
    is dropped (the original trained on it as a smaller batch)."""
    files = require_files(paths)
    ds = _records(files, sequential=True).batch(batch_size, drop_remainder=True)
    ds = ds.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True).repeat().unbatch()
    fn = _training_map(size, mean, n_classes, seed, 0)
    return ds.enumerate().map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def training_dataset(paths_new, paths_old, ratio_new, ratio_old, batch_size, train_image_size,
                     dataset_mean=DEFAULT_MEAN, seed=None, n_classes=DEFAULT_N_CLASSES,
                     buffer_size=DEFAULT_SHUFFLE_BUFFER, sequential_files=False, shuffle_batches=False):
    """The training input: new and replay samples blended, shuffled, augmented, repeated, batched.

    Samples come in the fixed pattern ratio_new x new, ratio_old x old, ..., so a batch of
    batch_size == ratio_new + ratio_old (or a multiple) holds exactly that ratio, new samples first (the
    original's interleave_datasets: with 4:4 at batch 4, pure new and pure replay batches alternate).

    Each stream is shuffled by record with a buffer of `buffer_size` records and repeated. The original
    (data_loader.load_tfrecord over a file list) reads a stream's files one after another
    (`sequential_files=True`): with a buffer smaller than the stream, the first records come from the first
    files only; `sequential_files=False` reads the files round-robin, one record each in turn.

    Args:
      paths_new: record file(s) of the current step.
      paths_old: replay record file(s); None/empty or ratio_old == 0 means new samples only.
      ratio_new, ratio_old: interleave ratios (either may be 0, not both).
      batch_size: samples per batch.
      train_image_size: crop side S.
      dataset_mean: 3 floats, subtracted in the file's channel order.
      seed: int making shuffling and augmentation repeatable; None draws one.
      n_classes: label values must be < n_classes or 255; None skips the check.
      buffer_size: shuffle buffer of each stream, in records (in batches with shuffle_batches).
      sequential_files: read a stream's files one after another instead of round-robin.
      shuffle_batches: new samples only: shuffle whole batches of consecutive records instead of records,
        as the original's first step and helpers did.

    Returns:
      tf.data.Dataset of (images float32 [B,S,S,3], labels uint8 [B,S,S]), endless, prefetched.
    """
    if ratio_new < 0 or ratio_old < 0:
        raise ValueError(f"interleave ratios must be >= 0, got new={ratio_new} old={ratio_old}")
    use_new = ratio_new > 0 and bool(paths_new)
    use_old = ratio_old > 0 and bool(paths_old)
    if not use_new and not use_old:
        raise ValueError(f"no training data: ratio_new={ratio_new} with paths_new={paths_new!r}, "
                         f"ratio_old={ratio_old} with paths_old={paths_old!r}")
    if shuffle_batches and use_old:
        raise ValueError("shuffle_batches applies to a stream of new samples only (first step, helpers)")
    _check_mean(dataset_mean)
    seed = _random_seed(seed)
    size = int(train_image_size)
    streams, pattern = [], []
    if shuffle_batches:
        streams.append(_batch_shuffled_stream(paths_new, size, dataset_mean, n_classes, seed, batch_size,
                                              buffer_size))
        pattern.append(0)
    else:
        if use_new:
            pattern += [len(streams)] * int(ratio_new)
            streams.append(_training_stream(paths_new, size, dataset_mean, n_classes, seed, 0, buffer_size,
                                            sequential_files))
        if use_old:
            pattern += [len(streams)] * int(ratio_old)
            streams.append(_training_stream(paths_old, size, dataset_mean, n_classes, seed, 1, buffer_size,
                                            sequential_files))
    if len(streams) == 1:
        ds = streams[0]
    else:
        choice = tf.data.Dataset.from_tensor_slices(tf.constant(pattern, tf.int64)).repeat()
        ds = tf.data.Dataset.choose_from_datasets(streams, choice)
    logging.info("training input: new %s x%d, old %s x%d, batch %d, crop %d, seed %d, buffer %d%s%s",
                 paths_new, ratio_new if use_new else 0, paths_old, ratio_old if use_old else 0,
                 batch_size, size, seed, buffer_size, " (files in order)" if sequential_files else "",
                 " (batches shuffled)" if shuffle_batches else "")
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = INPUT_GRAPH_REWRITES
    return ds.map(lambda d: (d["input"], d["label"])).batch(batch_size, drop_remainder=True) \
        .prefetch(tf.data.AUTOTUNE).with_options(options)
