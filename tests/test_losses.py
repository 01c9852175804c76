"""Tests of losses.py: every loss term of the baselines against a float64 numpy computation written here pixel by
pixel."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import losses

RTOL, ATOL = 1e-5, 1e-6


def _logits(shape, seed, scale=3.0):
    return np.random.default_rng(seed).normal(0, scale, shape).astype(np.float32)


def _lse(v):
    v = np.asarray(v, np.float64)
    m = v.max()
    return m + math.log(np.exp(v - m).sum())


def _softmax(v):
    v = np.asarray(v, np.float64)
    e = np.exp(v - v.max())
    return e / e.sum()


def _pixels(shape):
    return [(b, i, j) for b in range(shape[0]) for i in range(shape[1]) for j in range(shape[2])]


# ----------------------------------------------------------------------------------------------------------
# Classification terms
# ----------------------------------------------------------------------------------------------------------

def test_cross_entropy_is_a_mean_over_all_pixels_ignored_included():
    logits = _logits((2, 3, 4, 5), 0)
    labels = np.random.default_rng(1).integers(0, 5, (2, 3, 4)).astype(np.int32)
    labels[0, 0, :] = 255
    weights = np.array([0.5, 2.0], np.float32)
    total, weighted = 0.0, 0.0
    for b, i, j in _pixels(labels.shape):
        if labels[b, i, j] != 255:
            loss = _lse(logits[b, i, j]) - logits[b, i, j, labels[b, i, j]]
            total += loss
            weighted += weights[b] * loss
    n = labels.size  # the ignored pixels count in the mean
    np.testing.assert_allclose(losses.cross_entropy(logits, labels).numpy(), total / n, RTOL, ATOL)
    np.testing.assert_allclose(losses.cross_entropy(logits, labels, weights[:, None, None]).numpy(),
                               weighted / n, RTOL, ATOL)
    per_pixel = losses.cross_entropy(logits, labels, reduction="none").numpy()
    assert per_pixel.shape == labels.shape and np.all(per_pixel[0, 0] == 0)


def test_unbiased_cross_entropy_at_background_old_new_and_ignored_pixels():
    n_old, n_classes = 3, 5
    logits = _logits((2, 3, 3, n_classes), 2)
    labels = np.array([[[0, 1, 2], [3, 4, 255], [0, 4, 255]],
                       [[255, 255, 255], [2, 0, 3], [4, 1, 0]]], np.int32)
    per_pixel = losses.unbiased_cross_entropy(logits, labels, n_old, reduction="none").numpy()
    expected = np.zeros(labels.shape)
    for b, i, j in _pixels(labels.shape):
        z, label = logits[b, i, j], labels[b, i, j]
        if label == 255:
            continue
        if label < n_old:  # background and old classes: -log(p_0 + ... + p_{n_old-1})
            expected[b, i, j] = -(_lse(z[:n_old]) - _lse(z))
        else:
            expected[b, i, j] = -(z[label] - _lse(z))
    np.testing.assert_allclose(per_pixel, expected, RTOL, ATOL)
    assert np.all(per_pixel[labels == 255] == 0)
    # A background pixel is NOT trained to p_0 alone (what the plain cross-entropy does).
    plain = losses.cross_entropy(logits, labels, reduction="none").numpy()
    assert per_pixel[0, 0, 0] < plain[0, 0, 0]
    mean = losses.unbiased_cross_entropy(logits, labels, n_old).numpy()
    np.testing.assert_allclose(mean, expected.sum() / labels.size, RTOL, ATOL)


# ----------------------------------------------------------------------------------------------------------
# Distillation terms
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_distillation_matches_numpy(alpha):
    n_old = 4
    logits, old = _logits((2, 3, 2, 6), 3), _logits((2, 3, 2, n_old), 4)
    expected = np.zeros((2, 3, 2))
    for b, i, j in _pixels(expected.shape):
        q = _softmax(alpha * old[b, i, j].astype(np.float64))
        z = logits[b, i, j, :n_old]  # softmax over the old outputs only
        log_p = z - _lse(z)
        expected[b, i, j] = -(q * log_p).sum() / n_old
    np.testing.assert_allclose(losses.distillation(logits, old, alpha, reduction="none").numpy(),
                               expected, RTOL, ATOL)
    np.testing.assert_allclose(losses.distillation(logits, old, alpha).numpy(), expected.mean(), RTOL, ATOL)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_unbiased_distillation_matches_numpy(alpha):
    n_old, n_classes = 3, 6
    logits, old = _logits((2, 2, 3, n_classes), 5), _logits((2, 2, 3, n_old), 6)
    expected = np.zeros((2, 2, 3))
    for b, i, j in _pixels(expected.shape):
        z = logits[b, i, j].astype(np.float64)
        q = _softmax(alpha * old[b, i, j].astype(np.float64))
        log_bg_or_new = _lse(np.concatenate([z[:1], z[n_old:]])) - _lse(z)
        term = q[0] * log_bg_or_new
        for c in range(1, n_old):
            term += q[c] * (z[c] - _lse(z))
        expected[b, i, j] = -term / n_old
    np.testing.assert_allclose(losses.unbiased_distillation(logits, old, alpha, reduction="none").numpy(),
                               expected, RTOL, ATOL)
    np.testing.assert_allclose(losses.unbiased_distillation(logits, old, alpha).numpy(), expected.mean(),
                               RTOL, ATOL)


def test_feature_distillation_is_the_mean_squared_error():
    f, g = _logits((2, 3, 3, 4), 7), _logits((2, 3, 3, 4), 8)
    expected = ((f.astype(np.float64) - g) ** 2).sum() / f.size
    np.testing.assert_allclose(losses.feature_distillation(f, g).numpy(), expected, RTOL, ATOL)


# ----------------------------------------------------------------------------------------------------------
# MiB's initialisation
# ----------------------------------------------------------------------------------------------------------

def test_mib_initialize_gives_new_classes_the_background_logit_minus_log_k_plus_1():
    n_old, n_new, n_out = 3, 2, 7  # two future outputs stay as they are
    keras.utils.set_random_seed(0)
    conv = keras.layers.Conv2D(n_out, 1, bias_initializer="glorot_uniform")
    x = _logits((2, 4, 4, 5), 9, scale=1.0)
    before = conv(x).numpy().astype(np.float64)
    kernel, bias = losses.mib_initialize(conv.kernel, conv.bias, n_old, n_new)
    conv.kernel.assign(kernel)
    conv.bias.assign(bias)
    after = conv(x).numpy().astype(np.float64)
    shift = math.log(n_new + 1)
    for c in range(n_old, n_old + n_new):
        np.testing.assert_allclose(after[..., c], before[..., 0] - shift, RTOL, 1e-5)
    np.testing.assert_allclose(after[..., 0], before[..., 0] - shift, RTOL, 1e-5)
    np.testing.assert_allclose(after[..., 1:n_old], before[..., 1:n_old], RTOL, 1e-5)
    np.testing.assert_allclose(after[..., n_old + n_new:], before[..., n_old + n_new:], RTOL, 1e-5)
    # Over the seen outputs, old classes keep the previous model's probabilities (so does bg + new, summed).
    seen = after[..., :n_old + n_new]
    p_after = np.exp(seen - seen.max(-1, keepdims=True))
    p_after /= p_after.sum(-1, keepdims=True)
    p_before = np.exp(before[..., :n_old] - before[..., :n_old].max(-1, keepdims=True))
    p_before /= p_before.sum(-1, keepdims=True)
    np.testing.assert_allclose(p_after[..., 1:n_old], p_before[..., 1:], RTOL, 1e-6)


def test_mib_initialize_on_summed_branches_shifts_the_sum_once():
    n_old, n_new = 2, 3
    keras.utils.set_random_seed(1)
    branches = [keras.layers.Conv2D(n_old + n_new, 3, padding="same", dilation_rate=r,
                                    bias_initializer="glorot_uniform") for r in (1, 2)]
    x = _logits((1, 6, 6, 4), 10, scale=1.0)
    before = sum(b(x).numpy().astype(np.float64) for b in branches)
    for branch in branches:
        kernel, bias = losses.mib_initialize(branch.kernel, branch.bias, n_old, n_new, n_branches=2)
        branch.kernel.assign(kernel)
        branch.bias.assign(bias)
    after = sum(b(x).numpy().astype(np.float64) for b in branches)
    for c in (0, *range(n_old, n_old + n_new)):
        np.testing.assert_allclose(after[..., c], before[..., 0] - math.log(n_new + 1), RTOL, 1e-5)
    np.testing.assert_allclose(after[..., 1], before[..., 1], RTOL, 1e-5)


def test_mib_initialize_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_old=3"):
        losses.mib_initialize(np.zeros((4, 4)), np.zeros(4), 3, 2)
    with pytest.raises(ValueError, match="bias"):
        losses.mib_initialize(np.zeros((4, 5)), np.zeros(4), 3, 2)


# ----------------------------------------------------------------------------------------------------------
# PLOP: entropy, thresholds, pseudo-labels
# ----------------------------------------------------------------------------------------------------------

def _plop_entropy_np(z, n_current):
    """The reference's entropy: -(1/log C) * mean_c p log(p + 1e-8), then / log(n_current)."""
    p = _softmax(z)
    return -(1 / math.log(len(z) + 1e-8)) * np.mean(p * np.log(p + 1e-8)) / math.log(n_current)


