"""ILT (Michieli & Zanuttigh, ICCVW 2019) as the MiB codebase runs it: cross-entropy + kd_weight * distillation
+ de_weight * feature distillation of the encoder outputs (losses.ilt_loss; the last term is 0 when the encoder
is frozen)."""
import gin

import losses
import methods


@methods.register
@gin.configurable("ilt")
class ILT(methods.Method):
    """Args: kd_weight, de_weight: --loss_kd and --loss_de for ILT (100, 100); alpha: --alpha (1.0)."""
    name = "ilt"
    title = "ILT"
    trains_encoder = True

    def __init__(self, kd_weight=100.0, de_weight=100.0, alpha=1.0):
        self.kd_weight, self.de_weight, self.alpha = float(kd_weight), float(de_weight), float(alpha)

    def losses(self, current, previous, targets, step):
        return losses.ilt_loss(current["logits"], targets, previous["logits"], current["features"],
                               previous["features"], self.kd_weight, self.de_weight, self.alpha)
