"""Performance of every stage in one run, as ratios against what this machine can do (benchmarks/BENCHMARKS.md,
"Performance").

  python -m benchmarks.bench_perf --profile --folder=/tmp/bench_trace  # batch 4, 3 timed steps, 6 full-size images
  python -m benchmarks.bench_perf --steps=10 --eval_images=50 --input_steps=200  # a GPU
  python -m benchmarks.bench_perf --precision=mixed_bfloat16 --jit_compile        # GPU options

Measures, on random weights and synthetic VOC-sized data (500x375 JPEG records, written first, not timed):
  1. peak FLOP/s of this device in the network's compute dtype (--precision): a large matrix product and
     ResNet-101 block-3 convolutions (3x3 plain and dilated, 1x1), best of 5 calls each;
  2. the DeepLab-V2 ResNet-101 training step at --image_size (encoder+decoder, and decoder only): s/step,
     images/s, convolution FLOPs per step (counted from the layer shapes) and achieved FLOP/s / peak, from the
     median step and from the best step (the best is the fair match of the best-of-5 peak on a shared machine);
  3. the input pipeline alone (bench_input: decode, augment, blend 4:4, batch) in samples/s and its headroom
     over what the fastest training step consumes; then real training (the pipeline feeding the step, as
     Training._fit) and the fraction of the loop's time spent waiting for the next batch;
  4. validation (training.evaluate) and pseudo-labelling (Segmenter.predict_ids per image, as
     Training._label_replay) on full-size images, in images/s after the first (tracing) image.

FLOPs: a convolution's forward pass is 2 * k_h * k_w * C_in * C_out * H_out * W_out (multiply + add, padding
taps included). A training step does the forward pass of every convolution, the gradient with respect to the
weights of the trained ones, and with respect to the input of every trained one but the first (the images
need no gradient): about 3x forward for encoder+decoder; encoder forward + 2x decoder forward for the decoder
alone. Batch norm, ReLU, additions, upsampling and the loss are left out (well under 1% of the FLOPs).
"""

import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)
import collections
import glob
import os
import statistics
import tempfile

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from benchmarks import bench_input
from benchmarks import timing
import data_loader
import model
import training

FLAGS = flags.FLAGS
MODES = ("encoder+decoder", "decoder")
N_CLASSES = 21
MEAN = data_loader.DEFAULT_MEAN


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_integer("batch_size", 4, "Images per training step (4: the paper's batch).", lower_bound=1)
    flags.DEFINE_integer("image_size", 321, "Training crop side.", lower_bound=1)
    flags.DEFINE_integer("steps", 3, "Timed training steps per mode, after one tracing step.", lower_bound=1)
    flags.DEFINE_list("modes", list(MODES), "Training modes to time: encoder+decoder and/or decoder.")
    flags.DEFINE_integer("matmul_size", 4096, "Side of the square float32 matrices of the peak measurement.",
                         lower_bound=1)
    flags.DEFINE_integer("input_steps", 40, "Timed batches of the input pipeline alone.", lower_bound=1)
    flags.DEFINE_integer("wait_steps", 3, "Timed steps of real training (pipeline feeding the step).",
                         lower_bound=1)
    flags.DEFINE_integer("eval_images", 6, "Full-size images for validation and for pseudo-labelling.",
                         lower_bound=2)
    flags.DEFINE_enum("precision", "float32", model.PRECISIONS, "Dtype policy of the network.")
    flags.DEFINE_boolean("jit_compile", False, "Compile the training step's forward and backward with XLA.")
    flags.DEFINE_boolean("profile", False, "Write a tf.profiler trace of one encoder+decoder step to --folder "
                         "and print where its time goes, by op type.")
    flags.DEFINE_string("folder", "/tmp/bench_perf", "output folder (the --profile trace)")
    timing.define_load_flags()
    flags.register_validator("modes", lambda v: bool(v) and set(v) <= set(MODES),
                             f"--modes: one or more of {', '.join(MODES)}")
    flags.register_multi_flags_validator(["profile", "folder"], lambda f: not f["profile"] or bool(f["folder"]),
                                         "--profile needs --folder")


