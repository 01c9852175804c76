"""The embedded benchmark: a generated VOC-like world, its tfrecords, a pretrained encoder and both replay
sources (GAN-like and Flickr-like), built in one folder (`build`, or `python -m embedded_benchmark`).

One module per job: world (the generated world), generator (the class-conditional generator SavedModel),
classifier (the classifier that finds the GAN class mapping), pretraining (the encoder step 0 starts from),
web_replay (the Flickr-like web replay), phases (the settings file, the phases, `build` and the command line).
"""
import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)
from embedded_benchmark.phases import build
from embedded_benchmark.phases import CLASSES
from embedded_benchmark.phases import EmbeddedConfig
from embedded_benchmark.phases import PHASES
from embedded_benchmark.phases import SETTINGS_FILE
from embedded_benchmark.generator import hidden_mapping
from embedded_benchmark.pretraining import pretrained_encoder_path

__all__ = ["build", "CLASSES", "EmbeddedConfig", "PHASES", "SETTINGS_FILE", "hidden_mapping",
           "pretrained_encoder_path"]
