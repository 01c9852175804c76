"""Our training step against the same DeepLab-V2 ResNet-101 written in PyTorch, paired in one run: an optional
case, run only where torch is installed (torch is not a project dependency: `pip install torch`).

    python -m benchmarks.bench_torch [--modes encoder+decoder,decoder] [--dtypes float32,bfloat16]
                                     [--pairs 3] [--image_size 321] [--batch 4] [--max_load 1.5] [--force]
    python -m benchmarks.bench_torch --check --image_size 65 --batch 1 --units 1,1,1,1 --width 0.125

The PyTorch network is written here by hand, layer for layer as model.py's: ResNet v1 bottlenecks with the
stride in the first 1x1 convolution, blocks 3 and 4 dilated 2 and 4 (output stride 8), no convolution bias in
the encoder, TensorFlow's "same" padding, frozen batch norm (eval-mode BatchNorm2d, epsilon 1e-3, its scale and
offset trained with the encoder), the ASPP decoder (3x3, rates 6/12/18/24, with bias, summed), logits upsampled
as tf.compat.v1.image.resize_bilinear (no half-pixel centres: two interpolation matrices, torch's
F.interpolate has only half-pixel centres), cross-entropy averaged over the pixels whose label is not 255,
1e-4 * sum(w^2) / 2 over the trained convolution kernels, SGD with momentum 0.9 (torch's rule is TF1's, ours:
accum = 0.9 * accum + grad; var -= lr * accum). Channels-last memory format; torch.set_num_threads to
TensorFlow's intra-op threads (its default 0 = the schedulable CPUs). Modes: "encoder+decoder" (everything
trains) and "decoder" (the encoder forward only: torch.no_grad, tf.stop_gradient). Dtypes: float32, and
bfloat16 = our Segmenter(precision="mixed_bfloat16") against torch.autocast("cpu", torch.bfloat16) (float32
variables, bfloat16 compute, logits and loss in float32 in both).

Timing: both networks start from the same weights (ours copied into torch); one warm-up step of each (tracing),
then their steps alternate (ours, torch, ours, ...) `--pairs` times on one fixed random batch, so that both see
the same load. Reports the median s/step of each, images/s, ours / torch, and convolution FLOPs per step
(bench_perf.conv_flops / step_flops) with the GFLOP/s each achieves. Refuses to time (exit status 2) when the
1-minute load average is above --max_load, unless --force (the output then says the figures were taken under
load). Without torch it says so and exits with status 0: the case is optional and its absence is the normal
state of the project's machines, so a loop over the benchmarks goes on.

--check proves that the two are the same network: random weights and batch-norm statistics of ours copied into
torch; float32 logits on a random batch compared (max |difference| / max |logit|), then one SGD step of each
per mode from the same weights: its cross-entropy, and the update of all the trained variables (norm of the
difference / norm of ours). Each must be under --tolerance (exit status 1 otherwise). The variable whose update
differs most is shown too, unchecked: at ResNet-101's depth the update of a single batch-norm offset (a sum
over every pixel, summed in another order) differs by up to a few 1e-3 in float32, the whole update by 2e-4.
"""
import runtime  # first, before TensorFlow: oneDNN kernels on every x86 CPU
import os
import statistics

try:  # before TensorFlow: torch.optim imports torch._dynamo, whose triton (torch's GPU compiler, in the PyPI
    import torch  # wheel) loads its own LLVM; loaded after TensorFlow's, it crashed the process (segfault).
    import torch._dynamo  # noqa: F401  pylint: disable=unused-import
except ImportError:
    torch = None
from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from benchmarks import bench_perf
from benchmarks import timing
import model

