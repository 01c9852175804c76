"""The loss terms of the methods (RECALL's masked cross-entropy; the baselines LwF, ILT, MiB, PLOP) as
TensorFlow functions on tensors; methods/ puts them together per method.

Shapes (channels-last, as the rest of this project): logits float [B, H, W, C]; labels int [B, H, W] of
output indices, 255 = ignored (VOID); features float [B, h, w, D]. The current model's outputs 0..n_old-1 are
the old classes (0 = background), n_old..C-1 the new ones; the previous model has n_old outputs, so n_old is
always read from `old_logits.shape[-1]`. Pass only the outputs seen so far: this project's decoder keeps 21
outputs at every step, so slice logits to [..., :n_old + n_new] and old logits to [..., :n_old] first (the
unbiased terms sum over "every class that is not old", which must not include future classes).

Reductions follow the reference code exactly. Its criteria run with reduction='none' and the trainer then
calls `.mean()`, so every pixel term is averaged over ALL B*H*W pixels, ignored (255) ones included (they
count as 0): cross_entropy, unbiased_cross_entropy and the PLOP classification loss. This differs from
RECALL's masked_cross_entropy, which divides by the valid pixels only. Both distillations are averaged over all
pixels too (no mask) and, per pixel, divided by n_old (a mean over the old classes, not a sum).

Sources (reference code; every weight / temperature below is a parameter with the reference default):
- fcdl94/MiB (Cermelli et al., CVPR 2020), utils/loss.py: `UnbiasedCrossEntropy` -> unbiased_cross_entropy,
  `KnowledgeDistillationLoss` -> distillation, `UnbiasedKnowledgeDistillationLoss` -> unbiased_distillation;
  train.py `Trainer.train`: total = CE(.mean()) + loss_kd * KD + loss_de * nn.MSELoss()(features['body'],
  features_old['body']) -> feature_distillation; argparser.py `modify_command_options`: LWF loss_kd=100; ILT
  loss_kd=100, loss_de=100; MiB loss_kd=10 with unce, unkd, init_balanced; `--alpha` default 1.0;
  segmentation_module.py `IncrementalSegmentationModule.init_new_classifier` -> mib_initialize.
- arthurdouillard/CVPR2021_PLOP (Douillard et al., CVPR 2021), argparser.py `modify_command_options`
  (method PLOP): pod="local", pod_factor=0.01, pod_logits=True, pod_options={"switch": {"after":
  {"extra_channels": "sum", "factor": 0.0005, "type": "local"}}}, pseudo="entropy", threshold=0.001,
  classif_adaptive_factor=True, init_balanced=True; defaults spp_scales=[1, 2, 4], pod_prepro="pow",
  no_pod_schedule=False, pseudo_nb_bins=None (100 bins for entropy), classif_adaptive_min_factor=0.0.
  train.py: `entropy` -> plop_entropy, `Trainer.find_median` -> entropy_histogram + entropy_thresholds,
  the "entropy" branch of `Trainer.train` -> plop_pseudo_labels, `features_distillation` + `_local_pod`
  -> local_pod + pod_embedding. segmentation_module.py: the POD maps are the four ResNet stages' outputs
  before their last activation (models/resnet.py, modules/residual.py `ResidualBlock` returns (act, x)),
  the head's output ("pre_logits") and, with pod_logits, the logits before upsampling.
"""

import math
import re

import numpy as np
import tensorflow as tf

from data_loader import VOID

REDUCTIONS = ("mean", "none")
MEDIANS = ("reference", "histogram")
POD_PREPRO = ("pow", "none")


def _n_old(old_logits, logits=None):
    n_old = old_logits.shape[-1]
    if n_old is None or n_old < 1:
        raise ValueError(f"old_logits need a known number of outputs (last axis), got shape {old_logits.shape}")
    if logits is not None and (logits.shape[-1] is None or logits.shape[-1] < n_old):
        raise ValueError(f"logits {logits.shape} should have at least the {n_old} outputs of old_logits")
    return int(n_old)


