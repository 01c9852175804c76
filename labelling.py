"""The records of labelled replay and mixed labels, as the original's image-folder round trip wrote them.

Replay labelling (training.py `replay_labels`) stores every replay image with the label a network predicts;
label mixing (background inpainting) stores every new training image with its ground truth, background and void
pixels taken from the previous step's prediction. The original wrote both through two image folders
(`tfrecord_from_folder`), whose quirks are kept here behind Training's switches (README, "Behaviours of the
original"): the pairing of the two folder listings (folder_pairs), the files an earlier class left in the
temporary folder (replay_leftovers), the JPEG re-encoding (image_bytes). Training decides what to label with
which network and where it goes (TrainManager.plan); this module makes the records.
"""
import hashlib
import io
import itertools
import os

import numpy as np
import tensorflow as tf
from PIL import Image
from tqdm import tqdm

import artifacts
import data_loader

DEBUG_EVERY = 20  # every 20th labelled replay sample is also saved as image files, as the original did
# How the original's image-folder round trip (tfrecord_from_folder) pairs images and labels: Training.folder_pairing.
FOLDER_PAIRINGS = ("creation_order", "hash_order")


def replay_examples(seg, source, dataset_mean, batch_size, debug_folder, reencode_jpeg, total=None, desc=None,
                    progress=True):
    """Yields (image bytes, label PNG bytes) of every record of the replay tfrecord `source`, in order, labelled
    by `seg` (global class ids); every DEBUG_EVERY-th sample is also saved under `debug_folder` (save_debug).

    Args:
      dataset_mean: subtracted from the decoded image before `seg` sees it; the original's (0, 0, 0): raw pixels.
      batch_size: images per forward pass (predicted). reencode_jpeg: see image_bytes.
      total, desc, progress: the progress bar's length, title and whether it shows.
    """
    samples = predicted(seg, source, "images", dataset_mean, batch_size)
    for i, (raw, sample, label) in enumerate(tqdm(samples, total=total, desc=desc, leave=False,
                                                  disable=not progress)):
        if i % DEBUG_EVERY == 0:
            save_debug(debug_folder, i, sample["rgb_input"], label)
        yield image_bytes(raw, sample["rgb_input"], reencode_jpeg), png(label)


def mixed_examples(previous, source, dataset_mean, batch_size, reencode_jpeg, total=None, progress=True,
                   n_classes=data_loader.DEFAULT_N_CLASSES):
    """Yields (image bytes, mixed label PNG bytes) of every record of the labelled training tfrecord `source`, in
    order: its label with background and void pixels taken from `previous`'s prediction (mix_labels), on the
    image with `dataset_mean` subtracted. n_classes: label values below it (and void) are valid (VOC's 21 by
    default). The other arguments as replay_examples's."""
    samples = predicted(previous, source, "validation+", dataset_mean, batch_size, n_classes)
    for raw, sample, prediction in tqdm(samples, total=total, desc="label mixing", leave=False, disable=not progress):
        yield image_bytes(raw, sample["rgb_input"], reencode_jpeg), png(mix_labels(sample["label"], prediction))


def mix_labels(label, prediction):
    """Ground-truth classes are kept; background (0) and void (255) pixels take the prediction.

    Args: label, prediction: uint8 [H, W]. Returns uint8 [H, W].
    """
    label = np.asarray(label, np.uint8)
    return np.where((label == 0) | (label == 255), np.asarray(prediction, np.uint8), label).astype(np.uint8)


def replay_leftovers(counts):
    """Leftover records the original added to each labelled replay file of one temporary folder.

    Its compute_labels saves a class's n images and labels as 0..n-1 into one temporary folder, not cleared
    between the classes it labels in a row (classes 1..N0 with the step-0 model; each helper's classes; the
    folder is removed after each of these groups, and mix_label removes its own after every file), and
    tfrecord_from_folder takes every file it finds. So a file also holds the files i >= n that earlier classes
    of the group left: the most records any of them had, minus n. Args: counts: images of each file, in the
    order the original labels them. Returns the leftover records of each file (ints)."""
    most, leftovers = 0, []
    for n in counts:
        leftovers.append(max(0, most - n))
        most = max(most, n)
    return leftovers