def peak_flops(n, dtype=tf.float32, repeats=5):
    """Peak FLOP/s measured on this device in `dtype` (the network's compute dtype): the best of `repeats`
    calls of each kernel (on a shared machine the best call is the one least disturbed).

    Returns {name: (FLOP per call, best s, FLOP/s)}."""
    rng = np.random.default_rng(0)

    def const(shape):
        return tf.constant(rng.standard_normal(shape, np.float32), dtype)

    a, b = const((n, n)), const((n, n))
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))  # the sum: a scalar to fetch
    # Convolutions of ResNet-101's block 3 (1/8 of a 321 image), batch 8: its 3x3 256 -> 256 (plain and with
    # the block's dilation 2) and its 1x1 1024 -> 256.
    x, w = const((8, 41, 41, 256)), const((3, 3, 256, 256))
    x1, w1 = const((8, 41, 41, 1024)), const((1, 1, 1024, 256))
    pixels = 8 * 41 * 41
    results = {}
    for name, fn, flop in [
            (f"matmul {n}x{n}x{n}", matmul, 2 * n ** 3),
            ("conv 3x3 256->256, 8x41x41", tf.function(lambda: tf.reduce_sum(
                tf.nn.conv2d(x, w, 1, "SAME"))), 2 * 9 * 256 * 256 * pixels),
            ("conv 3x3 256->256, 8x41x41, dilation 2", tf.function(lambda: tf.reduce_sum(
                tf.nn.conv2d(x, w, 1, "SAME", dilations=2))), 2 * 9 * 256 * 256 * pixels),
            ("conv 1x1 1024->256, 8x41x41", tf.function(lambda: tf.reduce_sum(
                tf.nn.conv2d(x1, w1, 1, "SAME"))), 2 * 1024 * 256 * pixels)]:
        best = timing.repeat(lambda f=fn: f().numpy(), repeats).best
        results[name] = (flop, best, flop / best)
    return results


