"""MiB (Cermelli et al., CVPR 2020): unbiased cross-entropy + kd_weight * unbiased distillation
(losses.mib_loss), every step started with MiB's initialisation of the new classes' classifiers from the
background's (losses.mib_initialize_decoder)."""
import gin

import losses
import methods


@methods.register
@gin.configurable("mib")
class MiB(methods.Method):
    """Args: kd_weight: --loss_kd for MiB (10); alpha: --alpha (1.0); initialize: --init_balanced (True)."""
    name = "mib"
    title = "MiB"
    trains_encoder = True

    def __init__(self, kd_weight=10.0, alpha=1.0, initialize=True):
        self.kd_weight, self.alpha, self.initialize = float(kd_weight), float(alpha), bool(initialize)

    def before_step(self, step):
        if self.initialize:
            losses.mib_initialize_decoder(step.network.decoder, step.n_old, step.n_new)
        return methods.StepLoss(self, step.n_old, step.n_new)

    def losses(self, current, previous, targets, step):
        return losses.mib_loss(current["logits"], targets, previous["logits"], self.kd_weight, self.alpha)