def _reduce(per_pixel, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return tf.reduce_mean(per_pixel) if reduction == "mean" else per_pixel


# ----------------------------------------------------------------------------------------------------------
# RECALL's (the original's) loss
# ----------------------------------------------------------------------------------------------------------

def masked_cross_entropy(logits, targets):
    """Softmax cross-entropy summed over pixels whose target is not 255 (the original's loss of every stage).

    Args: logits float32 [B, H, W, C]; targets int32 [B, H, W] in [0, C) or 255.
    Returns: (sum of the losses, number of counted pixels), both float32 scalars.
    """
    valid = tf.not_equal(targets, VOID)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.where(valid, targets, 0), logits=logits)
    valid = tf.cast(valid, tf.float32)
    return tf.reduce_sum(losses * valid), tf.reduce_sum(valid)


# ----------------------------------------------------------------------------------------------------------
# Classification terms
# ----------------------------------------------------------------------------------------------------------

def cross_entropy(logits, labels, pixel_weights=None, reduction="mean"):
    """Softmax cross-entropy, 0 at ignored pixels, averaged over all pixels (the reference's
    nn.CrossEntropyLoss(ignore_index=255, reduction='none') followed by .mean()).

    Args:
      logits: float [B, H, W, C]. labels: int [B, H, W] in [0, C) or 255.
      pixel_weights: None or float broadcastable to [B, H, W] (PLOP's per-image adaptive factor [B, 1, 1]).
      reduction: "mean" (over all B*H*W pixels) or "none" (float32 [B, H, W]).
    Returns: float32 scalar, or [B, H, W] with reduction "none".
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, VOID)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.where(valid, labels, 0), logits=logits)
    losses = tf.where(valid, losses, 0.0)
    if pixel_weights is not None:
        losses = losses * tf.cast(pixel_weights, tf.float32)
    return _reduce(losses, reduction)


def unbiased_cross_entropy(logits, labels, n_old, reduction="mean"):
    """MiB's unbiased cross-entropy (UnbiasedCrossEntropy).

    A pixel labelled with an old class (background included: label < n_old) is trained towards
    log p(background or any old class) = logsumexp(logits[..., :n_old]) - logsumexp(logits); a new-class pixel
    towards its own log-softmax; an ignored pixel contributes 0 and still counts in the mean.

    Args:
      logits: float [B, H, W, C], C > n_old. labels: int [B, H, W] in [0, C) or 255. n_old: int.
      reduction: "mean" (over all pixels) or "none".
    Returns: float32 scalar, or [B, H, W].
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    if not 1 <= n_old <= (logits.shape[-1] or 0):
        raise ValueError(f"n_old={n_old} should be in [1, {logits.shape[-1]}] (the logits' outputs)")
    den = tf.reduce_logsumexp(logits, axis=-1)
    log_p_old = tf.reduce_logsumexp(logits[..., :n_old], axis=-1) - den
    valid = tf.not_equal(labels, VOID)
    old = tf.logical_and(valid, labels < n_old)
    new_labels = tf.where(tf.logical_and(valid, tf.logical_not(old)), labels, 0)
    nll_new = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=new_labels, logits=logits)
    losses = tf.where(old, -log_p_old, nll_new)
    return _reduce(tf.where(valid, losses, 0.0), reduction)


# ----------------------------------------------------------------------------------------------------------
# Distillation terms
# ----------------------------------------------------------------------------------------------------------

def distillation(logits, old_logits, alpha=1.0, reduction="mean"):
    """Output distillation of LwF and ILT (MiB's KnowledgeDistillationLoss).

    Per pixel: -(1/n_old) * sum_c softmax(alpha * old_logits)_c * log_softmax(logits[..., :n_old])_c. The
    current model's softmax is taken over the old outputs only; alpha (`--alpha`) scales the previous model's
    logits only (alpha = 1/temperature of the targets).

    Args: logits float [B, H, W, C]; old_logits float [B, H, W, n_old]; alpha float; reduction "mean" | "none".
    Returns: float32 scalar (mean over all pixels), or [B, H, W].
    """
    n_old = _n_old(old_logits, logits)
    log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32)[..., :n_old], axis=-1)
    q = tf.nn.softmax(tf.cast(old_logits, tf.float32) * alpha, axis=-1)
    return _reduce(-tf.reduce_mean(q * log_p, axis=-1), reduction)


