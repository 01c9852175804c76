"""Makes the pretrained encoder of step 0 from Keras' ImageNet ResNet-101.

    python prepare_pretrained.py [--out checkpoints/encoders/pretrained] [--weights imagenet|PATH.h5]
                                 [--channel_order bgr|rgb] [--overwrite]

Writes `--out` + ".weights.h5" (model.save_encoder: our format, datasets named by the original's TF1
variables, written under a temporary name and renamed), once: an existing checkpoint (ours or a TF1 one) is
kept unless --overwrite.

Source: `keras.applications.ResNet101(include_top=False)`, the Caffe ResNet-101 (He et al.) that DeepLab-V2
was built on: ResNet v1 bottlenecks with the stride in the first 1x1 convolution of a block, as our encoder.
`--weights imagenet` fetches Keras' file through Keras' own cache (`keras.utils.get_file`, the same call as
keras.applications makes): `~/.keras/models/resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5`
(`$KERAS_HOME/models/...` when set). Offline, put that file there, or pass its path with --weights.

Mapping (exact, by name): Keras `conv1_{conv,bn}` -> `resnet_v1_101/conv1`; `conv{b+1}_block{u}_{k}_{conv,bn}`
-> `resnet_v1_101/block{b}/unit_{u}/bottleneck_v1/{shortcut,conv1,conv2,conv3}` for k = 0, 1, 2, 3 (Keras'
conv2..conv5 are our block1..block4). Keras' convolutions carry a bias and its batch norms use epsilon
1.001e-5; ours have no bias and epsilon 1e-3 (model.BN_EPSILON). Both are folded so that the encoder computes
the same function: moving_mean' = moving_mean - bias, gamma' = gamma * sqrt(var + 1e-3) / sqrt(var + 1.001e-5).

What stays different (tests/test_prepare_pretrained.py measures it): our encoder is output stride 8 (blocks
3 and 4 dilated 2 and 4, stride 1), Keras' 32; our stride-8 features sampled every 4th position are Keras'
stride-32 features. Keras pads conv1 (3 each side) and pool1 (1 each side) symmetrically; our SAME padding
puts the odd pixel at the bottom/right, which is the same only when H and W are 1 mod 4 (e.g. 33, 321, the
training crop). For other sizes the sampling grid of conv1 and/or pool1 moves by one pixel, so every output
position differs (not just a border): a property of the original's SAME-padded network, not of the conversion.

Preprocessing. The Keras weights expect `keras.applications.resnet.preprocess_input` (mode "caffe"): BGR
channel order, the Caffe ImageNet mean [103.939, 116.779, 123.68] (B, G, R) subtracted, no scaling. This
project's pipeline (data_loader.py, as the original) decodes JPEGs as RGB and subtracts `dataset_mean`
[104.00698793, 116.66876762, 122.67891434] (the Caffe/DeepLab mean, a BGR mean) in that RGB order: the network
sees R - 104.0, G - 116.7, B - 122.7. With the default `--channel_order bgr` the encoder is exactly Keras'
network, so under the unchanged pipeline its red and blue inputs are swapped (and their means are off by about
20). `--channel_order rgb` reverses conv1's input channels in the checkpoint: the encoder then computes Keras'
function of the channel-reversed image, i.e. it takes RGB; binding `TrainManager.dataset_mean = [123.68,
116.779, 103.939]` (the Caffe mean in RGB order) then makes the pipeline's input exactly what the weights were
trained on.
"""

import os
import re

from absl import app
from absl import flags
from absl import logging
import keras
from keras.src.applications import resnet as keras_resnet  # Keras' own URL and hashes of its weights
from keras.src.backend import config as keras_config  # Keras' cache folder (keras_home)
import numpy as np

import model
from artifacts import CHECKPOINT_SUFFIX, checkpoint_exists

KERAS_BN_EPSILON = 1.001e-5  # keras.applications.resnet's batch norms
UNITS = (3, 4, 23, 3)  # ResNet-101
WEIGHTS_FILE = "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_URL = keras_resnet.BASE_WEIGHTS_PATH + WEIGHTS_FILE
WEIGHTS_MD5 = keras_resnet.WEIGHTS_HASHES["resnet101"][1]  # the include_top=False file
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # what keras.applications.resnet.preprocess_input subtracts
CHANNEL_ORDERS = ("bgr", "rgb")
DEFAULT_OUT = "checkpoints/encoders/pretrained"

_KERAS_LAYER = re.compile(r"conv1_(conv|bn)|conv([2-5])_block(\d+)_([0-3])_(conv|bn)")
_KERAS_CONV_INDEX = ("shortcut", "conv1", "conv2", "conv3")


