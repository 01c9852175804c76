"""The training step: one compiled SGD-momentum update of a method's loss for a model.Segmenter (Trainer; RECALL's
loss by default), its learning rate (the original's polynomial decay, poly_schedule, held in variables so that the
compiled step follows each stage's schedule without being traced again) and its optimizer (TF1's momentum rule by
default, TF1Momentum). The label map it takes is model.make_label_map's. model re-exports these names
(model.Trainer, model.poly_schedule, ...).
"""
import keras
import numpy as np
import tensorflow as tf

from data_loader import VOID
from methods import recall


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
