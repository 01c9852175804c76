"""RECALL's loss (the original's), as a method: softmax cross-entropy over the pixels whose target is one of the
stage's classes, divided by their number in the global batch. It is the loss of every stage of every config
(step 0, helpers) and of RECALL's and fine-tuning's incremental steps; it reads no previous network."""
import tensorflow as tf

import losses
import methods


@methods.register
class RECALL(methods.Method):
    """RECALL (Maracani et al., ICCV 2021): the original's masked cross-entropy (losses.masked_cross_entropy)."""
    name = "recall"
    title = "RECALL"
    needs_previous = False

    def before_step(self, step):
        return LOSS

    def loss(self, current, previous, targets, count, num_replicas, step):
        """The cross-entropy summed over this replica's valid pixels, divided by the valid pixels of all replicas
        (count): the replicas' shares sum to the mean over the global batch."""
        ce_sum, _ = losses.masked_cross_entropy(current["logits"], targets)
        return {"loss": tf.math.divide_no_nan(ce_sum, count)}


# The loss of every stage that trains with the original's loss; one object, so a Trainer traced with it serves the
# next stage too (training.Training keeps its decoder trainer from step to step).
LOSS = methods.StepLoss(RECALL())
