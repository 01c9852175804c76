"""model.BatchNormalization (one multiply-add in the compute dtype) against Keras' BatchNormalization (the
feature map cast to float32 and back), in the full training step, paired in one run.

    python -m benchmarks.bench_batch_norm [--precision mixed_bfloat16] [--modes decoder,encoder+decoder]
                                          [--pairs 3] [--image_size 321] [--batch 4]

For each mode, one network of each kind (the same weights) is traced, then their steps alternate (keras, ours,
keras, ours, ...) so that both see the same load; reports the median step of each, their ratio, and the Cast
ops on feature maps (rank 4) in each step's graph. The load average is printed before and after.
"""
import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)
import statistics

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from benchmarks import timing
import model


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_enum("precision", "mixed_bfloat16", ["float32", "mixed_bfloat16"], "Keras dtype policy")
    flags.DEFINE_list("modes", ["decoder", "encoder+decoder"], "what the step trains")
    flags.DEFINE_integer("pairs", 3, "timed (keras, ours) step pairs per mode", lower_bound=1)
    flags.DEFINE_integer("image_size", 321, "crop side")
    flags.DEFINE_integer("batch", 4, "batch size")
    timing.define_load_flags()


def _trainer(batch_norm, precision, train_encoder, weights):
    """A ResNet-101 Segmenter built with `batch_norm` as its batch-norm layer, and its Trainer."""
    real = model.BatchNormalization
    model.BatchNormalization = batch_norm
    try:
        with model.precision_policy(precision):  # the encoder's layers in the policy too
            seg = model.Segmenter(21, encoder=model.build_encoder(units=(3, 4, 23, 3), width=1.0),
                                  precision=precision)
    finally:
        model.BatchNormalization = real
    if weights is not None:
        seg.encoder.set_weights(weights[0])
        seg.decoder.set_weights(weights[1])
    return model.Trainer(seg, model.make_label_map(list(range(21))), 1e-3, train_encoder=train_encoder)


def map_casts(trainer, images, labels):
    """Cast ops whose output is rank 4 (feature maps, and the float32 -> compute dtype casts of the kernels) in
    the traced training step."""
    graph = trainer._step.get_concrete_function(images, labels).graph  # pylint: disable=protected-access
    return sum(1 for op in graph.get_operations() if op.type == "Cast" and op.outputs[0].shape.rank == 4)


def compare(precision, mode, pairs, size, batch):
    """Returns dict: median s/step of each kind, their ratio (ours / keras) and the rank-4 Casts of each."""
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(0, 50, (batch, size, size, 3)).astype(np.float32))
    labels = tf.constant(rng.integers(0, 21, (batch, size, size)).astype(np.uint8))
    train_encoder = mode == "encoder+decoder"
    keras_trainer = _trainer(keras.layers.BatchNormalization, precision, train_encoder, None)
    weights = (keras_trainer.seg.encoder.get_weights(), keras_trainer.seg.decoder.get_weights())
    ours_trainer = _trainer(model.BatchNormalization, precision, train_encoder, weights)
    trainers = {"keras": keras_trainer, "ours": ours_trainer}
    casts = {k: map_casts(t, images, labels) for k, t in trainers.items()}
    for t in trainers.values():  # trace and warm up
        float(t.train_step(images, labels)["loss"])
    times = {k: [] for k in trainers}
    for _ in range(pairs):
        for kind, t in trainers.items():
            with timing.Stopwatch() as watch:
                float(t.train_step(images, labels)["loss"])
            times[kind].append(watch.seconds)
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {"keras s": medians["keras"], "ours s": medians["ours"], "ratio": medians["ours"] / medians["keras"],
            "keras casts": casts["keras"], "ours casts": casts["ours"]}


def main(argv):
    del argv
    f = flags.FLAGS
    load = timing.check_load(f.max_load, f.force)
    rows = [(mode, compare(f.precision, mode, f.pairs, f.image_size, f.batch)) for mode in f.modes]
    print(f"{f.precision}, ResNet-101 {f.image_size}x{f.image_size}, batch {f.batch}, {f.pairs} pairs; "
          f"{load.report()}")
    print("| trains | Keras BN s/step | ours s/step | ours / Keras | rank-4 Casts Keras | ours |")
    print("|---|---|---|---|---|---|")
    for mode, r in rows:
        print(f"| {mode} | {r['keras s']:.2f} | {r['ours s']:.2f} | {r['ratio']:.3f} | {r['keras casts']} | "
              f"{r['ours casts']} |")


if __name__ == "__main__":
    define_flags()
    app.run(main)
