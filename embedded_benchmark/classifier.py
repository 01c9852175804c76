"""The classifier over the generator's classes that finds the GAN replay's class mapping.

A small CNN (a TF2 SavedModel, signature "serving_default": images float [N, C, C, 3] in [0, 1] -> "logits"
[N, K]) trained on its own renders of the K generator classes, as EfficientNet on ImageNet: it never sees
the generator's samples. gan/generate_gan.py maps every world class to the generator class it scores the
world's training images as.
"""

import numpy as np
from tqdm import tqdm

from embedded_benchmark import generator


def _features(images):
    """Colour-blind input of the classifier: grey level, chroma and distance from mid-grey, standardised.

    Objects and backgrounds differ in chroma and extremeness rather than hue (every class comes in every
    colour), so these three channels make shapes easy to see.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    grey = tf.image.rgb_to_grayscale(images)
    chroma = tf.reduce_max(images, -1, keepdims=True) - tf.reduce_min(images, -1, keepdims=True)
    extreme = tf.reduce_mean(tf.abs(images - 0.5), -1, keepdims=True)
    x = tf.concat([grey, chroma, extreme], -1)
    mean, var = tf.nn.moments(x, [1, 2], keepdims=True)
    return (x - mean) / tf.sqrt(var + 1e-4)


def _classifier_network(size, n_classes, seed):
    import keras  # pylint: disable=g-import-not-at-top
    layers = keras.layers
    inputs = keras.Input((size, size, 3))
    x = inputs
    # A strided 5x5 stem sees the fine textures at full resolution; three pooled stages see the shapes.
    for i, width in enumerate((32, 64, 128, 128)):
        if i:
            x = layers.MaxPool2D()(x)
        x = layers.Conv2D(width, 3 if i else 5, strides=1 if i else 2, padding="same", use_bias=False,
                          kernel_initializer=keras.initializers.HeNormal(seed=seed * 100 + i))(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(n_classes,
                           kernel_initializer=keras.initializers.GlorotUniform(seed=seed * 100 + 99))(x)
    return keras.Model(inputs, outputs, name="embedded_classifier")


def train_classifier(cfg, images, labels):
    """Trains the CNN on images (uint8 [N, S, S, 3]) with generator-class labels (int [N]).

    Returns:
      (keras model on _features of [B, C, C, 3] images, final mean loss).
    """
    import keras  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    size = cfg.classifier_size
    x = tf.image.resize(images.astype(np.float32) / 255.0, [size, size], antialias=True).numpy()
    model = _classifier_network(size, cfg.generator_classes, cfg.seed)
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(cfg.classifier_lr,
                                                                             cfg.classifier_steps))

    @tf.function
    def step(batch, target):
        with tf.GradientTape() as tape:
            logits = model(_features(batch), training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(target, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    rng = np.random.default_rng([cfg.seed, 5, 0])
    n, losses = cfg.classifier_batch, []
    for _ in tqdm(range(cfg.classifier_steps), desc="classifier", leave=False):
        pick = rng.integers(0, len(x), n)
        batch = x[pick]
        batch = np.where((rng.random(n) < 0.5)[:, None, None, None], batch[:, :, ::-1], batch)
        batch = np.where((rng.random(n) < 0.5)[:, None, None, None], batch.transpose(0, 2, 1, 3), batch)
        batch = batch * rng.uniform(0.8, 1.2, (n, 1, 1, 1)) + rng.uniform(-0.08, 0.08, (n, 1, 1, 3))
        losses.append(float(step(np.clip(batch, 0, 1).astype(np.float32), labels[pick].astype(np.int32))))
    return model, float(np.mean(losses[-50:]))


def build_classifier(cfg, path):
    """Trains the classifier over the generator classes and saves it at `path` (signature with `images`)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    bank = generator.render_bank(cfg, 4, cfg.classifier_images_per_class, "classifier images")
    labels = np.repeat(np.arange(cfg.generator_classes), cfg.classifier_images_per_class)
    model, loss = train_classifier(cfg, bank.reshape((-1,) + bank.shape[2:]), labels)
    size = cfg.classifier_size

    class Classifier(tf.Module):

        def __init__(self):
            super().__init__(name="embedded_classifier")
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
        def classify(self, images):
            return {"logits": self.model(_features(images), training=False)}

    module = Classifier()
    generator.save_model(module, path, {"serving_default": module.classify})
    return {"input_size": size, "train_images": int(len(labels)), "steps": cfg.classifier_steps,
            "final_loss": round(loss, 4)}