def tf1_scope(keras_layer_name, scope=model.ENCODER_SCOPE):
    """The TF1 scope of a Keras ResNet layer, and whether it is the convolution or its batch norm.

    E.g. "conv1_conv" -> ("resnet_v1_101/conv1", "conv"); "conv4_block23_2_bn" ->
    ("resnet_v1_101/block3/unit_23/bottleneck_v1/conv2", "bn"). Returns None for layers without weights
    (padding, pooling, activations, additions, the input).
    """
    match = _KERAS_LAYER.fullmatch(keras_layer_name)
    if not match:
        return None
    stem_kind, stage, unit, index, kind = match.groups()
    if stem_kind:
        return f"{scope}/conv1", stem_kind
    block = int(stage) - 1
    return f"{scope}/block{block}/unit_{int(unit)}/bottleneck_v1/{_KERAS_CONV_INDEX[int(index)]}", kind


def fold(kernel, bias, gamma, beta, moving_mean, moving_variance, epsilon=KERAS_BN_EPSILON):
    """Folds a Keras convolution with bias + batch norm (epsilon `epsilon`) into ours: no bias, epsilon
    model.BN_EPSILON, same function:
        (conv + bias - mean) / sqrt(var + eps) * gamma + beta
      = (conv - (mean - bias)) / sqrt(var + 1e-3) * (gamma * sqrt(var + 1e-3) / sqrt(var + eps)) + beta.

    Args: numpy arrays; kernel [kh, kw, in, out], the others [out]. Bias may be None (no bias).
    Returns: dict suffix -> float32 array, suffixes "weights" and "BatchNorm/{gamma,beta,moving_mean,
      moving_variance}" (append them to the TF1 scope).
    """
    variance = np.asarray(moving_variance, np.float64)  # folded in float64, stored as float32
    mean = np.asarray(moving_mean, np.float64) - (0.0 if bias is None else np.asarray(bias, np.float64))
    gamma = np.asarray(gamma, np.float64) * np.sqrt(variance + model.BN_EPSILON) / np.sqrt(variance + epsilon)
    values = {"weights": kernel, "BatchNorm/gamma": gamma, "BatchNorm/beta": beta,
              "BatchNorm/moving_mean": mean, "BatchNorm/moving_variance": variance}
    return {k: np.asarray(v, np.float32) for k, v in values.items()}


