"""DeepLab-V2 (ResNet-101 v1, ASPP) for RECALL: network and checkpoints.

The network is the original's (model_resnet.py / operations_resnet.py): a ResNet-101 v1 bottleneck encoder
without convolution biases, batch norm always in inference mode (the moving statistics never change; scale
and offset train at step 0, as in the original, whose step-0 var_list holds every `resnet_v1_101` variable),
dilations 2 and 4 in blocks 3 and 4 (output stride 8), and an ASPP decoder of four 3x3 convolutions with bias
(rates 6, 12, 18, 24) whose outputs are summed and upsampled bilinearly to the input size.

Depth and width are gin-configurable (`backbone.units`, `backbone.width`) so that a small network runs
through the same code; the default is ResNet-101.

Every variable is addressed by the original's TF1 name (`resnet_v1_101/...`, `decoder/aspp/conv{1..4}/...`):
our files (`path + ".weights.h5"`, HDF5, written under a temporary name and renamed) hold one dataset per
name, and TF1 / TF-Slim checkpoints of the original are read by the same names.

The training step (Trainer, its schedule and optimizer) is trainer.py's; model re-exports its names, as they lived
here (model.Trainer, model.poly_schedule, ...).
"""

import contextlib
import inspect
import os
import re

from absl import logging
import gin
import h5py
import keras
import numpy as np
import tensorflow as tf

from artifacts import CHECKPOINT_SUFFIX, atomic_path
from data_loader import VOID
from trainer import (MOMENTUM_RULES, PolyDecay, TF1Momentum, Trainer, batch_norm_scales,  # noqa: F401
                     make_optimizer, poly_schedule)

ENCODER_SCOPE = "resnet_v1_101"
DECODER_SCOPE = "decoder"
ASPP_RATES = (6, 12, 18, 24)
BN_EPSILON = 1e-3  # TF-Slim batch_norm default, used by the original.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

# (output channels, stride of the first unit, dilation) of the four ResNet v1 blocks.
_BLOCKS = ((256, 1, 1), (512, 2, 1), (1024, 1, 2), (2048, 1, 4))


# ----------------------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------------------

def _channels(base, width):
    return max(1, int(base * width))


_NATIVE_DILATION = {}  # compute dtype -> a fact of this machine's TensorFlow build, probed once


def native_dilated_gradients(dtype="float32"):
    """True when this TensorFlow computes the gradient of a dilated tf.nn.conv2d in `dtype` natively: on GPUs,
    and on x86 CPUs with oneDNN (see runtime.py; bfloat16 needs a CPU with AVX512-BF16). TensorFlow's generic
    CPU kernels refuse dilation rates above 1."""
    dtype = tf.as_dtype(dtype).name
    if dtype not in _NATIVE_DILATION:
        if not tf.executing_eagerly():  # build_encoder / build_decoder probe first; tf.init_scope would pause
            return True                 # the gradient tape the probe needs
        _NATIVE_DILATION[dtype] = _dilated_gradient_runs(dtype)
        if not _NATIVE_DILATION[dtype]:
            logging.warning("no native %s dilated-convolution gradient here (oneDNN off, or no AVX512-BF16 for "
                            "bfloat16): dilated convolutions run as space_to_batch + convolution; without "
                            "oneDNN CPU training is several times slower (import runtime, or set "
                            "TF_ENABLE_ONEDNN_OPTS=1, before TensorFlow).", dtype)
    return _NATIVE_DILATION[dtype]


def _probe_dilation():
    """Probes (eagerly, before any layer is traced) float32 and the compute dtype of the current policy."""
    for dtype in {"float32", keras.config.dtype_policy().compute_dtype}:
        native_dilated_gradients(dtype)


def _dilated_gradient_runs(dtype):
    @tf.function  # as a training step computes it: TensorFlow's eager gradient takes another path
    def gradient(images, kernel):
        with tf.GradientTape() as tape:
            tape.watch(kernel)  # a tensor, not a variable: the probe may run inside a strategy's scope
            y = tf.nn.conv2d(images, kernel, 1, "SAME", dilations=2)
        return tape.gradient(y, kernel)

    try:
        return gradient(tf.ones([1, 7, 7, 1], dtype), tf.ones([3, 3, 1, 1], dtype)) is not None
    except tf.errors.InvalidArgumentError:
        return False