def unbiased_distillation(logits, old_logits, alpha=1.0, reduction="mean"):
    """MiB's unbiased knowledge distillation (UnbiasedKnowledgeDistillationLoss).

    The previous model's background probability is matched to the current model's probability of background
    OR any new class (logsumexp over outputs 0 and n_old..C-1, minus logsumexp over all); old classes 1..n_old-1
    are matched one to one. Per pixel: -(1/n_old) * [q_0 * log p_bg+new + sum_{c=1}^{n_old-1} q_c log p_c],
    q = softmax(alpha * old_logits), p = softmax(logits) over all C outputs.

    Args: logits float [B, H, W, C]; old_logits float [B, H, W, n_old]; alpha float; reduction "mean" | "none".
    Returns: float32 scalar (mean over all pixels), or [B, H, W].
    """
    n_old = _n_old(old_logits, logits)
    logits = tf.cast(logits, tf.float32)
    den = tf.reduce_logsumexp(logits, axis=-1)
    log_bg = tf.reduce_logsumexp(tf.concat([logits[..., :1], logits[..., n_old:]], axis=-1), axis=-1) - den
    log_old = logits[..., 1:n_old] - den[..., None]
    q = tf.nn.softmax(tf.cast(old_logits, tf.float32) * alpha, axis=-1)
    per_pixel = (q[..., 0] * log_bg + tf.reduce_sum(q[..., 1:] * log_old, axis=-1)) / n_old
    return _reduce(-per_pixel, reduction)


def feature_distillation(features, old_features):
    """ILT's encoder distillation as the MiB codebase computes it: nn.MSELoss() (mean over every element)
    between the current and the previous encoder outputs (features['body']).

    Args: features, old_features: float [B, h, w, D]. Returns: float32 scalar.
    """
    diff = tf.cast(features, tf.float32) - tf.cast(old_features, tf.float32)
    return tf.reduce_mean(tf.square(diff))


# ----------------------------------------------------------------------------------------------------------
# MiB's classifier initialisation
# ----------------------------------------------------------------------------------------------------------

def mib_initialize(kernel, bias, n_old, n_new, n_branches=1):
    """MiB's background-based initialisation of the new classes (init_new_classifier; PLOP uses it too).

    New classes n_old..n_old+n_new-1 get the background's kernel column and the bias b_bg - log(n_new + 1); the
    background's bias becomes b_bg - log(n_new + 1) as well. Then p(background) + sum p(new) of the current
    model equals the previous model's p(background), and old classes keep their probabilities. Outputs past
    n_old + n_new (future classes of a fixed-size decoder) are left as they are.

    Args:
      kernel: array or variable [..., C] (a convolution [kh, kw, in, C] or dense [in, C] kernel).
      bias: array or variable [C].
      n_old, n_new: ints, n_old >= 1 (background included), n_new >= 1, n_old + n_new <= C.
      n_branches: the layer is one of n_branches whose outputs are summed (this project's ASPP: 4); each
        branch's biases take 1/n_branches of the log(n_new + 1) shift, so the summed logits get all of it.
    Returns: (kernel, bias) as new numpy arrays of the input shapes and dtypes.
    """
    kernel, bias = (np.array(x.numpy() if hasattr(x, "numpy") else x) for x in (kernel, bias))
    n_out = kernel.shape[-1]
    if bias.shape != (n_out,) or not (n_old >= 1 and n_new >= 1 and n_old + n_new <= n_out) or n_branches < 1:
        raise ValueError(f"mib_initialize: kernel {kernel.shape} and bias {bias.shape} with n_old={n_old}, "
                         f"n_new={n_new}, n_branches={n_branches}; expected bias [C] with C = kernel.shape[-1] "
                         f">= n_old + n_new, n_old >= 1, n_new >= 1, n_branches >= 1")
    new = slice(n_old, n_old + n_new)
    kernel[..., new] = kernel[..., :1]
    shifted = bias[0] - math.log(n_new + 1) / n_branches
    bias[new] = shifted
    bias[0] = shifted
    return kernel, bias


# ----------------------------------------------------------------------------------------------------------
# PLOP: entropy pseudo-labels
# ----------------------------------------------------------------------------------------------------------

