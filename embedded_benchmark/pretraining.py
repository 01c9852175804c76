"""The embedded stand-in for ImageNet pretraining: the encoder that step 0 of every run starts from.

The paper starts step 0 from an ImageNet ResNet-101; the embedded benchmark pretrains its own (smaller,
gin-configured) encoder to name renders of every shape/texture kind, and saves it where TrainManager looks
for a pretrained encoder (pretrained_encoder_path).
"""

import numpy as np
from tqdm import tqdm

import paths
from embedded_benchmark import world


def pretrained_encoder_path(base):
    """Where TrainManager looks for the encoder that step 0 starts from (extension-less)."""
    return paths.checkpoint(base, "encoders", "pretrained")


def backbone_size():
    """The gin-configured backbone size (model.backbone_size), as recorded."""
    import model  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
    return model.backbone_size()


def pretrain_encoder(cfg, path, progress_bars=True):
    """The embedded stand-in for ImageNet pretraining (the paper starts step 0 from an ImageNet ResNet-101).

    The segmentation encoder (model.build_encoder, size from gin) with a pooled linear head learns to name
    single-object renders of all 30 shape/texture kinds (the 20 world classes and the 10 kinds the world never
    shows, as ImageNet holds far more than VOC's classes), with batch norm in training mode (batch statistics,
    moving statistics updated); then it is saved where step 0 looks for a pretrained encoder.

    Args:
      cfg: a resolved build.EmbeddedConfig (seed, image_size, pretrain_steps, pretrain_per_kind).
      path: the encoder's path (pretrained_encoder_path), extension-less.
      progress_bars: show tqdm progress bars (False in the second process of a parallel build, whose bars
        would overwrite the caller's).
    Returns:
      dict report: backbone, final accuracy on the last batches, steps.
    """
    import keras  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import model  # pylint: disable=g-import-not-at-top
    import data_loader  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng([cfg.seed, 7])
    kinds = np.repeat(np.arange(world.N_KINDS), cfg.pretrain_per_kind)
    images = np.stack([world.render_kind(int(k), cfg.image_size, rng)[0]
                       for k in tqdm(kinds, desc="pretraining images", leave=False, disable=not progress_bars)])
    x = images.astype(np.float32) - np.asarray(data_loader.DEFAULT_MEAN, np.float32)
    keras.utils.set_random_seed(cfg.seed)
    encoder = model.build_encoder()
    head = keras.layers.Dense(world.N_KINDS)
    optimizer = keras.optimizers.Adam(2e-3)

    @tf.function
    def step(batch, target):
        with tf.GradientTape() as tape:
            logits = head(tf.reduce_mean(encoder(batch, training=True), axis=[1, 2]))
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(target, logits))
        variables = encoder.trainable_variables + head.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return tf.reduce_mean(tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == target, tf.float32))

    accuracy = []
    for _ in tqdm(range(cfg.pretrain_steps), desc="pretraining the encoder", leave=False,
                  disable=not progress_bars):
        pick = rng.integers(0, len(x), 32)
        batch = np.where((rng.random(32) < 0.5)[:, None, None, None], x[pick][:, :, ::-1], x[pick])
        accuracy.append(float(step(batch, kinds[pick].astype(np.int32))))
    model.save_encoder(model.Segmenter(21, encoder=encoder), path)
    return {"backbone": backbone_size(), "accuracy_last_50_steps": float(np.mean(accuracy[-50:])),
            "steps": cfg.pretrain_steps}