class Conv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D computed with tf.nn.conv2d, which runs dilated convolutions natively (oneDNN on
    CPU, cuDNN on GPU). Keras' own path (tf.nn.convolution) turns a dilation into space_to_batch, which costs
    1.1-4x per training step on an AVX-512 CPU with oneDNN (rate 2 to 24; see benchmarks/BENCHMARKS.md). Where
    TensorFlow has no native dilated gradient (native_dilated_gradients), a dilated convolution runs as the
    original's tf.nn.atrous_conv2d (space_to_batch). Same variables, same results.

    A "same"-padded dilated convolution whose rate is at least the (static) height and width of its input reads
    only padding with every tap but the centre one: it is computed as the 1x1 convolution of that tap (the other
    taps get zero gradients, as they do through the padding). Such maps are the decoder's on small images: the
    embedded benchmark's 64x64 crops give 8x8 features, where three of the four ASPP rates (12, 18, 24) read
    nothing else, and their 3x3 gradients took 3x the whole decoder's 1x1 step (benchmarks/BENCHMARKS.md
    "Embedded sweep"); the paper's 321x321 crops give 41x41 features and never take this path (small validation or
    replay images may). Equal to the 3x3
    convolution up to the order of float32 sums (relative 5e-7 on the gradients)."""

    def call(self, inputs):
        if self._reads_only_the_centre_tap(inputs):
            centre = (self.kernel_size[0] // 2, self.kernel_size[1] // 2)
            kernel = self.kernel[centre[0]:centre[0] + 1, centre[1]:centre[1] + 1]
            outputs = tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME")
        elif self.dilation_rate[0] > 1 and not native_dilated_gradients(self.compute_dtype):
            outputs = tf.nn.atrous_conv2d(inputs, self.kernel, self.dilation_rate[0], self.padding.upper())
        else:
            outputs = tf.nn.conv2d(inputs, self.kernel, strides=self.strides, padding=self.padding.upper(),
                                   dilations=self.dilation_rate)
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return outputs

    def _reads_only_the_centre_tap(self, inputs):
        """True for a stride-1 "same" convolution of an odd kernel whose every off-centre tap, at its dilation,
        lies beyond the input's static height and width from every output position (so reads padding only)."""
        h, w = inputs.shape[1], inputs.shape[2]
        (kh, kw), (rh, rw) = self.kernel_size, self.dilation_rate
        return (h is not None and w is not None and self.padding == "same" and tuple(self.strides) == (1, 1)
                and kh % 2 == 1 and kw % 2 == 1 and (kh > 1 or kw > 1)
                and (kh == 1 or rh >= h) and (kw == 1 or rw >= w))