def plop_entropy(old_logits, n_current):
    """PLOP's "normalised" entropy of the previous model's prediction, exactly as the reference computes it.

    The reference's `entropy` takes the MEAN over classes (not the sum) of p log(p + 1e-8) and divides by
    log(n_old); find_median and the training step then divide again by log(n_current). So the value is
    H(p) / (n_old * log(n_old) * log(n_current)) (up to the 1e-8), at most 1 / (n_old * log(n_current)),
    not 1. The thresholds are computed on the same scale, but the base threshold (0.001) and the histogram bins
    are not scale-free, so the scale is kept.

    Args: old_logits float [B, H, W, n_old]; n_current: classes of the current step (n_old + n_new).
    Returns: float32 [B, H, W].
    """
    n_old = _n_old(old_logits)
    p = tf.nn.softmax(tf.cast(old_logits, tf.float32), axis=-1)
    entropy = -(1.0 / math.log(n_old + 1e-8)) * tf.reduce_mean(p * tf.math.log(p + 1e-8), axis=-1)
    return entropy / tf.math.log(tf.cast(n_current, tf.float32))


def entropy_histogram(old_logits, labels, n_current, n_bins=100):
    """One batch's share of PLOP's per-class entropy histogram (Trainer.find_median, mode "entropy").

    Over the pixels labelled background (label == 0: the reference's find_median mask, narrower than the
    training step's label < n_old), counts pixels by (previous model's argmax class, bin of plop_entropy), the
    bin being int(value * n_bins) (truncated) capped at n_bins - 1. The reference sums these counts over one
    pass of the step's training set with the previous model before training; do the same, then call
    entropy_thresholds.

    Args: old_logits float [B, H, W, n_old]; labels int [B, H, W]; n_current int; n_bins int.
    Returns: int32 [n_old, n_bins] (the reference allocates n_current rows; rows past n_old stay empty).
    """
    n_old = _n_old(old_logits)
    values = plop_entropy(old_logits, n_current)
    pseudo = tf.argmax(old_logits, axis=-1, output_type=tf.int32)
    bins = tf.minimum(tf.cast(values * n_bins, tf.int32), n_bins - 1)  # the cast truncates, as torch .long()
    mask = tf.cast(tf.equal(tf.cast(labels, tf.int32), 0), tf.int32)
    counts = tf.math.unsorted_segment_sum(tf.reshape(mask, [-1]), tf.reshape(pseudo * n_bins + bins, [-1]),
                                          n_old * n_bins)
    return tf.reshape(counts, [n_old, n_bins])


def entropy_thresholds(histogram, base_threshold=0.001, median="reference"):
    """PLOP's per-class entropy thresholds from the accumulated histogram (Trainer.find_median).

    Per class, the median is interpolated in the histogram, then raised to at least base_threshold
    (`--threshold`, 0.001 for PLOP); a class with no pixel gets base_threshold.

    median="reference" repeats the reference's loop as written, slip included: its running sum adds the bin
    INDEX instead of the bin's count (`running_sum += lower_border * nb_bins`), and its bin index is
    int(b / n_bins * n_bins), which is b - 1 for some b (29, 57, 58 with 100 bins). When the median falls in
    bin 0 the result is right. Otherwise the loop stops only if one bin holds half the class or the index sum
    hits the half exactly (then often 0 / 0 = nan: no pseudo-label of that class kept); when it runs through,
    the value comes from the empty last bin: (half - 4950) / 0 with 100 bins, i.e. +inf (every pseudo-label of
    that class kept) when the class has more than 9900 background pixels, else -inf -> base_threshold.
    With plop_entropy's scale (values below 1 / (n_old log n_current), about 0.02 for VOC 15-5) only bins 0-2
    are ever filled. median="histogram" is the interpolated histogram median done right (counts summed).

    Args: histogram: int [n_classes, n_bins] (entropy_histogram summed over the data);
      base_threshold: float; median: "reference" or "histogram".
    Returns: np.ndarray float32 [n_classes].
    """
    if median not in MEDIANS:
        raise ValueError(f"median must be one of {MEDIANS}, got {median!r}")
    histogram = np.asarray(histogram, np.int64)
    n_classes, n_bins = histogram.shape
    thresholds = np.zeros(n_classes, np.float32)
    for c in range(n_classes):
        total = histogram[c].sum()
        if total <= 0:
            continue
        half = np.float32(total / 2)
        running_sum = 0.0
        for b in range(n_bins):
            lower_border = b / n_bins
            bin_index = int(lower_border * n_bins) if median == "reference" else b
            if running_sum <= half <= running_sum + histogram[c, bin_index]:
                break
            running_sum += lower_border * n_bins if median == "reference" else histogram[c, bin_index]
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.float32(half - np.float32(running_sum)) / np.float32(histogram[c, bin_index])
        thresholds[c] = np.float32(lower_border) + fraction * np.float32(1 / n_bins)
    # Python's max(threshold, base), as the reference: keeps nan, lifts -inf and anything below base.
    return np.array([base_threshold if base_threshold > t else t for t in thresholds], np.float32)


