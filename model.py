"""DeepLab-V2 (ResNet-101 v1, ASPP) for RECALL: network, checkpoints and the training step.

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
from methods import recall

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
    "Embedded sweep"); the paper's 321x321 crops give 41x41 features and never take this path. Equal to the 3x3
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
# Training
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


def _poly(step, initial, final, decay_steps, power, start_decay_step, floor):
    s = tf.clip_by_value(tf.cast(step, tf.float32) - start_decay_step, 0.0, decay_steps)
    return (initial - final) * (1.0 - s / decay_steps) ** power + floor


class PolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = (initial - final) * (1 - s / decay_steps) ** power + floor,
    s = min(max(step - start_decay_step, 0), decay_steps); floor = final unless given."""

    FIELDS = ("initial", "final", "decay_steps", "power", "start_decay_step", "floor")

    def __init__(self, initial, final, decay_steps, power=0.9, start_decay_step=0, floor=None):
        if decay_steps <= 0:
            raise ValueError(f"decay_steps should be positive, got {decay_steps}")
        self.initial, self.final, self.decay_steps = float(initial), float(final), int(decay_steps)
        self.power, self.start_decay_step = float(power), int(start_decay_step)
        self.floor = self.final if floor is None else float(floor)

    def __call__(self, step):
        return _poly(step, *(float(getattr(self, f)) for f in self.FIELDS))

    def get_config(self):
        return {f: getattr(self, f) for f in self.FIELDS}


class _SettableSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The rate of the PolyDecay (or constant) last `set`, held in variables: a compiled training step
    follows a change of schedule without being traced again."""

    def __init__(self, schedule):
        self._values = {f: tf.Variable(0.0, trainable=False, name=f"lr_{f}") for f in PolyDecay.FIELDS}
        self.set(schedule)

    def set(self, schedule):
        if isinstance(schedule, (int, float, np.floating)):
            schedule = PolyDecay(schedule, schedule, 1)  # (lr - lr) * ... + lr: a constant rate
        if not isinstance(schedule, PolyDecay):
            raise TypeError(f"lr_schedule should be a PolyDecay (see poly_schedule) or a number, got "
                            f"{type(schedule).__name__}")
        for f in PolyDecay.FIELDS:
            self._values[f].assign(float(getattr(schedule, f)))

    def __call__(self, step):
        return _poly(step, *(self._values[f] for f in PolyDecay.FIELDS))


def poly_schedule(initial, final, decay_steps, power=0.9, start_decay_step=0, floor=None):
    """The original's polynomial decay (SPEC "Learning rate"). With start_decay_step 0 and no floor it equals
    keras.optimizers.schedules.PolynomialDecay(initial, decay_steps, final, power). `floor` reproduces the
    original's slip (the first step's final value added in every stage) when given. Returns PolyDecay."""
    return PolyDecay(initial, final, decay_steps, power, start_decay_step, floor)


MOMENTUM_RULES = ("tf1", "keras")


class TF1Momentum(keras.optimizers.SGD):
    """SGD with momentum updated as TF1's tf.train.MomentumOptimizer (the original's optimizer):

        accum = momentum * accum + grad;   var -= lr * accum

    The current rate scales the whole accumulator. Keras' SGD (`momentum_rule = "keras"`) folds each step's
    rate into the velocity instead (v = momentum * v - lr * grad; var += v): the two agree while the rate is
    constant and differ as it decays: with a steady gradient on the configs' schedules, by 1.6% of an update
    at mid-decay and 52% at the last step of a one-class incremental step (where the rate nears its floor).
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.momentum == 0:  # accum = grad: plain gradient descent under both rules
            return super().update_step(gradient, variable, learning_rate)
        learning_rate = keras.ops.cast(learning_rate, variable.dtype)
        gradient = keras.ops.cast(gradient, variable.dtype)
        accum = self.momentums[self._get_variable_index(variable)]
        self.assign(accum, keras.ops.add(keras.ops.multiply(accum, keras.ops.cast(self.momentum, variable.dtype)),
                                         gradient))
        self.assign_sub(variable, keras.ops.multiply(accum, learning_rate))


def make_optimizer(schedule, momentum, rule="tf1"):
    """SGD with momentum under `rule`: "tf1" (the original's, TF1Momentum) or "keras" (keras.optimizers.SGD)."""
    if rule not in MOMENTUM_RULES:
        raise ValueError(f"momentum rule must be one of {MOMENTUM_RULES}, got {rule!r}")
    return (TF1Momentum if rule == "tf1" else keras.optimizers.SGD)(learning_rate=schedule, momentum=float(momentum))