class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' batch norm whose inference mode is one per-channel multiply-add in the compute dtype.

    Inference: x * inv + (beta - moving_mean * inv), inv = rsqrt(moving_variance + epsilon) * gamma, the
    per-channel terms computed in float32 from the variables (gamma and beta get the same gradients as in
    Keras' layer) and cast once. In float32 it is tf.nn.batch_normalization's own arithmetic, so the outputs
    are bit-identical to Keras' layer; under a mixed policy the feature map stays in bfloat16/float16, where
    Keras' layer casts the whole map to float32 and back (two casts per batch norm, 17% of the bfloat16
    decoder-only step: benchmarks/BENCHMARKS.md). Training mode (batch statistics) is Keras' own.
    """

    def call(self, inputs, training=None, mask=None):
        if (training and self.trainable) or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        inv = tf.math.rsqrt(tf.convert_to_tensor(self.moving_variance) + self.epsilon) * self.gamma
        offset = self.beta - self.moving_mean * inv
        return inputs * tf.cast(inv, inputs.dtype) + tf.cast(offset, inputs.dtype)


def _conv_bn(x, filters, kernel, name, strides=1, dilation=1, relu=True):
    """Convolution without bias + batch norm (+ ReLU), named as the original's scope `name`.

    The batch norm's gamma and beta are trainable variables (the original trains them at step 0); it runs in
    inference mode because the Segmenter always calls the encoder with training=False."""
    x = Conv2D(filters, kernel, strides=strides, dilation_rate=dilation, padding="same",
               use_bias=False, name=name)(x)
    x = BatchNormalization(epsilon=BN_EPSILON, name=name + "_bn")(x)
    return keras.layers.ReLU(name=name + "_relu")(x) if relu else x


def _bottleneck(x, out_channels, name, strides, dilation, shortcut):
    """Bottleneck v1 unit: 1x1 (stride here, as in the original) -> 3x3 (dilated) -> 1x1, plus shortcut."""
    mid = max(1, out_channels // 4)
    residual = x
    if shortcut:
        residual = _conv_bn(x, out_channels, 1, name + "_shortcut", strides=strides, relu=False)
    y = _conv_bn(x, mid, 1, name + "_conv1", strides=strides)
    y = _conv_bn(y, mid, 3, name + "_conv2", dilation=dilation)
    y = _conv_bn(y, out_channels, 1, name + "_conv3", relu=False)
    y = keras.layers.Add(name=name + "_add")([residual, y])
    return keras.layers.ReLU(name=name + "_out")(y)


def check_backbone(units, width):
    """(units as 4 ints, width as a float) of the backbone.* bindings; ValueError naming the binding and value
    otherwise (main.py checks the bound values with this before any work)."""
    try:
        ints = [int(u) for u in units]
    except (TypeError, ValueError):
        ints = []
    if len(ints) != 4 or min(ints) < 1:
        raise ValueError(f"backbone.units must be 4 positive ints, got {units}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise ValueError(f"backbone.width must be positive, got {width}")
    return ints, float(width)


def backbone_size():
    """{"units": [4 ints], "width": float}: the backbone size build_encoder builds under the current gin config
    (its bindings, else its defaults), as the embedded build and the artifacts' records note it."""
    size = {k: p.default for k, p in inspect.signature(build_encoder).parameters.items()}
    size.update(gin.get_bindings("backbone"))
    units, width = check_backbone(size["units"], size["width"])
    return {"units": units, "width": width}


@gin.configurable("backbone")
def build_encoder(units=(3, 4, 23, 3), width=1.0):
    """Builds the ResNet v1 encoder (ResNet-101 by default) with output stride 8.

    Args:
      units: units per block (4 ints); (3, 4, 23, 3) is ResNet-101, (1, 1, 1, 1) a small test network.
      width: channel multiplier; 1.0 gives 64 stem channels and 256/512/1024/2048 block outputs.

    Returns:
      keras.Model mapping float32 [B, H, W, 3] (mean-subtracted) to float32
      [B, ceil(H/8), ceil(W/8), int(2048 * width)]. Call it with training=False (inference-mode batch norm)
      except to pretrain it: training=True normalises with batch statistics and updates the moving ones.
    """
    units, width = check_backbone(units, width)
    _probe_dilation()  # eagerly, before any layer is traced
    inputs = keras.Input((None, None, 3), name="images")
    x = _conv_bn(inputs, _channels(64, width), 7, "conv1", strides=2)
    x = keras.layers.MaxPooling2D(3, 2, padding="same", name="pool1")(x)
    for b, ((base, strides, dilation), n_units) in enumerate(zip(_BLOCKS, units), start=1):
        for u in range(1, n_units + 1):
            x = _bottleneck(x, _channels(base, width), f"block{b}_unit_{u}",
                            strides=strides if u == 1 else 1, dilation=dilation, shortcut=(u == 1))
    return keras.Model(inputs, x, name="encoder")


def build_decoder(n_outputs, in_channels):
    """Builds the ASPP decoder: four 3x3 convolutions with bias, rates 6/12/18/24, summed.

    Args:
      n_outputs: number of output channels (21 for the main decoder, helper classes + 1 for a helper).
      in_channels: channels of the encoder features.

    Returns:
      keras.Model mapping float32 [B, h, w, in_channels] to logits float32 [B, h, w, n_outputs].
    """
    _probe_dilation()
    features = keras.Input((None, None, in_channels), name="features")
    # The original's tf.get_variable default (glorot uniform) initialises the biases too.
    branches = [Conv2D(n_outputs, 3, dilation_rate=rate, padding="same", use_bias=True,
                                    bias_initializer="glorot_uniform", name=f"aspp_conv{i}")(features)
                for i, rate in enumerate(ASPP_RATES, start=1)]
    return keras.Model(features, keras.layers.Add(name="aspp_add")(branches), name="decoder")


