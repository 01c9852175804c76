"""Where the files of a base folder live: the one owner of the data/ and checkpoints/ layout (SPEC.md, "Checkpoint
reuse by parameter indices, and file names").

Every writer (prepare_data, gan/generate_gan.py, flickr/download_flickr.py, the embedded build) and the one reader
(TrainManager, which adds the names made of parameter indices) ask these functions; nobody else joins these
folder names. `data` is a data folder (`<base>/data` of an experiment, `--output_dir` of prepare_data); the names
are the original's:

  <data>/training_first_step/train_{protocol}_{first}-{last}.tfrecord
  <data>/training_incremental/train_{protocol}_{cls or first-last}.tfrecord
  <data>/training_incremental/mixed/train_{protocol}_{cls or first-last}_{suffix}.tfrecord
  <data>/validation/val_{i}.tfrecord
  <data>/splits/<name of a file of the three folders above>.txt   its image ids (prepare_data)
  <data>/replay_images/{gan|flickr}/{cc}.tfrecord                  raw replay (two-digit class)
  <data>/replay_images/flickr/images/{cc}/                         downloaded web images
  <data>/replay_images_and_labels/<name>.tfrecord                 labelled replay
  <base>/checkpoints/{encoders,decoders,helper_decoders}/<name>    checkpoints (extension-less)
  <base>/outputs/<name>.txt                                        results files
"""
import os

DATA_DIR = "data"
FIRST_STEP_DIR, INCREMENTAL_DIR, VALIDATION_DIR, SPLITS_DIR = (
    "training_first_step", "training_incremental", "validation", "splits")
MIXED_DIR = os.path.join(INCREMENTAL_DIR, "mixed")
REPLAY_DIR, LABELLED_REPLAY_DIR = "replay_images", "replay_images_and_labels"
WEB_IMAGES_DIR = "images"  # under the flickr replay folder
CHECKPOINTS_DIR, OUTPUTS_DIR = "checkpoints", "outputs"
TFRECORD = ".tfrecord"


def class_range_str(classes):
    """'11' for [11], '11-15' for [11, ..., 15]: how the original names a group of classes."""
    if classes[0] == classes[-1]:
        return str(classes[0])
    return f"{classes[0]}-{classes[-1]}"


def data_dir(base):
    """The data folder of a base folder, joined as the original joins `base_folder_path` ('./data')."""
    return base + "/" + DATA_DIR


def checkpoint(base, kind, name):
    """`<base>/checkpoints/<kind>/<name>` (extension-less); kind: "encoders", "decoders", "helper_decoders"."""
    return base + "/" + CHECKPOINTS_DIR + "/" + kind + "/" + name


def results_file(base, name):
    """`<base>/outputs/<name>.txt`: an experiment's results file (TrainManager names it)."""
    return base + "/" + OUTPUTS_DIR + "/" + name + ".txt"


def train_name(protocol, classes, suffix=""):
    """'train_{protocol}_{cls or first-last}{suffix}': a training file's name without folder and extension."""
    return f"train_{protocol}_{class_range_str(classes)}{suffix}"


def first_step_file(data, protocol, classes):
    """The training tfrecord of a first step learning `classes` under `protocol`."""
    return os.path.join(data, FIRST_STEP_DIR, train_name(protocol, classes) + TFRECORD)


def incremental_file(data, protocol, classes):
    """The training tfrecord of an incremental step (or a helper) learning `classes` under `protocol`."""
    return os.path.join(data, INCREMENTAL_DIR, train_name(protocol, classes) + TFRECORD)


def mixed_file(data, protocol, classes, suffix):
    """The mixed-label (background-inpainted) tfrecord of a step; suffix: '_P{c}.{fs}.{h}.{i}...' (TrainManager)."""
    return os.path.join(data, MIXED_DIR, train_name(protocol, classes, suffix) + TFRECORD)


def validation_file(data, k):
    """val_{k}: the validation images whose highest class is k."""
    return os.path.join(data, VALIDATION_DIR, f"val_{k}{TFRECORD}")


def replay_dir(data, source):
    """The folder of a replay source's raw tfrecords ("gan" or "flickr")."""
    return os.path.join(data, REPLAY_DIR, source)


def class_folder_name(cls):
    """'{cc}': a class's two-digit name (replay tfrecords, web image folders)."""
    return f"{cls:02d}"


def replay_name(cls):
    """'{cc}.tfrecord': the name of a class's raw replay tfrecord in its source's folder."""
    return class_folder_name(cls) + TFRECORD


def replay_file(data, source, cls):
    """The raw replay tfrecord of one class: '<data>/replay_images/<source>/{cc}.tfrecord'."""
    return os.path.join(replay_dir(data, source), replay_name(cls))


def web_images_dir(data, source="flickr"):
    """The parent of the downloaded web images' class folders ({cc}/)."""
    return os.path.join(replay_dir(data, source), WEB_IMAGES_DIR)


def web_class_dir(images_dir, cls):
    """One class's folder of web images: '<images_dir>/{cc}'."""
    return os.path.join(images_dir, class_folder_name(cls))


def labelled_replay_dir(data):
    """The folder of the labelled replay tfrecords."""
    return os.path.join(data, LABELLED_REPLAY_DIR)


def prepared(data):
    """True when prepare_data has written (at least the first validation file of) a data folder."""
    return os.path.exists(validation_file(data, 1))


def split_list(tfrecord_path):
    """The image id list of a prepared tfrecord (`<data>/splits/<name>.txt`), or None for a file that prepare_data
    does not write (replay, mixed labels, anything outside the three folders)."""
    folder, name = os.path.split(os.fspath(tfrecord_path))
    if os.path.basename(folder) not in (FIRST_STEP_DIR, INCREMENTAL_DIR, VALIDATION_DIR) or \
            not name.endswith(TFRECORD):
        return None
    return os.path.join(os.path.dirname(folder), SPLITS_DIR, name[:-len(TFRECORD)] + ".txt")


def expected_records(tfrecord_path):
    """The record count a prepared tfrecord should hold, from its split list.

    Args:
      tfrecord_path: a file of `<data>/{training_first_step,training_incremental,validation}/`.
    Returns:
      int: the number of ids in `<data>/splits/<name>.txt`; None when the file is not one that prepare_data writes
      or its list does not exist (the list is written after its tfrecord, so a missing list also means an
      unfinished file).
    """
    split = split_list(tfrecord_path)
    if split is None or not os.path.isfile(split):
        return None
    with open(split) as f:
        return len(f.read().split())
