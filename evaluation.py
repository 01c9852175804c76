"""Validation of a network on labelled tfrecords: the mean loss and the confusion matrix the results files are
printed from (metrics.py computes every number from it). training.Training validates each step with evaluate();
`training.evaluate` is the same function.
"""
import itertools

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from context import default_context, file_identity
import data_loader
import metrics
import model


def evaluate(seg, paths, classes, n_classes, dataset_mean, batch_size=1, progress=True, context=None):
    """Mean loss over images and confusion matrix of `seg` on validation tfrecords.

    Only pixels labelled with one of `classes` count (void and unseen classes are left out), as the original.
    Args:
      batch_size: images per forward pass; 1 is the original (full images of any size). Larger batches pad
        images of different sizes (label 255 in the padding, so padded pixels are never counted); a batch holds
        the images of one file.
      context: the context.Context whose decoded samples are reused (Context.decoded_samples); None: the
        process's.
    Returns (float mean loss over images, int64 numpy [n_classes, n_classes]).
    """
    label_map = tf.constant(model.make_label_map(classes), tf.int32)
    step = seg.compiled.get(("evaluate", n_classes))
    if step is None:  # traced once per network: the classes come in as a tensor
        step = seg.compiled[("evaluate", n_classes)] = tf.function(
            lambda features, labels, label_map: _evaluate_batch(seg, features, labels, label_map, n_classes),
            reduce_retracing=True)
    context = context or default_context()
    losses, cm = [], np.zeros((n_classes, n_classes), np.int64)
    batches = ((features, labels) for path in data_loader.require_files(paths)
               for features, labels in _encoded_batches(seg, path, n_classes, dataset_mean, batch_size, context))
    for features, labels in tqdm(batches, desc="validation", leave=False, disable=not progress):
        per_image, c = step(features, labels, label_map)
        losses.extend(per_image.numpy().tolist())
        cm += c.numpy()
    return (float(np.mean(losses)) if losses else float("nan")), cm


def _encoded_batches(seg, path, n_classes, dataset_mean, batch_size, context):
    """Yields the (encoder features, labels uint8 [B, H, W]) of the batches of one validation file (a batch never
    spans two files). The features of a network whose encoder equals a checkpoint file (its `holds`,
    training.Training._load) are computed once per process (Context.encoded) when the file's take at most
    ENCODED_FILE_BYTES (the embedded benchmark's): every later step of a frozen encoder, and every experiment on the
    same step-0 encoder, validates on them. Exact: an image's features do not depend on the other images of its
    batch (tests/test_validation_input.py). Larger files (real VOC's) are encoded batch by batch at each call."""
    samples = context.decoded_samples(path, n_classes)
    encode = seg.compiled.get("encode")
    if encode is None:
        encode = seg.compiled["encode"] = tf.function(seg.encode, reduce_retracing=True)
    held = getattr(seg, "holds", None)
    size = sum(-(-image.shape[0] // 8) * -(-image.shape[1] // 8) for image, _ in samples) \
        * seg.encoder.output_shape[-1] * 4  # float32 features at output stride 8 (padding aside)
    if held is None or held[0] is None or held[0][1] is None or size > ENCODED_FILE_BYTES:
        for images, labels in _padded_batches(samples, batch_size, dataset_mean):  # one batch at a time
            yield encode(tf.constant(images)), labels
        return
    key = (held[0], getattr(seg, "precision", None), file_identity(path), n_classes,
           tuple(map(float, dataset_mean)), batch_size)
    yield from context.encoded(key, lambda: [(encode(tf.constant(images)), labels) for images, labels
                                             in _padded_batches(samples, batch_size, dataset_mean)])


# The largest validation file whose encoder features Context.encoded keeps: the embedded benchmark's (20 to 400 images
# of 64x64: 2.6 to 52 MB), not real VOC's (33 MB per image of 512x512 at 2048 channels).
ENCODED_FILE_BYTES = 64 * 2 ** 20


def _padded_batches(samples, batch_size, dataset_mean):
    """Batches of (image uint8 [H, W, 3], label uint8 [H, W]) samples as tf.data's padded_batch makes them from
    data_loader's "validation" mode: images float32 mean-subtracted, padded (bottom and right) to the batch's
    largest with 0.0, labels with 255 (void). Yields (float32 [B, H, W, 3], uint8 [B, H, W]) numpy arrays."""
    mean = np.asarray(dataset_mean, np.float32)
    batch = []
    for sample in itertools.chain(samples, [None]):
        if sample is not None:
            batch.append(sample)
        if batch and (len(batch) == batch_size or sample is None):
            h = max(image.shape[0] for image, _ in batch)
            w = max(image.shape[1] for image, _ in batch)
            images = np.zeros((len(batch), h, w, 3), np.float32)
            labels = np.full((len(batch), h, w), data_loader.VOID, np.uint8)
            for i, (image, label) in enumerate(batch):
                images[i, :image.shape[0], :image.shape[1]] = image.astype(np.float32) - mean
                labels[i, :label.shape[0], :label.shape[1]] = label
            yield images, labels
            batch = []


def _evaluate_batch(seg, features, labels, label_map, n_classes):
    """(per-image mean cross-entropy over the counted pixels [B], confusion matrix of the batch) from the encoder
    features of a batch whose labels are `labels` (the logits are upsampled to the labels' size, the images')."""
    logits = seg.decode(features, tf.shape(labels)[1:3])
    targets = tf.gather(label_map, tf.cast(labels, tf.int32))
    counted = tf.not_equal(targets, data_loader.VOID)
    valid = tf.cast(counted, tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.where(counted, targets, 0), logits=logits)
    per_image = tf.math.divide_no_nan(tf.reduce_sum(ce * valid, [1, 2]), tf.reduce_sum(valid, [1, 2]))
    preds = tf.gather(tf.constant(seg.class_ids, tf.int32), tf.argmax(logits, -1, output_type=tf.int32))
    return per_image, metrics.masked_confusion_matrix(labels, preds, counted, n_classes)