def upsample(logits, size):
    """Bilinear upsampling as the original's tf.compat.v1.image.resize_bilinear (no half-pixel centres).

    Args:
      logits: float32 [B, h, w, C]. size: int32 [2] target (H, W).
    Returns:
      float32 [B, H, W, C].
    """
    return tf.raw_ops.ResizeBilinear(images=logits, size=size, align_corners=False, half_pixel_centers=False)


@contextlib.contextmanager
def precision_policy(precision):
    """Layers built inside the block use the Keras dtype policy `precision` (one of PRECISIONS); the previous
    policy is restored after. Mixed policies keep float32 variables and compute in float16 / bfloat16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class Segmenter:
    """Encoder + decoder. Attributes: `encoder`, `decoder` (keras.Model), `n_outputs`, `class_ids`,
    `precision`."""

    def __init__(self, n_outputs, class_ids=None, encoder=None, precision="float32"):
        """Args:
          n_outputs: decoder outputs (n_classes, or helper classes + 1).
          class_ids: list, output index -> global class id; None for identity ([0, c1, c2, ...] for a helper).
          encoder: an existing encoder to share (e.g. the step-0 encoder under helper decoders); None builds
            one with the gin-configured backbone size.
          precision: "float32", "mixed_float16" or "mixed_bfloat16": the Keras dtype policy of the layers
            built here. Variables stay float32 (checkpoints are the same); logits are cast to float32 before
            upsampling, so the loss and the argmax are computed in float32.
        """
        class_ids = list(range(n_outputs)) if class_ids is None else [int(c) for c in class_ids]
        if len(class_ids) != n_outputs:
            raise ValueError(f"class_ids {class_ids} should have n_outputs={n_outputs} entries")
        self.n_outputs = int(n_outputs)
        self.class_ids = class_ids
        self.precision = precision
        with precision_policy(precision):
            self.encoder = encoder if encoder is not None else build_encoder()
            self.decoder = build_decoder(self.n_outputs, self.encoder.output_shape[-1])
        self._class_table = tf.constant(class_ids, tf.int32)
        self._predict = tf.function(self._predict_ids, reduce_retracing=True)
        self.compiled = {}  # other modules' tf.functions of this network (traced once per network)
        self._stages = None  # the encoder with its stage outputs (encode(..., maps=True)), made on first use

    def decode(self, features, size):
        """Decoder logits for encoder features, upsampled to `size` (H, W). Returns float32 [B, H, W, n]."""
        return upsample(tf.cast(self.decoder(features), tf.float32), size)

    def __call__(self, images, training=False):
        """Args: images float32 [B, H, W, 3] mean-subtracted. Returns logits float32 [B, H, W, n_outputs].

        Batch norm always runs in inference mode (moving statistics, never updated), as the original's
        `is_training=False`, so `training` changes nothing; it is kept for Keras habits.
        """
        del training
        images = tf.convert_to_tensor(images, tf.float32)
        return self.decode(self.encoder(images, training=False), tf.shape(images)[1:3])

    def stage_layers(self):
        """Names of the encoder layers whose outputs are its four stages' outputs before their last ReLU (each
        block's last unit's sum): the maps of PLOP's Local POD (losses.local_pod)."""
        names = [layer.name for layer in self.encoder.layers if re.fullmatch(r"block\d+_unit_\d+_add", layer.name)]
        last = {}
        for name in names:  # layers are in graph order: the last unit of a block comes last
            last[name.split("_unit_")[0]] = name
        return [last[block] for block in sorted(last, key=lambda b: int(b[len("block"):]))]

    def encode(self, images, maps=False):
        """Encoder features float [B, h, w, D] of mean-subtracted images float32 [B, H, W, 3]; with maps=True
        (features, [stage outputs before their last ReLU, see stage_layers]), from one forward pass."""
        images = tf.convert_to_tensor(images, tf.float32)
        if not maps:
            return self.encoder(images, training=False)
        if self._stages is None:  # the same layers (and variables), more outputs
            self._stages = keras.Model(self.encoder.inputs,
                                       [self.encoder.get_layer(n).output for n in self.stage_layers()]
                                       + [self.encoder.output], name="encoder_stages")
        *stages, features = self._stages(images, training=False)
        return features, stages

    def outputs(self, images, maps=False, encoded=None):
        """What a loss may need from one forward pass (methods.StepLoss): dict of features (encoder output),
        small_logits (decoder logits before upsampling, float32 [B, h, w, n]), logits (upsampled, float32
        [B, H, W, n_outputs], as __call__) and, with maps=True, maps (the encoder stages' outputs).

        encoded: the result of encode(images, maps) when it was computed already (e.g. outside a gradient tape
        for a frozen encoder); None computes it here."""
        images = tf.convert_to_tensor(images, tf.float32)
        encoded = self.encode(images, maps) if encoded is None else encoded
        features, stages = encoded if maps else (encoded, None)
        small = tf.cast(self.decoder(features), tf.float32)
        out = {"features": features, "small_logits": small, "logits": upsample(small, tf.shape(images)[1:3])}
        if maps:
            out["maps"] = list(stages)
        return out

    def _predict_ids(self, images):
        return tf.gather(self._class_table, tf.argmax(self(images), axis=-1, output_type=tf.int32))

    def predict_ids(self, images):
        """Args: images float32 [B, H, W, 3]. Returns int32 [B, H, W] global class ids (argmax, mapped)."""
        return self._predict(tf.convert_to_tensor(images, tf.float32))


