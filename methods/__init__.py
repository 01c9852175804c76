"""The methods of the incremental steps, RECALL's and the baselines' (LwF, ILT, MiB, PLOP): one protocol, one
registry.

A method is a `Method` subclass in a module of this package named after it (`methods/<name>.py`; the name is the
value of `TrainManager.method`), registered with `@register` and gin-configurable under its name, so that its
weights are bindings (`lwf.kd_weight = 100.0`) that the operative config beside each results file records. Adding a
method is its module and its two configs (`config/<NAME>_DISJOINT.gin` and `_OVERLAPPED.gin`, each including its
protocol's base `config/bases/BASELINE_<PROTOCOL>.gin`); nothing else lists the methods: TrainManager checks
`TrainManager.method` against `names()`, main.py derives the baselines' configs from `baselines()`, results.py
names a run by the method's `title`.

The protocol (the shape of PLOP's `Trainer.before` and of tensorflow/models' Task):
- `Method.before_step(step)`: the method prepares an incremental step itself (`Step`: its classes, the network
  that trains, the frozen previous network, that network's logits over the step's data) and returns the step's
  `StepLoss`: MiB initialises its new classes' classifiers there, PLOP computes its entropy thresholds.
- `Method.loss(current, previous, targets, count, num_replicas, step)`, which the StepLoss calls inside
  trainer.Trainer's compiled step: this replica's share of the loss, and the method's terms.

This module imports no TensorFlow: train_manager and main.py ask it for names before TensorFlow loads. The
methods' modules import it; they are imported on first use (`get`), or all at once (`load_all`, which
training.py calls so that a config binding their weights parses).
"""
import dataclasses
import importlib
import inspect
import pkgutil
from typing import Any, Callable

import numpy as np

_REGISTERED = {}  # name -> Method subclass


def register(cls):
    """Class decorator: registers a Method subclass under `cls.name`. A method defined elsewhere (a notebook, a test)
    registers itself the same way, for the process that defines it. Returns cls."""
    if not (isinstance(cls, type) and issubclass(cls, Method) and cls.name and cls.title):
        raise ValueError(f"register: {cls!r} should be a Method subclass with a name and a title")
    if _REGISTERED.get(cls.name, cls) is not cls:
        raise ValueError(f"register: a method named {cls.name!r} is registered already ({_REGISTERED[cls.name]})")
    _REGISTERED[cls.name] = cls
    return cls


def unregister(name):
    """Removes the method `name` registered in this process (e.g. a test's)."""
    _REGISTERED.pop(name, None)


def _modules():
    return [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]


def names():
    """Every method's name, without importing any (no TensorFlow): "recall", then the modules of this package and
    the methods registered in this process, alphabetically."""
    return sorted(set(_modules()) | set(_REGISTERED), key=lambda name: (name != "recall", name))


def baselines():
    """The baselines' names: every method but RECALL, in names() order."""
    return [name for name in names() if name != "recall"]


def get(name):
    """The Method subclass named `name` (importing its module on first use). ValueError for an unknown name."""
    if name not in _REGISTERED and name in _modules():
        importlib.import_module(f"{__name__}.{name}")
        if name not in _REGISTERED:
            raise ValueError(f"methods/{name}.py registers no method named {name!r} (@methods.register, name = {name!r})")
    if name not in _REGISTERED:
        raise ValueError(f"unknown method {name!r}; expected one of {names()}")
    return _REGISTERED[name]


def make(name):
    """The method `name` with its gin-bound weights."""
    return get(name)()


def load_all():
    """Imports every method's module: their gin configurables exist from then on."""
    for name in _modules():
        get(name)


@dataclasses.dataclass
class Step:
    """What a method sees of the incremental step it prepares (Method.before_step).

    Attributes:
      index: the step (1 for the first incremental step).
      n_old: the previous network's classes, background included; n_new: the classes the step adds.
      network: the model.Segmenter that trains (the network after step index - 1); a method may change its
        weights (MiB's initialisation).
      previous: the frozen network of step index - 1 (model.Segmenter), None when the method reads none
        (Method.needs_previous False).
      previous_logits: () -> an iterable of (the previous network's logits of the n_old old outputs, float32
        [B, H, W, n_old], targets int32 [B, H, W]) over one pass of the step's training data (whole images, no
        augmentation).
    """
    index: int
    n_old: int
    n_new: int
    network: Any
    previous: Any
    previous_logits: Callable


