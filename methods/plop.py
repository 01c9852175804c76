"""PLOP (Douillard et al., CVPR 2021): cross-entropy on entropy-thresholded pseudo-labels of the previous network
weighted by the adaptive factor, + Local POD over the encoder stages' outputs and the logits before upsampling
(losses.plop_loss). Every step starts as the reference's `Trainer.before`: one pass of the previous network over
the step's training data for the per-class entropy thresholds (losses.entropy_histogram, entropy_thresholds),
then MiB's initialisation."""
import gin
import numpy as np
from absl import logging

import losses
import methods


@methods.register
@gin.configurable("plop")
class PLOP(methods.Method):
    """Args (the reference's PLOP preset): features_factor (pod_factor 0.01), logits_factor (pod_options' "after"
      factor 0.0005), pod_logits (True: the small logits are distilled too), scales (spp_scales (1, 2, 4)),
      schedule (not no_pod_schedule: True), adaptive_factor (classif_adaptive_factor True),
      adaptive_min_factor (0.0), base_threshold (--threshold 0.001), n_bins (100), median ("reference": the
      reference's loop, slip included; "histogram": the histogram median; see losses.entropy_thresholds),
      initialize (init_balanced True).
    """
    name = "plop"
    title = "PLOP"
    trains_encoder = True
    needs_maps = True

    def __init__(self, features_factor=0.01, logits_factor=0.0005, pod_logits=True, scales=(1, 2, 4),
                 schedule=True, adaptive_factor=True, adaptive_min_factor=0.0, base_threshold=0.001, n_bins=100,
                 median="reference", initialize=True):
        if median not in losses.MEDIANS:
            raise ValueError(f"plop.median: {median!r} is not one of {losses.MEDIANS}")
        self.features_factor, self.logits_factor = float(features_factor), float(logits_factor)
        self.pod_logits, self.scales, self.schedule = bool(pod_logits), tuple(int(s) for s in scales), bool(schedule)
        self.adaptive_factor, self.adaptive_min_factor = bool(adaptive_factor), float(adaptive_min_factor)
        self.base_threshold, self.n_bins, self.median = float(base_threshold), int(n_bins), median
        self.initialize = bool(initialize)

    def thresholds(self, batches, n_old, n_new):
        """Per-class entropy thresholds [n_old] from `batches`, an iterable of (previous model's logits
        [B, H, W, n_old], targets [B, H, W]) over the step's training data (Trainer.find_median)."""
        histogram = np.zeros((n_old, self.n_bins), np.int64)
        for old_logits, targets in batches:
            histogram += losses.entropy_histogram(old_logits, targets, n_old + n_new, self.n_bins).numpy()
        return losses.entropy_thresholds(histogram, self.base_threshold, self.median)

    def before_step(self, step):
        thresholds = self.thresholds(step.previous_logits(), step.n_old, step.n_new)
        logging.info("step %d: %s entropy thresholds of classes 0..%d: %s", step.index, self.name, step.n_old - 1,
                     np.round(thresholds, 5).tolist())
        if self.initialize:
            losses.mib_initialize_decoder(step.network.decoder, step.n_old, step.n_new)
        return methods.StepLoss(self, step.n_old, step.n_new, thresholds)

    def losses(self, current, previous, targets, step):
        if step.thresholds is None:
            raise ValueError("PLOP's step loss needs the entropy thresholds (PLOP.before_step)")
        small = (current["small_logits"], previous["small_logits"]) if self.pod_logits else (None, None)
        return losses.plop_loss(current["logits"], targets, previous["logits"], step.thresholds, current["maps"],
                                previous["maps"], *small, scales=self.scales, features_factor=self.features_factor,
                                logits_factor=self.logits_factor, schedule=self.schedule,
                                adaptive_factor=self.adaptive_factor, adaptive_min_factor=self.adaptive_min_factor)