FLAGS = flags.FLAGS
MODES = ("encoder+decoder", "decoder")
DTYPES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}  # --dtypes value -> our precision
N_CLASSES = 21
LEARNING_RATE = 1e-3
MISSING = "torch is not installed; this optional case needs `pip install torch`"


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_list("modes", list(MODES), "What the step trains: encoder+decoder and/or decoder.")
    flags.DEFINE_list("dtypes", list(DTYPES), "float32 and/or bfloat16 (ours mixed_bfloat16, torch autocast).")
    flags.DEFINE_integer("pairs", 3, "Timed (ours, torch) step pairs per mode and dtype.", lower_bound=1)
    flags.DEFINE_integer("image_size", 321, "Crop side.", lower_bound=1)
    flags.DEFINE_integer("batch", 4, "Images per step.", lower_bound=1)
    flags.DEFINE_list("units", ["3", "4", "23", "3"], "Units per block (3,4,23,3: ResNet-101; 1,1,1,1: small).")
    flags.DEFINE_float("width", 1.0, "Channel multiplier (1: ResNet-101; 0.125: small).", lower_bound=0.01)
    timing.define_load_flags()
    flags.DEFINE_boolean("check", False, "Compare the two networks' logits and one step's updates instead of "
                         "timing them (float32).")
    flags.DEFINE_float("tolerance", 1e-3, "--check: largest relative difference accepted.")
    flags.register_validator("modes", lambda v: bool(v) and set(v) <= set(MODES),
                             f"--modes: one or more of {', '.join(MODES)}")
    flags.register_validator("dtypes", lambda v: bool(v) and set(v) <= set(DTYPES),
                             f"--dtypes: one or more of {', '.join(DTYPES)}")
    flags.register_validator("units", lambda v: len(v) == 4 and all(u.isdigit() and int(u) > 0 for u in v),
                             "--units: 4 positive integers")


# ----------------------------------------------------------------------------------------------------------
# The PyTorch network
# ----------------------------------------------------------------------------------------------------------