def test_plop_entropy_and_histogram_match_numpy():
    n_old, n_current, n_bins = 4, 6, 10
    rng = np.random.default_rng(11)
    old = (rng.normal(0, 1, (2, 5, 5, n_old)) * rng.choice([0.3, 8.0], (2, 5, 5, 1))).astype(np.float32)
    labels = rng.choice([0, 4, 5, 255], (2, 5, 5)).astype(np.int32)
    entropy = losses.plop_entropy(old, n_current).numpy()
    histogram = np.zeros((n_old, n_bins), np.int64)
    for b, i, j in _pixels(labels.shape):
        value = _plop_entropy_np(old[b, i, j], n_current)
        np.testing.assert_allclose(entropy[b, i, j], value, RTOL, ATOL)
        if labels[b, i, j] == 0:  # find_median counts label == 0 pixels only
            histogram[np.argmax(old[b, i, j]), min(int(value * n_bins), n_bins - 1)] += 1
    # The reference's scale: at most 1 / (n_old * log(n_current)).
    assert entropy.max() <= 1 / (n_old * math.log(n_current)) + 1e-6
    result = losses.entropy_histogram(old, labels, n_current, n_bins).numpy()
    np.testing.assert_array_equal(result, histogram)
    assert result.sum() == np.sum(labels == 0)