class StepLoss:
    """The loss of one stage, as trainer.Trainer calls it inside its compiled step:
    `loss(current, previous, targets, count, num_replicas)`.

    Args of the call:
      current, previous: the trained network's and the frozen previous network's outputs on the same images
        (model.Segmenter.outputs; previous is None for a method without needs_previous): dicts of logits float32
        [B, H, W, C] (upsampled), small_logits float32 [B, h, w, C] (before upsampling), features [B, h, w, D]
        (encoder output) and, when `needs_maps`, maps (list of the encoder stages' outputs).
      targets: int32 [B, H, W] output indices of the stage's classes or 255.
      count: float32, the valid (not 255) targets of the global batch (all replicas).
      num_replicas: replicas in sync.
    Returns: dict of float32 scalars: "loss", this replica's share of what is minimised (before the L2 term; the
      replicas' shares sum to the step's loss), and the method's terms (each replica's own values).

    Attributes: method, n_old and n_new (None outside an incremental step: step 0, helpers), thresholds (PLOP's),
    needs_maps, needs_previous.
    """

    def __init__(self, method, n_old=None, n_new=None, thresholds=None):
        if (n_old is None) != (n_new is None) or (n_old is not None and (n_old < 1 or n_new < 1)):
            raise ValueError(f"StepLoss: n_old={n_old} (background included) and n_new={n_new} should both be "
                             f">= 1, or both None")
        self.method = method
        self.n_old, self.n_new = (None, None) if n_old is None else (int(n_old), int(n_new))
        self.thresholds = None if thresholds is None else np.asarray(thresholds, np.float32)
        self.needs_maps, self.needs_previous = method.needs_maps, method.needs_previous

    def __call__(self, current, previous, targets, count, num_replicas):
        return self.method.loss(current, previous, targets, count, num_replicas, self)


def _cut(outputs, n):
    """The outputs' logits cut to the first n classes (the decoder keeps n_classes outputs at every step)."""
    return dict(outputs, logits=outputs["logits"][..., :n], small_logits=outputs["small_logits"][..., :n])


class Method:
    """What a method changes in an incremental step: how the step starts (before_step) and its loss (loss, or
    losses for a baseline). Subclasses set the class attributes and are gin-configurable under `name`; their
    constructor arguments are their weights."""

    name = None  # TrainManager.method
    title = None  # the name the papers use (results.method_name)
    trains_encoder = False  # whether this project's configs of it train the encoder ("ILT (frozen encoder)" else)
    needs_previous = True  # its loss reads the frozen network of the previous step
    needs_maps = False  # and the encoder stages' outputs (PLOP's Local POD)

    def before_step(self, step):
        """Prepares incremental step `step` (a Step) and returns its StepLoss."""
        return StepLoss(self, step.n_old, step.n_new)

    def loss(self, current, previous, targets, count, num_replicas, step):
        """See StepLoss. A baseline's: its reference's mean over this replica's pixels (losses(), on the outputs
        cut to the classes seen so far: the previous network's to its n_old), divided by the replicas."""
        terms = dict(self.losses(_cut(current, step.n_old + step.n_new), _cut(previous, step.n_old), targets, step))
        return dict(loss=terms.pop("total") / num_replicas, **terms)

    def losses(self, current, previous, targets, step):
        """A baseline's terms on the cut outputs: dict of float32 scalars, "total" (what is minimised, before the
        L2 term; a mean over the replica's pixels) and the others; `step` is the StepLoss."""
        raise NotImplementedError

    def weights(self):
        """{"<name>.<argument>": value} of the constructor's scalar arguments (its gin bindings), as the
        artifacts' records note them."""
        parameters = inspect.signature(type(self).__init__).parameters
        return {f"{self.name}.{k}": getattr(self, k) for k in parameters
                if k != "self" and isinstance(getattr(self, k, None), (bool, int, float, str))}