def _same_padding(size, kernel, stride, dilation):
    """TensorFlow's "same" padding of one side of length `size`: (before, after)."""
    extent = dilation * (kernel - 1) + 1
    total = max((-(-size // stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def _legacy_bilinear_matrix(out_size, in_size):
    """[out_size, in_size] float32: resize_bilinear without half-pixel centres (source = target * in / out)."""
    matrix = np.zeros((out_size, in_size), np.float32)
    scale = in_size / out_size
    for i in range(out_size):
        source = i * scale
        low = min(int(np.floor(source)), in_size - 1)
        high = min(low + 1, in_size - 1)
        frac = source - low
        matrix[i, low] += 1 - frac
        matrix[i, high] += frac
    return matrix


def build_torch(units, width, n_classes):
    """The PyTorch DeepLab-V2 ResNet (model.build_encoder / build_decoder, layer for layer), channels-last.

    Returns a torch.nn.Module with `encoder`, `decoder` (forward on NCHW float tensors) and `conv_bns` (Keras
    layer name -> the module holding `conv` and `bn`), `upsample(logits, height, width)` and `kernels()`."""
    nn, F = torch.nn, torch.nn.functional

    class ConvBN(nn.Module):
        """Convolution without bias + eval-mode batch norm (+ ReLU), TensorFlow "same" padding."""

        def __init__(self, c_in, c_out, kernel, stride=1, dilation=1, relu=True):
            super().__init__()
            self.kernel, self.stride, self.dilation, self.relu = kernel, stride, dilation, relu
            # Stride 1 (odd kernels): "same" is symmetric and static. Stride 2: the 7x7 stem only (a 1x1 pads
            # nothing), padded in forward from the input's size, as TensorFlow does.
            padding = dilation * (kernel - 1) // 2 if stride == 1 else 0
            self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, bias=False)
            self.bn = nn.BatchNorm2d(c_out, eps=model.BN_EPSILON)

        def forward(self, x):
            if self.stride > 1 and self.kernel > 1:
                (top, bottom), (left, right) = (_same_padding(s, self.kernel, self.stride, self.dilation)
                                                for s in x.shape[2:])
                if (top, left) != (bottom, right):  # TensorFlow pads the extra row / column after
                    x, top, left = F.pad(x, (left, right, top, bottom)), 0, 0
                x = F.conv2d(x, self.conv.weight, None, self.stride, (top, left), self.dilation)
            else:
                x = self.conv(x)
            x = self.bn(x)
            return F.relu(x) if self.relu else x

    class Bottleneck(nn.Module):
        """Bottleneck v1: 1x1 (the stride) -> 3x3 (dilated) -> 1x1, plus the shortcut (a projection in a
        block's first unit)."""

        def __init__(self, c_in, c_out, stride, dilation, shortcut):
            super().__init__()
            mid = max(1, c_out // 4)
            self.shortcut = ConvBN(c_in, c_out, 1, stride, relu=False) if shortcut else None
            self.conv1 = ConvBN(c_in, mid, 1, stride)
            self.conv2 = ConvBN(mid, mid, 3, dilation=dilation)
            self.conv3 = ConvBN(mid, c_out, 1, relu=False)

        def forward(self, x):
            residual = x if self.shortcut is None else self.shortcut(x)
            return F.relu(residual + self.conv3(self.conv2(self.conv1(x))))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            channels = model._channels(64, width)  # pylint: disable=protected-access
            self.conv1 = ConvBN(3, channels, 7, 2)
            self.units = nn.ModuleDict()
            blocks = model._BLOCKS  # pylint: disable=protected-access
            for b, ((base, stride, dilation), n_units) in enumerate(zip(blocks, units), start=1):
                out = model._channels(base, width)  # pylint: disable=protected-access
                for u in range(1, n_units + 1):
                    self.units[f"block{b}_unit_{u}"] = Bottleneck(channels, out, stride if u == 1 else 1,
                                                                  dilation, shortcut=(u == 1))
                    channels = out
            self.out_channels = channels

        def forward(self, x):
            x = self.conv1(x)
            (top, bottom), (left, right) = (_same_padding(s, 3, 2, 1) for s in x.shape[2:])
            if top == bottom and left == right:
                x = F.max_pool2d(x, 3, 2, padding=(top, left))
            else:
                x = F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), 3, 2)
            for unit in self.units.values():
                x = unit(x)
            return x

    class Decoder(nn.Module):
        def __init__(self, c_in):
            super().__init__()
            self.branches = nn.ModuleList(nn.Conv2d(c_in, n_classes, 3, padding=rate, dilation=rate)
                                          for rate in model.ASPP_RATES)

        def forward(self, x):
            return sum(branch(x) for branch in self.branches)

    class Network(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()
            self.decoder = Decoder(self.encoder.out_channels)
            self._matrices = {}

        def conv_bns(self):
            named = {"conv1": self.encoder.conv1}
            for name, unit in self.encoder.units.items():
                for part in ("shortcut", "conv1", "conv2", "conv3"):
                    if getattr(unit, part) is not None:
                        named[f"{name}_{part}"] = getattr(unit, part)
            return named

        def kernels(self, encoder=True):
            convs = [m.conv for m in self.conv_bns().values()] if encoder else []
            return [c.weight for c in convs] + [b.weight for b in self.decoder.branches]

        def upsample(self, logits, height, width):
            """float32 [B, C, h, w] -> [B, C, height, width], as model.upsample."""
            h, w = logits.shape[2:]
            if (h, w, height, width) not in self._matrices:
                self._matrices[(h, w, height, width)] = (torch.from_numpy(_legacy_bilinear_matrix(height, h)),
                                                         torch.from_numpy(_legacy_bilinear_matrix(width, w)).T)
            rows, cols = self._matrices[(h, w, height, width)]
            return torch.matmul(rows, torch.matmul(logits, cols))

    return Network().to(memory_format=torch.channels_last)


def _pairs(seg, net):
    """[(our variable, the torch parameter or buffer holding the same values)], every variable of both."""
    conv_bns = net.conv_bns()
    pairs = []
    for layer in seg.encoder.layers:
        if isinstance(layer, keras.layers.Conv2D):
            pairs.append((layer.kernel, conv_bns[layer.name].conv.weight))
        elif isinstance(layer, keras.layers.BatchNormalization):
            bn = conv_bns[layer.name[:-len("_bn")]].bn
            pairs += [(layer.gamma, bn.weight), (layer.beta, bn.bias), (layer.moving_mean, bn.running_mean),
                      (layer.moving_variance, bn.running_var)]
    for i, branch in enumerate(net.decoder.branches, start=1):
        layer = seg.decoder.get_layer(f"aspp_conv{i}")
        pairs += [(layer.kernel, branch.weight), (layer.bias, branch.bias)]
    return pairs


def _to_torch_layout(value):
    """A Keras kernel [kh, kw, in, out] as torch's [out, in, kh, kw]; vectors unchanged."""
    return np.transpose(value, (3, 2, 0, 1)) if value.ndim == 4 else value


def _from_torch_layout(tensor):
    """A torch parameter as our variable's array (kernels [kh, kw, in, out])."""
    value = tensor.detach().numpy()
    return np.transpose(value, (2, 3, 1, 0)) if value.ndim == 4 else value


def copy_weights(seg, net):
    """Copies every variable of our Segmenter into the torch network."""
    with torch.no_grad():
        for variable, tensor in _pairs(seg, net):
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(_to_torch_layout(variable.numpy()))))