def plop_pseudo_labels(labels, old_logits, thresholds, n_current):
    """PLOP's pseudo-labels and classification adaptive factor (Trainer.train, pseudo "entropy").

    Pixels whose label is background or an old class (label < n_old) take the previous model's argmax class
    where plop_entropy < thresholds[that class], else 255 (ignored); other pixels keep their label. The
    adaptive factor of an image is (confident background/old pixels) / (background/old pixels): the reference
    divides 0 by 0 (nan) for an image without such pixels; here that factor is 1.

    Args:
      labels: int [B, H, W] (current step's targets, 255 ignored). old_logits: float [B, H, W, n_old] at the
        labels' resolution. thresholds: float [n_old] (entropy_thresholds). n_current: n_old + n_new.
    Returns: (targets int32 [B, H, W], factor float32 [B]).
    """
    n_old = _n_old(old_logits)
    labels = tf.cast(labels, tf.int32)
    pseudo = tf.argmax(old_logits, axis=-1, output_type=tf.int32)
    thresholds = tf.convert_to_tensor(thresholds, tf.float32)
    confident = plop_entropy(old_logits, n_current) < tf.gather(thresholds, pseudo)
    background = labels < n_old
    targets = tf.where(background, tf.where(confident, pseudo, VOID), labels)
    kept = tf.reduce_sum(tf.cast(tf.logical_and(confident, background), tf.float32), axis=[1, 2])
    total = tf.reduce_sum(tf.cast(background, tf.float32), axis=[1, 2])
    factor = tf.where(total > 0, kept / tf.maximum(total, 1.0), 1.0)
    return targets, factor


# ----------------------------------------------------------------------------------------------------------
# PLOP: Local POD
# ----------------------------------------------------------------------------------------------------------

def pod_embedding(x, scales=(1, 2, 4)):
    """Local POD embedding of one map (PLOP's _local_pod, normalize=False).

    For each scale s, the map is cut into s x s windows of k x k pixels, k = W // s (from the WIDTH for both
    axes, as the reference, which assumes square maps: rows and columns past s*k are dropped, and a map with
    H < s*k gives an empty window and nan). Each window gives its mean over the width (one value per channel and
    row) and its mean over the height (per channel and column), concatenated channel-major as the reference.

    Args: x float [B, H, W, D]; scales: window counts per side.
    Returns: float32 [B, E].
    """
    x = tf.cast(x, tf.float32)
    batch, width = tf.shape(x)[0], tf.shape(x)[2]
    parts = []
    for scale in scales:
        k = width // scale
        for i in range(scale):
            for j in range(scale):
                window = x[:, i * k:(i + 1) * k, j * k:(j + 1) * k, :]
                for pooled in (tf.reduce_mean(window, axis=2), tf.reduce_mean(window, axis=1)):  # [B, n, D]
                    parts.append(tf.reshape(tf.transpose(pooled, [0, 2, 1]), [batch, -1]))
    return tf.concat(parts, axis=1)


