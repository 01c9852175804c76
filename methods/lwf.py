"""LwF (Li & Hoiem, ECCV 2016) as the MiB codebase runs it: cross-entropy + kd_weight * distillation of the
previous network's old-class outputs (losses.lwf_loss)."""
import gin

import losses
import methods


@methods.register
@gin.configurable("lwf")
class LwF(methods.Method):
    """Args: kd_weight: the reference's --loss_kd for LwF (100); alpha: --alpha (1.0)."""
    name = "lwf"
    title = "LwF"

    def __init__(self, kd_weight=100.0, alpha=1.0):
        self.kd_weight, self.alpha = float(kd_weight), float(alpha)

    def losses(self, current, previous, targets, step):
        return losses.lwf_loss(current["logits"], targets, previous["logits"], self.kd_weight, self.alpha)