class TorchTrainer:
    """The torch side of model.Trainer: one SGD-momentum step of the same loss."""

    def __init__(self, net, train_encoder, bfloat16):
        self.net, self.train_encoder, self.bfloat16 = net, train_encoder, bfloat16
        net.eval()  # batch norm in inference mode, as ours
        for p in net.encoder.parameters():
            p.requires_grad_(train_encoder)
        params = list(net.parameters()) if train_encoder else list(net.decoder.parameters())
        self.kernels = net.kernels(encoder=train_encoder)
        self.optimizer = torch.optim.SGD(params, lr=LEARNING_RATE, momentum=0.9)

    def train_step(self, images, labels):
        """images float32 [B, 3, H, W] (channels-last), labels int64 [B, H, W]. Returns the cross-entropy."""
        F = torch.nn.functional
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
            if self.train_encoder:
                features = self.net.encoder(images)
            else:
                with torch.no_grad():
                    features = self.net.encoder(images)
            small = self.net.decoder(features)
        logits = self.net.upsample(small.float(), *images.shape[2:])  # float32, as ours
        ce = F.cross_entropy(logits, labels, ignore_index=model.VOID)
        l2 = 1e-4 * sum(k.pow(2).sum() for k in self.kernels) / 2
        (ce + l2).backward()
        self.optimizer.step()
        return ce.detach()


def _segmenter(precision, units, width):
    with model.precision_policy(precision):  # the encoder's layers in the policy too
        return model.Segmenter(N_CLASSES, encoder=model.build_encoder(units=units, width=width),
                               precision=precision)


def _trainer(seg, mode):
    return model.Trainer(seg, model.make_label_map(range(N_CLASSES)), LEARNING_RATE,
                         train_encoder=(mode == "encoder+decoder"))