def _pod_embedding_square(x, scales):
    """pod_embedding's values in another order, from one reshape per scale instead of a slice per window, for
    maps of a static square size (H == W, every map of a square training crop). local_pod takes the Euclidean
    norm of an embedding difference, which the order does not change. Returns float32 [B, E]."""
    x = tf.cast(x, tf.float32)
    size, depth, batch = x.shape[2], x.shape[3], tf.shape(x)[0]
    parts = []
    for scale in scales:
        k = size // scale
        windows = tf.reshape(x[:, :scale * k, :scale * k, :], [-1, scale, k, scale, k, depth])
        parts += [tf.reshape(tf.reduce_mean(windows, axis=4), [batch, -1]),  # each window's rows (width mean)
                  tf.reshape(tf.reduce_mean(windows, axis=2), [batch, -1])]  # and columns (height mean)
    return tf.concat(parts, axis=1)


def _safe_norm(x):
    """Euclidean norm over the last axis whose gradient is 0 at 0 (torch's frobenius_norm; tf.norm's is nan)."""
    squares = tf.reduce_sum(tf.square(x), axis=-1)
    positive = squares > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, squares, 1.0)), 0.0)


def _sum_new_into_background(logits, n_old):
    """PLOP's extra_channels "sum": the current logits' new outputs are added to the background output."""
    background = logits[..., :1] + tf.reduce_sum(logits[..., n_old:], axis=-1, keepdims=True)
    return tf.concat([background, logits[..., 1:n_old]], axis=-1)


def local_pod(features, old_features, n_old, n_new, logits=None, old_logits=None, scales=(1, 2, 4),
              features_factor=0.01, logits_factor=0.0005, prepro="pow", schedule=True):
    """PLOP's Local POD distillation (features_distillation with pod "local" and the PLOP method's options).

    Each map pair (current, previous) is squared (prepro "pow"), embedded by pod_embedding (no L2
    normalisation: the reference forces normalize=False), and its distance is the Euclidean norm of the
    embedding difference per image, averaged over the batch; times its factor (features_factor for the feature
    maps, logits_factor for the logits, the pod_options "after" factor), times sqrt(n_current / n_new) when
    schedule. The result is the sum over maps divided by the number of maps. Before that, the current logits'
    new outputs are summed into its background output (extra_channels "sum"), so both have n_old channels.

    Args:
      features, old_features: lists of float [B, h, w, D] maps (the reference: the four ResNet stages' outputs
        before their last activation, then the head's output).
      n_old, n_new: ints (n_current = n_old + n_new).
      logits, old_logits: None, or the current [B, h, w, n_old + n_new] and previous [B, h, w, n_old] logits
        before upsampling (pod_logits), distilled last.
      scales, features_factor, logits_factor: spp_scales, pod_factor, pod_options' "after" factor.
      prepro: "pow" (square) or "none". schedule: multiply by sqrt(n_current / n_new) (not no_pod_schedule).
    Returns: float32 scalar.
    """
    if prepro not in POD_PREPRO:
        raise ValueError(f"prepro must be one of {POD_PREPRO}, got {prepro!r}")
    if len(features) != len(old_features) or (logits is None) != (old_logits is None):
        raise ValueError(f"local_pod needs as many current as previous maps: {len(features)} features and "
                         f"{len(old_features)} old features; logits given: {logits is not None}, old logits "
                         f"given: {old_logits is not None}")
    pairs = [(f, o, features_factor) for f, o in zip(features, old_features)]
    if logits is not None:
        if _n_old(old_logits, logits) != n_old or logits.shape[-1] != n_old + n_new:
            raise ValueError(f"logits {logits.shape} and old_logits {old_logits.shape} should have "
                             f"n_old + n_new = {n_old + n_new} and n_old = {n_old} outputs")
        pairs.append((_sum_new_into_background(tf.cast(logits, tf.float32), n_old), old_logits, logits_factor))
    if not pairs:
        raise ValueError("local_pod needs at least one pair of maps")
    schedule_factor = math.sqrt((n_old + n_new) / n_new) if schedule else 1.0
    total = 0.0
    for new, old, factor in pairs:
        new, old = tf.cast(new, tf.float32), tf.cast(old, tf.float32)
        if prepro == "pow":
            new, old = tf.square(new), tf.square(old)
        # The embedding is linear (window means): embed the difference once. Square maps of a static size take
        # the reshape path (the same values in another order; the norm does not see the order).
        square = new.shape[1] is not None and new.shape[1] == new.shape[2] and new.shape[3] is not None
        distance = _safe_norm((_pod_embedding_square if square else pod_embedding)(old - new, scales))
        total += factor * schedule_factor * tf.reduce_mean(distance)
    return total / len(pairs)