def test_entropy_thresholds_reference_loop_and_histogram_median():
    histogram = np.zeros((6, 100), np.int64)
    histogram[0, :2] = [6, 2]          # median in bin 0: 4/6 of its width
    histogram[1, :2] = [2, 6]          # median in bin 1: the reference forgets bin 0's count
    histogram[2, :3] = [3, 3, 3]       # no bin holds half: the loop runs through; half < 4950 -> -inf
    histogram[3, :3] = [6000, 5000, 5000]  # runs through with half > 4950 -> +inf
    histogram[5, 0] = 1                # half 0.5 in bin 0 -> 0.005 * ... = 0.005
    reference = losses.entropy_thresholds(histogram)
    np.testing.assert_allclose(reference[[0, 1, 4, 5]], [0.01 * 4 / 6, 0.01 + 0.01 * 4 / 6, 0.001, 0.005],
                               rtol=1e-6)
    assert reference[2] == 0.001 and reference[3] == np.inf
    fixed = losses.entropy_thresholds(histogram, median="histogram")
    np.testing.assert_allclose(fixed, [0.01 * 4 / 6, 0.01 + 0.01 * 2 / 6, 0.01 + 0.01 * 1.5 / 3,
                                       0.01 + 0.01 * 2000 / 5000, 0.001, 0.005], rtol=1e-6)
    # The base threshold is a floor.
    np.testing.assert_allclose(losses.entropy_thresholds(histogram[:1], base_threshold=0.5), [0.5])


def test_plop_pseudo_labels_and_adaptive_factor():
    n_old, n_current = 3, 5
    rng = np.random.default_rng(12)
    old = (rng.normal(0, 1, (3, 4, 4, n_old)) * rng.choice([0.2, 10.0], (3, 4, 4, 1))).astype(np.float32)
    labels = rng.choice([0, 1, 3, 4, 255], (3, 4, 4)).astype(np.int32)
    labels[2] = rng.choice([3, 4, 255], (4, 4))  # an image without background / old pixels
    thresholds = np.array([0.1, 0.02, 0.15], np.float32)  # entropies here: ~0.2 (flat) or below 0.13
    targets, factor = losses.plop_pseudo_labels(labels, old, thresholds, n_current)
    expected = labels.copy()
    kept, background = np.zeros(3), np.zeros(3)
    for b, i, j in _pixels(labels.shape):
        if labels[b, i, j] < n_old:  # background or old label: pseudo-label or ignore
            background[b] += 1
            pseudo = int(np.argmax(old[b, i, j]))
            if _plop_entropy_np(old[b, i, j], n_current) < thresholds[pseudo]:
                expected[b, i, j] = pseudo
                kept[b] += 1
            else:
                expected[b, i, j] = 255
    np.testing.assert_array_equal(targets.numpy(), expected)
    assert 0 < kept[:2].sum() < background[:2].sum()  # both branches taken
    np.testing.assert_allclose(factor.numpy(), [kept[0] / background[0], kept[1] / background[1], 1.0], 1e-6)