# ----------------------------------------------------------------------------------------------------------
# Checkpoints: every variable is addressed by the original's TF1 name, in our files and in TF1 checkpoints.
# ----------------------------------------------------------------------------------------------------------

def encoder_tf1_names(encoder, scope=ENCODER_SCOPE):
    """Returns [(variable, TF1 name)] for every encoder variable, e.g. layer block3_unit_5_conv2_bn's moving
    mean -> resnet_v1_101/block3/unit_5/bottleneck_v1/conv2/BatchNorm/moving_mean."""
    pairs = []
    for layer in encoder.layers:
        match = re.fullmatch(r"(?:(block\d+)_(unit_\d+)_)?(conv\d|shortcut)(_bn)?", layer.name)
        if not match:
            continue
        block, unit, conv, bn = match.groups()
        prefix = f"{scope}/{block}/{unit}/bottleneck_v1/{conv}" if block else f"{scope}/{conv}"
        if bn:
            pairs += [(layer.gamma, prefix + "/BatchNorm/gamma"), (layer.beta, prefix + "/BatchNorm/beta"),
                      (layer.moving_mean, prefix + "/BatchNorm/moving_mean"),
                      (layer.moving_variance, prefix + "/BatchNorm/moving_variance")]
        else:
            pairs.append((layer.kernel, prefix + "/weights"))
    assert len(pairs) == len(encoder.weights), "an encoder variable has no TF1 name"
    return pairs


def decoder_tf1_names(decoder, scope=DECODER_SCOPE):
    """Returns [(variable, TF1 name)]: layer aspp_conv{i} -> decoder/aspp/conv{i}/{weights,biases}."""
    pairs = []
    for i in range(1, len(ASPP_RATES) + 1):
        layer = decoder.get_layer(f"aspp_conv{i}")
        pairs += [(layer.kernel, f"{scope}/aspp/conv{i}/weights"),
                  (layer.bias, f"{scope}/aspp/conv{i}/biases")]
    return pairs


def _assign_by_name(pairs, shapes, read, source):
    """Checks every variable against `shapes` (name -> shape) first, then assigns `read(name)` to each."""
    problems = []
    for var, name in pairs:
        if name not in shapes:
            problems.append(f"missing {name} (expected shape {tuple(var.shape)})")
        elif tuple(shapes[name]) != tuple(var.shape):
            problems.append(f"mis-shaped {name}: found {tuple(shapes[name])}, expected {tuple(var.shape)}")
    if problems:  # Nothing is assigned, so a failed load never leaves a half-loaded model.
        raise ValueError(f"{source} does not fit the model ({len(problems)} problems):\n  "
                         + "\n  ".join(problems))
    for var, name in pairs:
        var.assign(read(name))