def conv_flops(seg, image_size):
    """Forward FLOPs per image of every convolution at `image_size` (a side, or (height, width)). Returns dict:
    encoder, decoder, first (conv1)."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    def count(net, input_shape):
        convs = [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
        probe = keras.Model(net.inputs, [layer.output for layer in convs])
        shapes = probe.compute_output_shape(input_shape)
        flops = {}
        for layer, shape in zip(convs, shapes):
            kh, kw, c_in, c_out = layer.kernel.shape
            flops[layer.name] = 2 * kh * kw * c_in * c_out * shape[1] * shape[2]
        return flops

    encoder = count(seg.encoder, (1, height, width, 3))
    decoder = count(seg.decoder, seg.encoder.compute_output_shape((1, height, width, 3)))
    return {"encoder": sum(encoder.values()), "decoder": sum(decoder.values()), "first": encoder["conv1"]}


def profiler_flops(seg, image_size):
    """Cross-check: FLOPs of the forward graph of one image by TensorFlow's profiler (every op it knows)."""
    graph = tf.function(seg.__call__).get_concrete_function(
        tf.TensorSpec([1, image_size, image_size, 3], tf.float32)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops


def step_flops(flops, mode, batch):
    """Convolution FLOPs of one training step (see the module docstring)."""
    enc, dec, first = flops["encoder"], flops["decoder"], flops["first"]
    per_image = 3 * (enc + dec) - first if mode == "encoder+decoder" else enc + 2 * dec
    return per_image * batch


def _random_batch(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    images = tf.constant(rng.normal(0, 60, (batch, size, size, 3)).astype(np.float32))
    labels = tf.constant(rng.integers(0, N_CLASSES, (batch, size, size)).astype(np.uint8))
    return images, labels


def _trainer(seg, mode, jit_compile):
    return model.Trainer(seg, model.make_label_map(range(N_CLASSES)), model.poly_schedule(5e-4, 5e-6, 1000),
                         train_encoder=(mode == "encoder+decoder"), jit_compile=jit_compile)


def time_training(seg, modes, batch, size, steps, jit_compile=False, profile_dir=None):
    """Returns {mode: timing.Timings} of Trainer.train_step on a fixed random batch (one tracing step, then
    `steps` timed steps)."""
    images, labels = _random_batch(batch, size)
    results = {}
    for mode in modes:
        trainer = _trainer(seg, mode, jit_compile)
        step = lambda t=trainer: t.train_step(images, labels)["loss"].numpy()  # .numpy() waits for the step
        results[mode] = timing.repeat(step, steps)
        if profile_dir and mode == "encoder+decoder":
            tf.profiler.experimental.start(profile_dir)
            step()
            tf.profiler.experimental.stop()
    return results


def op_time_by_type(profile_dir, top=8):
    """Sums the durations of the TensorFlow ops in a tf.profiler trace by op type.

    Returns [(op type, seconds)] of the `top` types, longest first (ops that ran at the same time on the
    executor's threads add up, so the sum can exceed the step's time).
    """
    path = max(glob.glob(os.path.join(profile_dir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
    with open(path, "rb") as f:
        space = xplane_pb2.XSpace.FromString(f.read())
    seconds = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the threads that run ops
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name:  # "scope/op_name:OpType"; others are executor frames
                    seconds[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12
    return seconds.most_common(top)


def input_wait(seg, mode, paths_new, paths_old, batch, size, steps, jit_compile=False):
    """Real training: the input pipeline feeds the step, as in Training._fit.

    Returns (seconds waiting for the next batch, seconds in total) over `steps` steps after one warm-up step.
    """
    trainer = _trainer(seg, mode, jit_compile)
    dataset = data_loader.training_dataset(paths_new, paths_old, 4, 4, batch, size, MEAN, seed=0)
    batches = iter(dataset)
    trainer.train_step(*next(batches))["loss"].numpy()  # tracing, and the pipeline's start
    waiting = timing.Stopwatch()
    with timing.Stopwatch() as total:
        for _ in range(steps):
            with waiting:
                images, labels = next(batches)
            trainer.train_step(images, labels)["loss"].numpy()
    return waiting.seconds, total.seconds


def validation_throughput(seg, path, n):
    """training.evaluate on the first 1 and on all n images of `path`. Returns (first-call s, s per image)."""
    one, everything = os.path.join(os.path.dirname(path), "one.tfrecord"), path
    data_loader.write_tfrecord(one, [r.numpy() for r in tf.data.TFRecordDataset(path).take(1)])
    classes = list(range(N_CLASSES))
    watch = timing.Stopwatch()
    for p in (one, everything):
        with watch:
            training.evaluate(seg, [p], classes, N_CLASSES, MEAN)
    first, whole = watch.laps
    return first, (whole - first) / (n - 1)  # each call traces once: the difference is n-1 images


def labelling_throughput(seg, path):
    """Segmenter.predict_ids image by image, as Training._label_replay. Returns (first s, s per image after)."""
    samples = list(data_loader.load_tfrecord([path], "images", dataset_mean=MEAN))
    watch = timing.Stopwatch()
    for sample in samples:
        with watch:
            seg.predict_ids(sample["input"][None])[0].numpy()
    return watch.laps[0], statistics.mean(watch.laps[1:])


def main(argv):
    del argv
    gpus = tf.config.list_logical_devices("GPU")
    size, batch = FLAGS.image_size, FLAGS.batch_size
    profile_dir = FLAGS.folder if FLAGS.profile else None
    load = timing.check_load(FLAGS.max_load, FLAGS.force)
    out = [f"device: {gpus[0].name if gpus else 'CPU'}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}, "
           f"precision {FLAGS.precision}, "
           f"jit_compile={FLAGS.jit_compile}, image {size}x{size}, batch {batch}"]
    whole = timing.Stopwatch().start()

    logging.info("peak FLOP/s")
    compute_dtype = {"float32": tf.float32, "mixed_float16": tf.float16, "mixed_bfloat16": tf.bfloat16}
    peaks = peak_flops(FLAGS.matmul_size, compute_dtype[FLAGS.precision])
    peak = max(flops_per_s for _, _, flops_per_s in peaks.values())
    out += ["", f"| peak measurement ({compute_dtype[FLAGS.precision].name}, best of 5) | GFLOP per call | s | "
                f"GFLOP/s |", "|---|---|---|---|"]
    out += [f"| {name} | {flop / 1e9:.1f} | {s:.3f} | {rate / 1e9:.1f} |" for name, (flop, s, rate) in peaks.items()]

    logging.info("training step")
    seg = model.Segmenter(N_CLASSES, precision=FLAGS.precision)
    flops = conv_flops(seg, size)
    steps = time_training(seg, FLAGS.modes, batch, size, FLAGS.steps, FLAGS.jit_compile, profile_dir)
    out += ["", f"forward GFLOP per image: convolutions of the encoder {flops['encoder'] / 1e9:.2f} and of the "
                f"decoder {flops['decoder'] / 1e9:.2f}; every op of the forward graph by tf.profiler "
                f"{profiler_flops(seg, size) / 1e9:.2f}",
            "", f"| training step | first s | s/step (median of {FLAGS.steps}) | images/s | best s | "
                f"GFLOP/step | GFLOP/s (median) | of peak (median) | GFLOP/s (best) | of peak (best) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, t in steps.items():
        first, median, best = t.first, t.median, t.best
        flop = step_flops(flops, mode, batch)
        out.append(f"| {mode} | {first:.2f} | {median:.3f} | {batch / median:.3f} | {best:.3f} | {flop / 1e9:.1f} | "
                   f"{flop / median / 1e9:.1f} | {flop / median / peak:.2f} | {flop / best / 1e9:.1f} | "
                   f"{flop / best / peak:.2f} |")
    if profile_dir and "encoder+decoder" in steps:
        out += ["", "| op type (one encoder+decoder step, tf.profiler) | s |", "|---|---|"]
        out += [f"| {op} | {sec:.3f} |" for op, sec in op_time_by_type(profile_dir)]
    fastest = min(steps, key=lambda m: steps[m].best)
    consumed = batch / steps[fastest].best  # the best step: the most the step can consume

    with tempfile.TemporaryDirectory() as tmp:
        logging.info("synthetic records")
        new = bench_input.make_synthetic_tfrecord(os.path.join(tmp, "new.tfrecord"), 64, seed=0)
        old = bench_input.make_synthetic_tfrecord(os.path.join(tmp, "old.tfrecord"), 64, seed=1)
        val = bench_input.make_synthetic_tfrecord(os.path.join(tmp, "val", "val.tfrecord"), FLAGS.eval_images,
                                                  seed=2)
        logging.info("input pipeline")
        pipeline = bench_input.bench_input([new], [old], 4, 4, max(batch, 1), size, FLAGS.input_steps,
                                           warmup=5, seed=0)
        logging.info("real training")
        waiting, total = input_wait(seg, fastest, [new], [old], batch, size, FLAGS.wait_steps, FLAGS.jit_compile)
        logging.info("validation and labelling")
        val_first, val_per_image = validation_throughput(seg, val, FLAGS.eval_images)
        label_first, label_per_image = labelling_throughput(seg, val)
    out += ["", "| input | figure |", "|---|---|",
            f"| pipeline alone (blend 4:4, batch {batch}) | {pipeline['samples_per_s']:.1f} samples/s |",
            f"| consumed by the {fastest} step | {consumed:.2f} images/s |",
            f"| headroom (pipeline / consumption) | {pipeline['samples_per_s'] / consumed:.1f}x |",
            f"| waiting for input in real training ({fastest}, {FLAGS.wait_steps} steps) | "
            f"{100 * waiting / total:.2f}% of {total:.1f} s |",
            "", "| full-size 500x375 images | first call s | s/image after | images/s |", "|---|---|---|---|",
            f"| validation (training.evaluate) | {val_first:.2f} | {val_per_image:.3f} | {1 / val_per_image:.2f} |",
            f"| pseudo-labelling (Segmenter.predict_ids) | {label_first:.2f} | {label_per_image:.3f} | "
            f"{1 / label_per_image:.2f} |",
            "", f"{load.report()}; whole run {whole.seconds:.0f} s"]
    print("\n".join(out))


if __name__ == "__main__":
    define_flags()
    app.run(main)