def batch_norm_scales(encoder):
    """The gamma and beta variables of every batch norm of `encoder` (trained at step 0 by the original)."""
    return [v for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)
            for v in (layer.gamma, layer.beta)]


class Trainer:
    """One compiled SGD-momentum step of a method's loss (methods.StepLoss; the original's by default) for a
    Segmenter.

    Build it (and the Segmenter) inside `strategy.scope()` to train with a tf.distribute strategy.
    The momentum update is TF1's by default (see TF1Momentum); a Segmenter built with precision
    "mixed_float16" trains with dynamic loss scaling (LossScaleOptimizer).

    The step is traced once: `reset` prepares the next stage on the same network (new label map, new
    schedule, fresh optimizer state) without tracing it again.
    """

    def __init__(self, seg, label_map, lr_schedule, momentum=0.9, l2_decay=1e-4, train_encoder=True,
                 jit_compile=False, train_batch_norm=True, momentum_rule="tf1", loss=None, previous=None):
        """Args:
          seg: the Segmenter to train.
          label_map: 256 ints, stored label value -> target in [0, seg.n_outputs) or 255 (see make_label_map).
          lr_schedule: a PolyDecay (see poly_schedule) or a number (constant rate).
          momentum: SGD momentum. l2_decay: factor of sum(w^2)/2 over the trained convolution kernels.
          train_encoder: True trains encoder + decoder (step 0); False the decoder only.
          jit_compile: compile the forward and backward pass with XLA (also under a multi-replica strategy:
            the all-reductions and the update stay outside the compiled part).
          train_batch_norm: with train_encoder, also train the batch norms' gamma and beta (the original;
            no L2 on them); False keeps them fixed. Moving statistics never change either way.
          momentum_rule: "tf1" (the original's MomentumOptimizer) or "keras" (Keras SGD's rule).
          loss: the stage's loss (methods.StepLoss); None: the original's (methods.recall.LOSS: cross-entropy
            over the counted pixels, divided by their number in the global batch). It is called in the compiled
            step as loss(current, old, targets, count, replicas) with seg.outputs(images) and, when it reads the
            previous network (needs_previous), previous.outputs(images) computed in the same step (no gradient);
            its "loss", this replica's share, plus the L2 term is minimised.
          previous: the frozen network of the previous step (its variables never train), exactly when the loss
            reads it. When it shares seg's encoder and the encoder does not train, the encoder runs once for both.
        """
        loss = recall.LOSS if loss is None else loss
        if loss.needs_previous != (previous is not None):
            raise ValueError(f"Trainer: a method's loss that reads the previous step's network needs that network, "
                             f"and only such a loss takes one ({loss.method.name}: needs_previous="
                             f"{loss.needs_previous}, previous given: {previous is not None})")
        self.loss, self.previous = loss, previous
        self.seg = seg
        self.train_encoder = bool(train_encoder)
        self.l2_decay = float(l2_decay)
        models = [seg.encoder, seg.decoder] if self.train_encoder else [seg.decoder]
        fixed = set() if train_batch_norm else {id(v) for v in batch_norm_scales(seg.encoder)}
        self.variables = [v for m in models for v in m.trainable_variables if id(v) not in fixed]
        self.kernels = [layer.kernel for m in models for layer in m.layers
                        if isinstance(layer, keras.layers.Conv2D)]
        self._label_map = tf.Variable(self._checked(label_map), trainable=False, name="label_map")
        self.schedule = _SettableSchedule(lr_schedule)
        self.loss_scaling = getattr(seg, "precision", "float32") == "mixed_float16"
        self.optimizer = make_optimizer(self.schedule, momentum, momentum_rule)
        if self.loss_scaling:  # float16 gradients underflow without it; bfloat16 has float32's range.
            self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
        self.optimizer.build(self.variables)  # before the first compiled step (needed under a strategy).
        self._initial_state = [v.numpy() for v in self.optimizer.variables]
        self._gradients = (tf.function(self._forward_backward, jit_compile=True) if jit_compile
                           else self._forward_backward)
        self._step = tf.function(self._replica_step)
        self._distributed_step = None

    def _checked(self, label_map):
        label_map = np.asarray(label_map)
        bad = [int(v) for v in np.unique(label_map) if not (0 <= v < self.seg.n_outputs or v == VOID)]
        if label_map.shape != (256,) or bad:
            raise ValueError(f"label_map should hold 256 values in [0, {self.seg.n_outputs}) or 255; got shape "
                             f"{label_map.shape}, bad values {bad}")
        return label_map.astype(np.int32)

    def reset(self, label_map, lr_schedule):
        """Starts a new stage on the same network: what a new Trainer(seg, label_map, lr_schedule, ...) would
        do (iteration 0, zero momentum, initial loss scale), keeping the traced step."""
        self._label_map.assign(self._checked(label_map))
        self.schedule.set(lr_schedule)
        for variable, value in zip(self.optimizer.variables, self._initial_state):
            variable.assign(value)

    def l2_loss(self):
        """l2_decay * sum(w^2) / 2 over the trained convolution kernels (float32 scalar)."""
        return self.l2_decay * tf.add_n([tf.nn.l2_loss(k) for k in self.kernels])

    def _forward_backward(self, images, targets, count, num_replicas):
        """Gradients of this replica's share of the loss (the optimizer sums the replicas' gradients): the frozen
        encoder's features and the previous network's outputs first (no gradient), then the trained network's
        outputs and the loss under the tape.

        count: valid pixels of all replicas (float32), for a loss that is a mean over the global batch's (the
        original's). Returns (gradients, terms, l2): terms["loss"] is this replica's share of the loss (the
        shares sum to it), the other terms are its own values; the gradients are loss-scaled for float16."""
        maps = self.loss.needs_maps
        frozen = None
        if not self.train_encoder:
            frozen = tf.nest.map_structure(tf.stop_gradient, self.seg.encode(images, maps))
        old = None
        if self.previous is not None:
            shared = frozen if self.previous.encoder is self.seg.encoder and frozen is not None else None
            old = tf.nest.map_structure(tf.stop_gradient, self.previous.outputs(images, maps, encoded=shared))
        with tf.GradientTape() as tape:
            terms = dict(self.loss(self.seg.outputs(images, maps, encoded=frozen), old, targets, count, num_replicas))
            l2 = self.l2_loss()
            total = terms["loss"] + l2 / num_replicas
            if self.loss_scaling:
                total = self.optimizer.scale_loss(total)
        return tape.gradient(total, self.variables), terms, l2

    def _replica_step(self, images, labels):
        ctx = tf.distribute.get_replica_context()
        if ctx is None:
            raise ValueError("train_step was called in a strategy's cross-replica context (inside "
                             "strategy.scope()); use distributed_train_step(strategy, images, labels)")
        images = tf.convert_to_tensor(images, tf.float32)
        labels = tf.cast(labels, tf.int32)
        if labels.shape.rank == 4:  # [B, H, W, 1], as the original's placeholders
            labels = tf.squeeze(labels, -1)
        targets = tf.gather(self._label_map, labels)
        # Mean over the valid pixels of all replicas.
        count = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                               tf.reduce_sum(tf.cast(tf.not_equal(targets, VOID), tf.float32)))
        lr = self.optimizer.learning_rate  # the rate this update uses (schedule at the current iteration).
        grads, terms, l2 = self._gradients(images, targets, count, ctx.num_replicas_in_sync)
        if self.loss_scaling and ctx.num_replicas_in_sync > 1:
            grads = _non_finite_everywhere(ctx, grads)
        self.optimizer.apply_gradients(zip(grads, self.variables))
        return dict(terms, l2=l2, lr=tf.cast(lr, tf.float32))

    def train_step(self, images, labels):
        """One update. Args: images float32 [B, H, W, 3] mean-subtracted; labels uint8/int32 [B, H, W].

        Returns: dict of float32 scalars: loss (the method's loss without L2: the original's, the cross-entropy
        mean over the counted pixels), l2, lr (used), and a baseline's terms (e.g. ce, kd).
        """
        return self._step(images, labels)

    def distributed_train_step(self, strategy, images, labels):
        """One update under `strategy` with per-replica (distributed dataset) images and labels.
        Returns the same dict as train_step, reduced over the replicas."""
        if self._distributed_step is None:
            def step(images, labels):
                out = strategy.run(self._replica_step, args=(images, labels))
                # "loss" is each replica's share of the global loss; the other values are each replica's own.
                return {k: strategy.reduce("SUM" if k == "loss" else "MEAN", v, axis=None) for k, v in out.items()}
            self._distributed_step = tf.function(step)
        return self._distributed_step(images, labels)


def _non_finite_everywhere(ctx, grads):
    """Makes every replica's gradients non-finite when one replica's are, so that the LossScaleOptimizer of
    every replica skips the same steps (it checks each replica's gradients before summing them)."""
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
    bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    return [tf.where(bad > 0, tf.constant(np.nan, g.dtype), g) for g in grads]