def folder_pairs(n, pairing, digits=0):
    """The (image index, label index) of each record, in record order, of a file that the original wrote
    through two folders: image i as `str(i).zfill(digits) + ".jpg"`, its label as `... + ".png"` (i < n), then
    both folders listed by os.walk, unsorted, and the two listings paired by position (data_loader.py
    `tfrecord_from_folder` / `get_all_files`).

    "creation_order": a file system that lists a directory in creation order (XFS, btrfs) pairs every image
    with its own label, records in index order: [(0, 0), (1, 1), ...] (one that lists in reverse creation
    order, as tmpfs, gives the same pairs in reverse order). "hash_order": ext4 (dir_index) lists a directory
    in the order of a hash of the names, seeded per file system, so the two listings are two different
    permutations; here each is the names sorted by their MD5 digest, a fixed stand-in for ext4's seeded
    half-MD4: [(images[k], labels[k]) for k < n]. Returns a list of n (int, int) pairs.
    """
    if pairing not in FOLDER_PAIRINGS:
        raise ValueError(f"Training.folder_pairing: {pairing!r} is not one of {FOLDER_PAIRINGS}")
    if pairing == "creation_order":
        return [(i, i) for i in range(n)]

    def listing(extension):
        def key(i):
            return hashlib.md5(f"{str(i).zfill(digits)}.{extension}".encode(), usedforsecurity=False).digest()
        return sorted(range(n), key=key)

    return list(zip(listing("jpg"), listing("png")))


def folder_examples(pairs, pairing, digits=0):
    """Serialized examples of the (image bytes, label PNG bytes) `pairs` (an iterable, in index order) as
    the original's folder round trip stores them: paired and ordered by folder_pairs. "creation_order"
    streams; "hash_order" holds one file's encoded images and labels (a few thousand records at most)."""
    if pairing == "creation_order":
        for image, label in pairs:
            yield data_loader.serialize_example(image, label)
        return
    images, labels = [], []
    for image, label in pairs:
        images.append(image)
        labels.append(label)
    for i, j in folder_pairs(len(images), pairing, digits):
        yield data_loader.serialize_example(images[i], labels[j])


def image_bytes(raw, rgb, reencode_jpeg):
    """The image bytes a labelled-replay or mixed-label record stores: the source JPEG's `raw`, or (reencode_jpeg,
    the original) its decoded pixels `rgb` (uint8 [H, W, 3]) re-encoded at Pillow's default JPEG quality."""
    if not reencode_jpeg:
        return raw
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG")  # quality 75, as the original's Image.save(...jpg)
    return buffer.getvalue()


def predicted(seg, path, mode, dataset_mean, batch_size=1, n_classes=data_loader.DEFAULT_N_CLASSES):
    """Yields (the record's original JPEG bytes, decoded sample as numpy arrays, uint8 [H, W] prediction of
    `seg` in global class ids) for every record of `path`, in order.

    Images go through the network `batch_size` at a time; a batch of images of different sizes is padded
    (bottom and right, with 0.0 as tf.data's padded_batch) and each prediction cropped back, so batch_size 1 is
    exactly the original's per-image prediction and larger batches are exact whenever the images have one size
    (the embedded world). The file is read by data_loader.read_samples: a small one (a class's replay) without a
    tf.data pipeline, whose start-up would cost more than labelling its images.
    """
    batch = []
    for record in itertools.chain(data_loader.read_samples(path, mode, dataset_mean, n_classes), [None]):
        if record is not None:
            batch.append(record)
        if not batch or (len(batch) < batch_size and record is not None):
            continue
        sizes = [sample["input"].shape[:2] for _, sample in batch]
        images = np.zeros((len(batch), max(h for h, _ in sizes), max(w for _, w in sizes), 3), np.float32)
        for i, (_, sample) in enumerate(batch):
            images[i, :sizes[i][0], :sizes[i][1]] = sample["input"]
        predictions = seg.predict_ids(images).numpy().astype(np.uint8)
        for i, (jpeg, sample) in enumerate(batch):
            yield (jpeg, {k: v for k, v in sample.items() if k != "input"},
                   predictions[i, :sizes[i][0], :sizes[i][1]])
        batch = []


def png(label):
    """PNG bytes of a uint8 [H, W] label."""
    return tf.io.encode_png(label[..., None]).numpy()


def save_debug(folder, index, image, label):
    """Writes labelled replay sample `index` as `folder`/images/{index}.jpg (Pillow's default quality, 75),
    labels/{index}.png (class ids) and rgb_labels/{index}.png (VOC colours), each atomically: a failed write
    (a full disk) leaves no file, or the earlier one whole.

    Args:
      image: uint8 [H, W, 3]. label: uint8 [H, W] class ids.
    Raises:
      OSError: a file cannot be written; it keeps the errno and names the file (its `filename`).
    """
    for sub, array, ext in (("images", image, "jpg"), ("labels", label, "png"),
                            ("rgb_labels", data_loader.colorize(label), "png")):
        path = os.path.join(folder, sub, f"{index}.{ext}")
        data = io.BytesIO()
        Image.fromarray(array).save(data, format="JPEG" if ext == "jpg" else "PNG")
        try:
            artifacts.write_bytes(path, data.getvalue())
        except OSError as e:  # a write error names no file ("[Errno 28] No space left on device")
            raise OSError(e.errno, f"{e.strerror or e} (writing a debug image of replay labelling)", path) from e