def _batch(batch, size, seed=0):
    """The same random batch for both: (our images [B, H, W, 3], labels [B, H, W]; torch's)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 60, (batch, size, size, 3)).astype(np.float32)
    labels = rng.integers(0, N_CLASSES, (batch, size, size)).astype(np.uint8)
    theirs = (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last),
              torch.from_numpy(labels.astype(np.int64)))
    return (tf.constant(images), tf.constant(labels)), theirs


def _relative(ours, theirs):
    """max |ours - theirs| / max |ours|."""
    return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(ours)), 1e-30))


def _norm_relative(ours, theirs):
    """||ours - theirs|| / ||ours|| over lists of arrays (Euclidean norms)."""
    difference = sum(float(np.sum((a - b) ** 2)) for a, b in zip(ours, theirs))
    return (difference / max(sum(float(np.sum(a ** 2)) for a in ours), 1e-30)) ** 0.5


def check(units, width, size, batch, modes, tolerance):
    """--check: returns (lines to print, True when every figure is within `tolerance`)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    seg = _segmenter("float32", units, width)
    for layer in seg.encoder.layers:  # statistics and scales far from identity, so that a mix-up shows
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0, 0.1, n))
            layer.moving_mean.assign(rng.normal(0, 0.1, n))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n))
    initial = [v.numpy() for v in seg.encoder.weights + seg.decoder.weights]
    net = build_torch(units, width, N_CLASSES)
    copy_weights(seg, net)
    (images, labels), (t_images, t_labels) = _batch(batch, size)
    net.eval()
    with torch.no_grad():
        theirs = net.upsample(net.decoder(net.encoder(t_images)).float(), size, size)
    logits = _relative(seg(images).numpy(), theirs.permute(0, 2, 3, 1).numpy())
    lines = [f"check (float32, {size}x{size}, batch {batch}, units {units}, width {width}), tolerance "
             f"{tolerance:g}", "", "| compared | relative difference |", "|---|---|",
             f"| logits ({N_CLASSES} x {size} x {size}): max abs difference / max abs logit | {logits:.2e} |"]
    checked = [logits]
    for mode in modes:
        for variable, value in zip(seg.encoder.weights + seg.decoder.weights, initial):
            variable.assign(value)
        copy_weights(seg, net)
        trainer, t_trainer = _trainer(seg, mode), TorchTrainer(net, mode == "encoder+decoder", False)
        pairs = [(v, t) for v, t in _pairs(seg, net) if any(v is w for w in trainer.variables)]
        before = [(v.numpy(), _from_torch_layout(t).copy()) for v, t in pairs]
        ours_loss = float(trainer.train_step(images, labels)["loss"])
        torch_loss = float(t_trainer.train_step(t_images, t_labels))
        ours = [v.numpy() - b for (v, _), (b, _) in zip(pairs, before)]
        theirs = [_from_torch_layout(t) - b for (_, t), (_, b) in zip(pairs, before)]
        each = [_norm_relative([a], [b]) for a, b in zip(ours, theirs)]
        worst = int(np.argmax(each))
        loss, update = abs(ours_loss - torch_loss) / abs(ours_loss), _norm_relative(ours, theirs)
        lines += [f"| {mode}: cross-entropy of one step ({ours_loss:.5f} ours, {torch_loss:.5f} torch) | "
                  f"{loss:.2e} |",
                  f"| {mode}: that step's update of the {len(pairs)} trained variables, norm of the difference "
                  f"/ norm of ours | {update:.2e} |",
                  f"| {mode}: the same, the variable that differs most ({pairs[worst][0].path}; not checked "
                  f"against the tolerance) | {each[worst]:.2e} |"]
        checked += [loss, update]
    ok = max(checked) <= tolerance
    lines += ["", f"the same network: {'yes' if ok else 'NO'} (largest checked difference {max(checked):.2e})"]
    return lines, ok


def compare(dtype, modes, units, width, size, batch, pairs):
    """Times our step and torch's, alternating. Returns {mode: dict of medians, first steps and losses}."""
    bfloat16 = dtype == "bfloat16"
    seg = _segmenter(DTYPES[dtype], units, width)
    net = build_torch(units, width, N_CLASSES)
    (images, labels), (t_images, t_labels) = _batch(batch, size)
    results = {}
    for mode in modes:
        copy_weights(seg, net)  # the same start for both (ours as the previous mode left it)
        trainer, t_trainer = _trainer(seg, mode), TorchTrainer(net, mode == "encoder+decoder", bfloat16)
        steps = {"ours": lambda: float(trainer.train_step(images, labels)["loss"]),  # float() waits for it
                 "torch": lambda: float(t_trainer.train_step(t_images, t_labels))}
        first, losses, times = {}, {}, {k: [] for k in steps}
        for kind, step in steps.items():  # tracing and warm-up
            with timing.Stopwatch() as watch:
                losses[kind] = step()
            first[kind] = watch.seconds
            logging.info("%s %s, %s: warm-up step %.2f s", dtype, mode, kind, watch.seconds)
        for pair in range(pairs):
            for kind, step in steps.items():
                with timing.Stopwatch() as watch:
                    step()
                times[kind].append(watch.seconds)
                logging.info("%s %s, %s: step %d %.2f s", dtype, mode, kind, pair + 1, watch.seconds)
        results[mode] = {"median": {k: statistics.median(v) for k, v in times.items()}, "first": first,
                         "loss": losses}
    return results, bench_perf.conv_flops(seg, size)