# ----------------------------------------------------------------------------------------------------------
# PLOP: Local POD
# ----------------------------------------------------------------------------------------------------------

def _pod_embedding_np(x, scales):
    """The reference's _local_pod on a channels-first copy: windows of k = W // s, mean over W then over H."""
    x = np.transpose(x.astype(np.float64), (0, 3, 1, 2))  # [B, C, H, W]
    out = []
    for s in scales:
        k = x.shape[-1] // s
        for i in range(s):
            for j in range(s):
                window = x[..., i * k:(i + 1) * k, j * k:(j + 1) * k]
                out.append(window.mean(axis=3).reshape(x.shape[0], -1))
                out.append(window.mean(axis=2).reshape(x.shape[0], -1))
    return np.concatenate(out, axis=1)


def test_pod_embedding_at_two_scales_by_hand():
    x = np.arange(2 * 4 * 4 * 2, dtype=np.float32).reshape(2, 4, 4, 2)
    emb = losses.pod_embedding(x, scales=(1, 2)).numpy()
    # scale 1: (2 channels x 4 rows) + (2 x 4 columns); scale 2: 4 windows x (2 x 2 + 2 x 2).
    assert emb.shape == (2, 16 + 4 * 8)
    # First entries: channel 0's row means over the whole width, image 0.
    np.testing.assert_allclose(emb[0, :4], x[0, :, :, 0].mean(axis=1))
    # Scale 2, window (0, 1) (top-right), channel 1's column means over its 2 rows.
    top_right = 16 + 8
    np.testing.assert_allclose(emb[0, top_right + 4 + 2:top_right + 8], x[0, 0:2, 2:4, 1].mean(axis=0))
    np.testing.assert_allclose(emb, _pod_embedding_np(x, (1, 2)), RTOL, ATOL)
    # A non-divisible width drops the last column, as the reference.
    y = _logits((1, 5, 5, 3), 13)
    np.testing.assert_allclose(losses.pod_embedding(y, (1, 2)).numpy(), _pod_embedding_np(y, (1, 2)),
                               RTOL, ATOL)


def test_local_pod_matches_numpy_with_logits_extra_channels():
    n_old, n_new = 3, 2
    scales = (1, 2)
    shapes = [(2, 8, 8, 4), (2, 4, 4, 6)]
    features = [_logits(s, 20 + k, 1.0) for k, s in enumerate(shapes)]
    old_features = [_logits(s, 30 + k, 1.0) for k, s in enumerate(shapes)]
    logits, old_logits = _logits((2, 4, 4, n_old + n_new), 40, 1.0), _logits((2, 4, 4, n_old), 41, 1.0)
    loss = losses.local_pod(features, old_features, n_old, n_new, logits, old_logits, scales,
                               features_factor=0.01, logits_factor=0.0005).numpy()
    collapsed = np.concatenate([logits[..., :1] + logits[..., n_old:].sum(-1, keepdims=True),
                                logits[..., 1:n_old]], axis=-1)
    pairs = [(f, o, 0.01) for f, o in zip(features, old_features)] + [(collapsed, old_logits, 0.0005)]
    total = 0.0
    for new, old, factor in pairs:
        a = _pod_embedding_np(old.astype(np.float64) ** 2, scales)
        b = _pod_embedding_np(new.astype(np.float64) ** 2, scales)
        distances = [math.sqrt(((a[k] - b[k]) ** 2).sum()) for k in range(a.shape[0])]
        total += factor * math.sqrt((n_old + n_new) / n_new) * np.mean(distances)
    np.testing.assert_allclose(loss, total / 3, RTOL, 1e-8)
    no_schedule = losses.local_pod(features, old_features, n_old, n_new, logits, old_logits, scales,
                                      schedule=False).numpy()
    np.testing.assert_allclose(no_schedule * math.sqrt((n_old + n_new) / n_new), loss, RTOL, 1e-8)


def test_local_pod_of_equal_maps_is_zero_with_zero_gradient():
    x = tf.constant(_logits((2, 4, 4, 3), 50))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = losses.local_pod([x], [tf.identity(x)], 3, 1)
    gradient = tape.gradient(loss, x).numpy()
    assert loss.numpy() == 0 and np.all(gradient == 0)


# ----------------------------------------------------------------------------------------------------------
# The methods' losses
# ----------------------------------------------------------------------------------------------------------