# ----------------------------------------------------------------------------------------------------------
# The methods' losses (weights as the reference's --method presets)
# ----------------------------------------------------------------------------------------------------------

def lwf_loss(logits, labels, old_logits, kd_weight=100.0, alpha=1.0):
    """LwF as in the MiB codebase: cross_entropy + kd_weight * distillation. Returns a dict of float32
    scalars: total, ce, kd."""
    ce = cross_entropy(logits, labels)
    kd = distillation(logits, old_logits, alpha)
    return {"total": ce + kd_weight * kd, "ce": ce, "kd": kd}


def ilt_loss(logits, labels, old_logits, features, old_features, kd_weight=100.0, de_weight=100.0, alpha=1.0):
    """ILT as in the MiB codebase: cross_entropy + kd_weight * distillation + de_weight *
    feature_distillation (encoder outputs). Returns a dict: total, ce, kd, de."""
    ce = cross_entropy(logits, labels)
    kd = distillation(logits, old_logits, alpha)
    de = feature_distillation(features, old_features)
    return {"total": ce + kd_weight * kd + de_weight * de, "ce": ce, "kd": kd, "de": de}


def mib_loss(logits, labels, old_logits, kd_weight=10.0, alpha=1.0):
    """MiB: unbiased_cross_entropy + kd_weight * unbiased_distillation (start the step with mib_initialize).
    Returns a dict: total, ce, kd."""
    ce = unbiased_cross_entropy(logits, labels, _n_old(old_logits, logits))
    kd = unbiased_distillation(logits, old_logits, alpha)
    return {"total": ce + kd_weight * kd, "ce": ce, "kd": kd}


def plop_loss(logits, labels, old_logits, thresholds, features, old_features, small_logits=None,
              old_small_logits=None, scales=(1, 2, 4), features_factor=0.01, logits_factor=0.0005,
              schedule=True, adaptive_factor=True, adaptive_min_factor=0.0):
    """PLOP: cross_entropy on plop_pseudo_labels, weighted per image by the adaptive factor (clipped below at
    adaptive_min_factor), + local_pod on the feature maps and the small logits. Start the step with
    mib_initialize and entropy_thresholds.

    Args: logits [B, H, W, n_old + n_new] and old_logits [B, H, W, n_old] at the labels' resolution; labels
      [B, H, W]; thresholds [n_old]; features / old_features and small_logits / old_small_logits: see
      local_pod. Returns a dict: total, ce, pod, factor (mean adaptive factor of the batch).
    """
    n_old = _n_old(old_logits, logits)
    n_current = int(logits.shape[-1])
    targets, factor = plop_pseudo_labels(labels, old_logits, thresholds, n_current)
    factor = tf.maximum(factor, adaptive_min_factor) if adaptive_factor else tf.ones_like(factor)
    ce = cross_entropy(logits, targets, pixel_weights=factor[:, None, None])
    pod = local_pod(features, old_features, n_old, n_current - n_old, small_logits, old_small_logits, scales,
                    features_factor, logits_factor, schedule=schedule)
    return {"total": ce + pod, "ce": ce, "pod": pod, "factor": tf.reduce_mean(factor)}


def mib_initialize_decoder(decoder, n_old, n_new):
    """MiB's initialisation (mib_initialize) applied to a decoder in place: every ASPP branch (layers
    aspp_conv1..4, whose outputs are summed, so n_branches is their number). Right after it, the summed
    logits of the new classes n_old..n_old+n_new-1 and of the background equal the background's before it
    minus log(n_new + 1).

    Args: decoder: keras.Model of model.build_decoder; n_old (background included), n_new: ints.
    """
    layers = [layer for layer in decoder.layers if re.fullmatch(r"aspp_conv\d+", layer.name)]
    if not layers:
        raise ValueError(f"mib_initialize_decoder: no aspp_conv layer in {decoder.name}")
    for layer in layers:
        kernel, bias = mib_initialize(layer.kernel, layer.bias, n_old, n_new, n_branches=len(layers))
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