def _machine():
    name, cpu_flags = runtime.cpu_flags()
    features = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in cpu_flags]
    return f"{name}, {os.cpu_count()} CPUs ({', '.join(features) or 'no AVX2'})"


def _bfloat16_note():
    if {"avx512_bf16", "amx_bf16"} & runtime.cpu_flags()[1]:
        note = "this CPU has bfloat16 instructions (AVX512-BF16 / AMX)"
    else:
        note = ("this CPU has no bfloat16 instructions (no AVX512-BF16 / AMX): both frameworks emulate bfloat16 "
                "arithmetic with float32 units")
    native = model.native_dilated_gradients("bfloat16")
    return (f"bfloat16: {note}; ours has {'a' if native else 'no'} native dilated bfloat16 gradient here"
            f"{'' if native else ' (dilated convolutions run as space_to_batch)'}")


def main(argv):
    del argv
    if torch is None:
        print(MISSING)
        return 0
    units, width = [int(u) for u in FLAGS.units], FLAGS.width
    tf_threads = tf.config.threading.get_intra_op_parallelism_threads()
    threads = tf_threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    versions = (f"TensorFlow {tf.__version__}, torch {torch.__version__} (CPU capability "
                f"{torch.backends.cpu.get_cpu_capability()}, oneDNN {torch.backends.mkldnn.is_available()}); "
                f"torch.set_num_threads({threads}) = TensorFlow's intra-op threads "
                f"({tf_threads}{': its default, the schedulable CPUs' if not tf_threads else ''})")
    if FLAGS.check:
        lines, ok = check(units, width, FLAGS.image_size, FLAGS.batch, FLAGS.modes, FLAGS.tolerance)
        print("\n".join([_machine(), versions, ""] + lines))
        return 0 if ok else 1

    load = timing.check_load(FLAGS.max_load, FLAGS.force)
    whole = timing.Stopwatch().start()
    results = {dtype: compare(dtype, FLAGS.modes, units, width, FLAGS.image_size, FLAGS.batch, FLAGS.pairs)
               for dtype in FLAGS.dtypes}
    size, batch = FLAGS.image_size, FLAGS.batch
    network = "ResNet-101" if units == [3, 4, 23, 3] and width == 1.0 else f"ResNet units {units} width {width}"
    out = [_machine(), versions,
           f"DeepLab-V2 {network}, {size}x{size}, batch {batch}, {FLAGS.pairs} pair(s) after one warm-up step "
           f"each; {load.report()}; whole run {whole.seconds:.0f} s"]
    if "bfloat16" in FLAGS.dtypes:
        out.append(_bfloat16_note())
    out += ["", "| dtype | trains | ours s/step | torch s/step | ours / torch | ours images/s | torch images/s | "
                "GFLOP/step | ours GFLOP/s | torch GFLOP/s | first step s (ours, torch) | loss of the first step "
                "(ours, torch) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for dtype, (rows, flops) in results.items():
        for mode, r in rows.items():
            ours, theirs = r["median"]["ours"], r["median"]["torch"]
            flop = bench_perf.step_flops(flops, mode, batch)
            out.append(f"| {dtype} | {mode} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f} | {batch / ours:.3f} | "
                       f"{batch / theirs:.3f} | {flop / 1e9:.1f} | {flop / ours / 1e9:.1f} | "
                       f"{flop / theirs / 1e9:.1f} | {r['first']['ours']:.2f}, {r['first']['torch']:.2f} | "
                       f"{r['loss']['ours']:.4f}, {r['loss']['torch']:.4f} |")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)  # exits with main's return value