def keras_to_tf1(keras_model, channel_order="bgr", scope=model.ENCODER_SCOPE):
    """The encoder's variables, by TF1 name, from a Keras ResNet (keras.applications.resnet layout).

    Args:
      keras_model: e.g. keras.applications.ResNet101(include_top=False).
      channel_order: "bgr" keeps Keras' function (BGR input); "rgb" reverses conv1's input channels, so that the
        encoder computes Keras' function of the channel-reversed image.
    Returns: dict TF1 name -> float32 numpy array (see fold).
    Raises: ValueError when a convolution has no batch norm or the reverse, or a layer is unexpected.
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    convs, bns, problems = {}, {}, []
    for layer in keras_model.layers:
        found = tf1_scope(layer.name, scope)
        if found is None:
            if layer.weights:
                problems.append(f"Keras layer {layer.name} has weights but no TF1 name")
            continue
        prefix, kind = found
        (convs if kind == "conv" else bns)[prefix] = layer
    problems += [f"{p}: convolution without batch norm" for p in sorted(set(convs) - set(bns))]
    problems += [f"{p}: batch norm without convolution" for p in sorted(set(bns) - set(convs))]
    if problems:
        raise ValueError(f"{keras_model.name} is not a keras.applications ResNet:\n  " + "\n  ".join(problems))
    values = {}
    for prefix, conv in convs.items():
        bn = bns[prefix]
        kernel = conv.kernel.numpy()
        if prefix == f"{scope}/conv1" and channel_order == "rgb":
            kernel = kernel[:, :, ::-1, :]
        folded = fold(kernel, conv.bias.numpy() if conv.use_bias else None, bn.gamma.numpy(), bn.beta.numpy(),
                      bn.moving_mean.numpy(), bn.moving_variance.numpy(), bn.epsilon)
        values.update({f"{prefix}/{suffix}": value for suffix, value in folded.items()})
    return values


def assign_encoder(encoder, values, source="the Keras weights"):
    """Assigns every encoder variable from `values` (TF1 name -> array), all or nothing.

    Raises: ValueError listing every encoder variable that is missing or mis-shaped in `values` and every value
      that no encoder variable takes; nothing is assigned then.
    """
    pairs = model.encoder_tf1_names(encoder)
    problems = []
    for var, name in pairs:
        if name not in values:
            problems.append(f"missing {name} (expected shape {tuple(var.shape)})")
        elif tuple(values[name].shape) != tuple(var.shape):
            problems.append(f"mis-shaped {name}: found {tuple(values[name].shape)}, expected {tuple(var.shape)}")
    problems += [f"unused {name} {tuple(values[name].shape)}" for name in sorted(set(values) - {n for _, n in pairs})]
    if problems:
        raise ValueError(f"{source} do not fit the encoder ({len(problems)} problems):\n  " + "\n  ".join(problems))
    for var, name in pairs:
        var.assign(values[name])


def keras_cache_dir():
    """The folder keras.utils.get_file caches into (`$KERAS_HOME` or ~/.keras, /tmp/.keras when not writable)."""
    base = os.path.expanduser(keras_config.keras_home())
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp", ".keras")
    return base


def imagenet_weights_path():
    """Keras' ImageNet ResNet-101 file (include_top=False) from Keras' cache, downloaded into it if absent.

    Raises: FileNotFoundError saying which file to put where, when it is not cached and cannot be downloaded.
    """
    cache_dir = keras_cache_dir()
    target = os.path.join(cache_dir, "models", WEIGHTS_FILE)
    try:
        return keras.utils.get_file(WEIGHTS_FILE, WEIGHTS_URL, cache_subdir="models", file_hash=WEIGHTS_MD5,
                                    cache_dir=cache_dir)
    except Exception as e:  # Keras raises a bare Exception for a failed fetch, ValueError for a bad hash.
        raise FileNotFoundError(
            f"Keras' ImageNet ResNet-101 weights are not in the Keras cache and could not be downloaded ({e}). "
            f"Download {WEIGHTS_URL} (md5 {WEIGHTS_MD5}) on a machine with internet access and put it at "
            f"{target}, or pass its path with --weights.") from e


def keras_resnet101(weights="imagenet"):
    """keras.applications.ResNet101(include_top=False) with `weights`: "imagenet" (Keras' cache, see
    imagenet_weights_path) or the path of a weights file for that model."""
    path = imagenet_weights_path() if weights == "imagenet" else weights
    if not os.path.exists(path):
        raise FileNotFoundError(f"--weights {path}: no such file (expected 'imagenet' or the path of a "
                                f"keras.applications.ResNet101(include_top=False) weights file, e.g. {WEIGHTS_FILE})")
    resnet = keras.applications.ResNet101(weights=None, include_top=False)
    try:
        resnet.load_weights(path)
    except ValueError as e:
        raise ValueError(f"{path} is not a weights file of keras.applications.ResNet101(include_top=False) "
                         f"(a file with the classifier, include_top=True, does not fit): {e}") from e
    return resnet


def encoder_from_keras(keras_model, channel_order="bgr"):
    """A model.Segmenter whose ResNet-101 encoder holds the Keras model's weights, folded (see keras_to_tf1).
    The decoder is left as built (random): only the encoder is meant to be saved."""
    seg = model.Segmenter(21, encoder=model.build_encoder(units=UNITS, width=1.0))
    assign_encoder(seg.encoder, keras_to_tf1(keras_model, channel_order), f"the weights of {keras_model.name}")
    return seg


def prepare(out=DEFAULT_OUT, weights="imagenet", channel_order="bgr", overwrite=False):
    """Writes the pretrained encoder to `out` + ".weights.h5" unless a checkpoint is already there.

    Returns: "skipped" or "written".
    """
    if out.endswith(CHECKPOINT_SUFFIX):
        out = out[:-len(CHECKPOINT_SUFFIX)]
    if checkpoint_exists(out) and not overwrite:
        logging.info("pretrained encoder: skipped, %s already exists (--overwrite to replace it)", out)
        return "skipped"
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    seg = encoder_from_keras(keras_resnet101(weights), channel_order)
    model.save_encoder(seg, out)
    logging.info("pretrained encoder: written to %s%s from %s (channel order %s)", out, CHECKPOINT_SUFFIX,
                 weights, channel_order)
    return "written"


def define_flags():
    """The command line's flags (defined only when run as a script: importing this module defines none)."""
    flags.DEFINE_string("out", DEFAULT_OUT, "Checkpoint path without the .weights.h5 suffix.")
    flags.DEFINE_string("weights", "imagenet", "'imagenet' (Keras' cached download) or the path of a "
                        "keras.applications.ResNet101(include_top=False) weights file.")
    flags.DEFINE_enum("channel_order", "bgr", list(CHANNEL_ORDERS), "Channel order the encoder takes: bgr "
                      "(Keras' network unchanged) or rgb (conv1's input channels reversed, for RGB images).")
    flags.DEFINE_bool("overwrite", False, "Replace an existing checkpoint.")


def main(argv):
    del argv
    f = flags.FLAGS
    prepare(f.out, f.weights, f.channel_order, f.overwrite)


def cli():
    """The console script `recall-prepare-pretrained`."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    cli()