def load_tf1_checkpoint(pairs, path):
    """Assigns variables from a TF1 / TF-Slim checkpoint by name; other checkpoint variables are ignored.

    Args:
      pairs: [(variable, TF1 name)], see encoder_tf1_names / decoder_tf1_names.
      path: checkpoint prefix (the files are path.index and path.data-*).
    Raises:
      ValueError: an unreadable checkpoint (naming its files), or one missing or mis-shaping variables (each
        listed; nothing is assigned then).
    """
    try:
        reader = tf.train.load_checkpoint(path)
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"cannot read the TF1 checkpoint {path} ({path}.index and {path}.data-*): "
                         f"{type(e).__name__}: {e}; expected a checkpoint written by TF1's tf.train.Saver "
                         f"(e.g. the original's checkpoints/encoders/pretrained or TF-Slim's resnet_v1_101.ckpt)"
                         ) from None
    _assign_by_name(pairs, reader.get_variable_to_shape_map(), reader.get_tensor, f"TF1 checkpoint {path}")


def _weights_file(path):
    return path if path.endswith(CHECKPOINT_SUFFIX) else path + CHECKPOINT_SUFFIX


def _save(pairs, path, what):
    final = _weights_file(path)
    with atomic_path(final, fsync=True) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = "RECALL-TF2 weights, datasets named as the original's TF1 variables"
            for var, name in pairs:
                f.create_dataset(name, data=var.numpy())
    logging.info("Saved the %s to %s", what, final)


def save_encoder(seg, path):
    """Writes the encoder to `path + ".weights.h5"` (HDF5, one dataset per TF1 variable name), under a
    temporary name first and renamed when complete."""
    _save(encoder_tf1_names(seg.encoder), path, "encoder")


def save_decoder(seg, path):
    """Writes the decoder to `path + ".weights.h5"` (see save_encoder)."""
    _save(decoder_tf1_names(seg.decoder), path, "decoder")


def _load(pairs, path, what):
    ours = _weights_file(path)
    prefix = ours[:-len(CHECKPOINT_SUFFIX)]
    if os.path.exists(ours):
        try:
            f = h5py.File(ours, "r")
        except OSError as e:
            raise ValueError(f"cannot read {ours}: {e}") from e
        with f:
            shapes = {}
            f.visititems(lambda name, obj: shapes.update({name: obj.shape})
                         if isinstance(obj, h5py.Dataset) else None)
            _assign_by_name(pairs, shapes, lambda name: f[name][()], ours)
        logging.info("Loaded the %s from %s", what, ours)
    elif os.path.exists(prefix + ".index"):
        load_tf1_checkpoint(pairs, prefix)
        logging.info("Loaded the %s from the TF1 checkpoint %s", what, prefix)
    else:
        raise FileNotFoundError(f"no {what} checkpoint: neither {ours} nor {prefix}.index (TF1) exists")


def load_encoder(seg, path, scope=ENCODER_SCOPE):
    """Loads the encoder from `path + ".weights.h5"` or, failing that, from the TF1 checkpoint `path`
    (variables `scope/...`, as the original's and TF-Slim's resnet_v1_101).

    Raises:
      FileNotFoundError when neither exists; ValueError listing every missing or mis-shaped variable.
    """
    _load(encoder_tf1_names(seg.encoder, scope), path, "encoder")


def load_decoder(seg, path):
    """Loads the decoder from `path + ".weights.h5"` or the TF1 checkpoint `path` (decoder/aspp/...)."""
    _load(decoder_tf1_names(seg.decoder), path, "decoder")

# ----------------------------------------------------------------------------------------------------------
# Label maps: stored label values -> a network's targets (training and evaluation)
# ----------------------------------------------------------------------------------------------------------

def make_label_map(class_ids, helper=False):
    """Maps stored label values to training targets.

    Args:
      class_ids: output index -> global class id. Main decoder: the stage's classes [0, 1, ..., N] (the
        targets are then the ids themselves). Helper: [0, c1, c2, ...].
      helper: the original's helper rule: every value that is not one of the helper's classes (other
        classes and void 255 included) becomes background 0. Otherwise such values become 255 (ignored).

    Returns:
      np.ndarray int32 [256]: stored value -> target index in [0, len(class_ids)) or 255.
    """
    label_map = np.full(256, 0 if helper else VOID, np.int32)
    for index, class_id in enumerate(class_ids):
        if not 0 <= int(class_id) < VOID:
            raise ValueError(f"class id {class_id} in {list(class_ids)} should be in [0, 255)")
        label_map[int(class_id)] = index
    return label_map