def test_method_losses_combine_their_terms_with_the_reference_weights():
    n_old, n_new = 3, 2
    logits, old = _logits((2, 8, 8, n_old + n_new), 60), _logits((2, 8, 8, n_old), 61)
    labels = np.random.default_rng(62).choice([0, 3, 4, 255], (2, 8, 8)).astype(np.int32)
    feats, old_feats = _logits((2, 4, 4, 4), 63), _logits((2, 4, 4, 4), 64)
    lwf = losses.lwf_loss(logits, labels, old)
    np.testing.assert_allclose(lwf["total"], losses.cross_entropy(logits, labels)
                               + 100 * losses.distillation(logits, old), RTOL)
    ilt = losses.ilt_loss(logits, labels, old, feats, old_feats)
    np.testing.assert_allclose(ilt["total"], lwf["total"] + 100 * losses.feature_distillation(feats, old_feats),
                               RTOL)
    mib = losses.mib_loss(logits, labels, old)
    np.testing.assert_allclose(mib["total"], losses.unbiased_cross_entropy(logits, labels, n_old)
                               + 10 * losses.unbiased_distillation(logits, old), RTOL)
    thresholds = np.full(n_old, np.inf, np.float32)  # every background pixel is pseudo-labelled
    plop = losses.plop_loss(logits, labels, old, thresholds, [feats], [old_feats], logits[:, :4, :4],
                               old[:, :4, :4])
    targets = np.where(labels < n_old, np.argmax(old, -1), labels)
    np.testing.assert_allclose(plop["ce"], losses.cross_entropy(logits, targets), RTOL)
    assert plop["factor"].numpy() == 1.0
    np.testing.assert_allclose(plop["total"], plop["ce"] + plop["pod"], RTOL)


def test_losses_trace_with_unknown_spatial_sizes():
    n_old, n_new = 3, 2
    spec = lambda c: tf.TensorSpec([None, None, None, c], tf.float32)  # noqa: E731

    @tf.function(input_signature=[spec(n_old + n_new), tf.TensorSpec([None, None, None], tf.int32), spec(n_old),
                                  spec(4), spec(4)])
    def terms(logits, labels, old, feats, old_feats):
        hist = losses.entropy_histogram(old, labels, n_old + n_new)
        plop = losses.plop_loss(logits, labels, old, tf.fill([n_old], 0.01), [feats], [old_feats], logits,
                                old)
        return (losses.mib_loss(logits, labels, old)["total"], losses.ilt_loss(
            logits, labels, old, feats, old_feats)["total"], plop["total"], tf.reduce_sum(hist))

    labels = np.zeros((2, 8, 8), np.int32)
    values = terms(_logits((2, 8, 8, 5), 70), labels, _logits((2, 8, 8, 3), 71), _logits((2, 8, 8, 4), 72),
                    _logits((2, 8, 8, 4), 73))
    assert all(np.isfinite(v.numpy()) for v in values[:3]) and values[3].numpy() == labels.size


def test_bad_arguments_are_reported():
    logits = _logits((1, 2, 2, 3), 80)
    with pytest.raises(ValueError, match="at least the 4 outputs"):
        losses.distillation(logits, _logits((1, 2, 2, 4), 81))
    with pytest.raises(ValueError, match="reduction"):
        losses.cross_entropy(logits, np.zeros((1, 2, 2), np.int32), reduction="sum")
    with pytest.raises(ValueError, match="median"):
        losses.entropy_thresholds(np.ones((2, 10)), median="exact")
    with pytest.raises(ValueError, match="as many"):
        losses.local_pod([logits], [], 2, 1)


def test_local_pod_square_maps_take_the_reshape_path_with_the_same_values():
    """local_pod embeds square maps of a static size by reshaping (one op per scale, for speed) instead of
    slicing every window: the same values in another order, so the same distances as pod_embedding's."""
    x = _logits((2, 9, 9, 5), 70, 1.0)
    square = np.sort(losses._pod_embedding_square(tf.constant(x), (1, 2, 4)).numpy(), axis=1)
    sliced = np.sort(losses.pod_embedding(tf.constant(x), (1, 2, 4)).numpy(), axis=1)
    np.testing.assert_array_equal(square, sliced)
    y = _logits((2, 9, 9, 5), 71, 1.0)
    static = losses.local_pod([x], [y], 3, 1).numpy()
    dynamic = tf.function(lambda a, b: losses.local_pod([a], [b], 3, 1),  # unknown sizes: the sliced path
                          input_signature=[tf.TensorSpec([None, None, None, 5])] * 2)(x, y).numpy()
    np.testing.assert_allclose(static, dynamic, RTOL, ATOL)
