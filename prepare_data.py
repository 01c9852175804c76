"""Makes every training and validation tfrecord of a dataset's setups from its folder (Pascal VOC 2012, ADE20K).

    python prepare_data.py --voc_root PATH [--label_dir NAME] [--out_dir data] [--skip_bad] [--workers N]
    python prepare_data.py --dataset ade20k --root PATH  (--root and --voc_root are one flag)

Input (the dataset's FolderLayout, datasets.py). VOC: `PATH/JPEGImages/<id>.jpg`, a folder of single-channel PNG
labels (`SegmentationClassAug`, else `SegmentationClass`; values 0..20 and 255 = void) and the id lists
`ImageSets/Segmentation/{train,val}.txt` (`--train_list`, `--val_list` for others, e.g. the 10582 ids of the
augmented set). ADE20K: PATH is `ADEChallengeData2016` (or a folder holding just it) with
`images/{training,validation}/<id>.jpg` and `annotations/{training,validation}/<id>.png` (values 0..150); a
split without a list is every `.jpg` of its image folder (an annotation without its image is reported as a
missing image).

Output under `--out_dir` (the names of paths.py, where TrainManager looks for them):
  training_first_step/train_{sequential|overlapped}_{1-N0}.tfrecord   N0 = 19, 15, 10, 20 (JOINT)
  training_incremental/train_{sequential|disjoint|overlapped}_{cls or first-last}.tfrecord
      every class group added by an incremental step of the dataset's setups (datasets.SETUPS; the helper groups
      are among them), for the dataset's protocols only (ADE20K: overlapped)
  validation/val_{i}.tfrecord   the validation images whose highest class is i (VOC; ADE20K: whose lowest class
      is i, validation_group), labels unchanged but for the dataset's validation_void values (ADE20K's 0) -> 255
  splits/<same base name>.txt   the image ids of every file, one per line

Protocols (`keeps` and `relabel_lookup`): a step learns the classes
`first..last`; the old classes are 1..first-1. An image enters the step's file when it holds at least one
current class, and
  sequential: only background, void, old and current classes (labels kept);
  disjoint:   the same images, old classes relabelled background;
  overlapped: any other classes too, every class but the current ones relabelled background.
A first step is the same rule with no old class. Void (255) always stays void.

Record bytes, as the original's writers (which stored the files' bytes): `input` is the source file's exact
bytes when it is a JPEG (VOC's are); another format is decoded and encoded as JPEG (quality 95). `label` is
the source PNG's exact bytes when it is a grayscale (mode L) PNG that the protocol leaves unchanged;
otherwise it is encoded as a single-channel PNG of class ids: VOC's own SegmentationClass labels are palette
PNGs, which TensorFlow decodes to colours, and a relabelled label has other contents.

The run is incremental: a file whose tfrecord holds as many records as its split list, and whose list holds
the expected ids, is skipped. Every file is written to a temporary name (artifacts.py) and renamed, the
tfrecord before its list, so an interrupted or truncated file is made again; temporaries that killed runs
left under the output folder are deleted at start. `paths.expected_records(tfrecord)` reads a file's expected
record count from its split list. Files are written in parallel (threads).
"""

import collections
import concurrent.futures
import io
import os
import sys
import threading

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
import tensorflow as tf
from tqdm import tqdm

import artifacts
import data_loader
import datasets
import paths
from paths import class_range_str, expected_records  # noqa: F401  (re-exported: their owner is paths.py)
from train_manager import FIRST_STEP_PROTOCOLS, PROTOCOLS

DEFAULT_LABEL_DIRS = datasets.VOC.layout.label_dirs
DEFAULT_TRAIN_LIST = datasets.VOC.layout.train_list
DEFAULT_VAL_LIST = datasets.VOC.layout.val_list
_JPEG_MAGIC = b"\xff\xd8\xff"


# ---------------------------------------------------------------------------------------------- protocols


def keeps(image_classes, step_classes, protocol):
    """True when an image with these object classes enters the file of a step (see the module doc).

    Args:
      image_classes: the object classes (1..n_classes) present in the image's label (0 and 255 left out).
      step_classes: the consecutive classes the step learns, e.g. [16, ..., 20]; old classes are
        1..step_classes[0]-1 (none for a first step).
      protocol: "sequential", "disjoint" or "overlapped".
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    present = set(image_classes)
    if not present & set(step_classes):
        return False
    return protocol == "overlapped" or max(present) <= step_classes[-1]


def relabel_lookup(step_classes, protocol):
    """How a step's protocol rewrites labels: uint8 [256], new value = lookup[old value].

    sequential keeps every value; disjoint maps old classes (1..step_classes[0]-1) to 0; overlapped maps
    every class but the current ones to 0. 0 and 255 (void) are kept.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    lookup = np.arange(256, dtype=np.uint8)
    if protocol == "disjoint":
        lookup[1:step_classes[0]] = 0
    elif protocol == "overlapped":
        lookup[[c for c in range(1, data_loader.VOID) if c not in step_classes]] = 0
    return lookup


def validation_class(image_classes, group="highest"):
    """The val_i file of an image: its highest class ("highest", VOC's) or its lowest ("lowest", ADE20K's: see
    datasets.Dataset.validation_group), or 0 (no file) when it holds no object class."""
    if group not in ("highest", "lowest"):
        raise ValueError(f"unknown validation group {group!r}; expected 'highest' or 'lowest'")
    return (max if group == "highest" else min)(image_classes, default=0)


def class_groups(dataset=datasets.DEFAULT):
    """The class groups of every setup of a dataset (datasets.class_groups): (first-step groups, incremental
    groups), sorted lists of class lists."""
    return datasets.class_groups(dataset)


OutputFile = collections.namedtuple("OutputFile", "path split_path ids lookup split")


def plan_outputs(train_classes, val_classes, out_dir, dataset=datasets.DEFAULT):
    """Every output file with its image ids.

    Args:
      train_classes, val_classes: dict image id -> set of object classes of its label.
      out_dir: output folder.
      dataset: the dataset (name or datasets.Dataset) whose setups, protocols and classes name the files and whose
        validation_group and validation_void make the val_k files.
    Returns:
      list of OutputFile(path, split_path, ids: sorted tuple, lookup: uint8 [256] label rewrite, split: "train" or
      "val", the split its images are read from).
    """
    def output(path, ids, lookup, split="train"):
        return OutputFile(path, paths.split_list(path), tuple(sorted(ids)), lookup, split)

    record = datasets.get(dataset)
    first_groups, incremental_groups = class_groups(record)
    jobs = [(paths.first_step_file, p, g) for g in first_groups for p in FIRST_STEP_PROTOCOLS
            if p in record.protocols]
    jobs += [(paths.incremental_file, p, g) for g in incremental_groups for p in PROTOCOLS if p in record.protocols]
    outputs = []
    for file, protocol, group in jobs:
        ids = [i for i, c in train_classes.items() if keeps(c, group, protocol)]
        outputs.append(output(file(out_dir, protocol, group), ids, relabel_lookup(group, protocol)))
    validation_lookup = np.arange(256, dtype=np.uint8)
    validation_lookup[list(record.validation_void)] = record.void
    for k in record.classes:
        ids = [i for i, c in val_classes.items() if validation_class(c, record.validation_group) == k]
        outputs.append(output(paths.validation_file(out_dir, k), ids, validation_lookup, "val"))
    return outputs


# ---------------------------------------------------------------------------------------------- input


class BadExampleError(ValueError):
    """An image/label pair that cannot be used; `kind` names the problem for the skip counts."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class MissingExampleError(FileNotFoundError):
    """An image or label file of a listed id that does not exist."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def _require_dir(path, what):
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} folder {path} not found")
    return path


def _read_list(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image id list {path} not found")
    # utf-8-sig: an editor's byte order mark would otherwise start the first id ("\ufeff2007_000032").
    with open(path, encoding="utf-8-sig") as f:
        try:
            lines = f.read().splitlines()
        except UnicodeDecodeError as e:
            raise ValueError(f"image id list {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    # "2007_000032", or DeepLab's list form "/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png"
    ids = [os.path.splitext(os.path.basename(line.split()[0]))[0] for line in lines if line.strip()]
    if not ids:
        raise ValueError(f"image id list {path} is empty; expected one image id per line")
    unique = list(dict.fromkeys(ids))
    if len(unique) < len(ids):
        logging.warning("%s: %d duplicate ids ignored.", path, len(ids) - len(unique))
    return unique


def read_example(image_path, label_path, dataset=datasets.DEFAULT):
    """Reads and checks one image/label pair of `dataset` (name or datasets.Dataset).

    Returns:
      (image uint8 [H, W, 3], label uint8 [H, W]).
    Raises:
      MissingExampleError: a file is missing. BadExampleError: unreadable file, a label that is not
      single-channel, a 1-bit label, one of another size than its image, or with a value neither a class id
      (0..20 for VOC) nor the void label (255).
    """
    n_classes, void = datasets.get(dataset).n_classes, datasets.get(dataset).void
    for path, kind, what, other in ((image_path, "missing_image", "image of label", label_path),
                                    (label_path, "missing_label", "label of image", image_path)):
        if not os.path.isfile(path):
            raise MissingExampleError(kind, f"{path} not found (the {what} {other})")
    try:
        with Image.open(image_path) as im:
            image = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise BadExampleError("unreadable", f"{image_path}: cannot read the image ({e})") from None
    try:
        with Image.open(label_path) as im:
            if len(im.getbands()) != 1:
                raise BadExampleError("label_channels", f"{label_path}: label has bands {im.getbands()}, "
                                      "expected a single-channel PNG of class ids")
            if im.mode == "1":
                # Its pixels are 0/1: a binary mask, not class ids. Read as ids, every object would become class
                # 1 (aeroplane); converted as Pillow does, void (1 -> 255). Either would corrupt labels silently.
                raise BadExampleError("label_mode", f"{label_path}: label is a 1-bit PNG (mode 1), a binary mask "
                                      "rather than class ids; expected an 8-bit single-channel PNG (mode L or P) of "
                                      f"class ids 0..{n_classes} and {void} (void)")
            label = np.asarray(im)
    except OSError as e:
        raise BadExampleError("unreadable", f"{label_path}: cannot read the label ({e})") from None
    if label.shape != image.shape[:2]:
        raise BadExampleError("size_mismatch", f"{label_path}: label size {label.shape[1]}x{label.shape[0]} "
                              f"differs from image {image_path} size {image.shape[1]}x{image.shape[0]}")
    values = np.unique(label)
    bad = [int(v) for v in values if not (0 <= v <= n_classes or v == void)]
    if bad:
        raise BadExampleError("label_value", f"{label_path}: label values {bad[:10]} are neither "
                              f"0..{n_classes} nor {void}")
    return image, label.astype(np.uint8)


def _scan(ids, image_dir, label_dir, skip_bad, workers, desc, dataset):
    """Object classes of every listed example; bad ones raise, or are returned when skip_bad."""
    record = datasets.get(dataset)

    def check(image_id):
        try:
            _, label = read_example(*record.layout.example_paths(image_dir, label_dir, image_id), record)
        except (BadExampleError, MissingExampleError) as e:
            if not skip_bad:
                raise
            return image_id, e
        return image_id, frozenset(int(v) for v in np.unique(label) if 0 < v <= record.n_classes)

    classes, bad = {}, []
    pool = concurrent.futures.ThreadPoolExecutor(workers)
    try:
        for image_id, result in tqdm(pool.map(check, ids), total=len(ids), desc=desc):
            if isinstance(result, Exception):
                bad.append((image_id, result.kind, str(result)))
            else:
                classes[image_id] = result
    finally:
        pool.shutdown(cancel_futures=True)  # on the first error, do not check the rest
    return classes, bad


# ---------------------------------------------------------------------------------------------- output


def is_complete(out):
    """True when `out` was fully written before: its list holds the expected ids, its file that many records."""
    if not (os.path.isfile(out.path) and os.path.isfile(out.split_path)):
        return False
    with open(out.split_path) as f:
        if tuple(f.read().split()) != out.ids:
            return False
    return data_loader.framed_record_count(out.path) == len(out.ids)


def image_bytes(image_path):
    """The `input` bytes of an image: the file's own bytes when it is a JPEG, as the original's writers
    kept them; another format (e.g. a PNG named .jpg) is decoded and encoded as JPEG, quality 95."""
    with open(image_path, "rb") as f:
        data = f.read()
    if data.startswith(_JPEG_MAGIC):
        return data
    with Image.open(io.BytesIO(data)) as im:
        return tf.io.encode_jpeg(np.asarray(im.convert("RGB")), quality=95).numpy()


def label_bytes(label_path, lookup):
    """The `label` bytes of a label file after the protocol's rewrite `lookup` (uint8 [256]).

    A grayscale (mode L) PNG that the rewrite leaves unchanged keeps the file's bytes, as in the original.
    Otherwise a single-channel PNG of class ids is encoded. This is a necessary change for VOC's palette PNGs
    (SegmentationClass): TensorFlow decodes a palette PNG to the palette's colours, not to the class ids.
    """
    with Image.open(label_path) as im:
        ids = np.asarray(im)  # palette images give their indices, i.e. the class ids
        keep = im.format == "PNG" and im.mode == "L"
    new = lookup[ids]
    if keep and np.array_equal(new, ids):
        with open(label_path, "rb") as f:
            return f.read()
    return tf.io.encode_png(new.astype(np.uint8)[..., None]).numpy()


def _write(out, image_dir, label_dir, progress, layout):
    if os.path.exists(out.split_path):
        os.remove(out.split_path)  # the list is the completion mark: drop it while the file is remade

    def examples():
        # The inputs were checked by read_example in the scan; here the files' bytes are stored.
        for image_id in out.ids:
            image_path, label_path = layout.example_paths(image_dir, label_dir, image_id)
            example = data_loader.serialize_example(image_bytes(image_path),
                                                    label_bytes(label_path, out.lookup))
            progress()
            yield example

    count = data_loader.write_tfrecord(out.path, examples())
    artifacts.write_text(out.split_path, "".join(i + "\n" for i in out.ids), fsync=True)
    if not out.ids:
        logging.warning("%s holds no image.", out.path)
    return count


def _resolve_root(root, layout, name):
    """The dataset folder: `root`, or the one folder in `root` that holds the layout's training images (a folder
    holding ADEChallengeData2016, or VOCdevkit holding VOC2012)."""
    _require_dir(root, f"{name.upper()} root")
    image_dir = layout.split_dirs("train")[0]
    if os.path.isdir(os.path.join(root, image_dir)):
        return root
    inner = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, image_dir)))
    if len(inner) > 1:
        raise FileNotFoundError(f"image folder {os.path.join(root, image_dir)} not found, and {root} holds several "
                                f"{name} folders {inner}: name one")
    if inner:
        logging.info("%s holds %s: reading %s.", root, os.path.join(inner[0], image_dir), inner[0])
        return os.path.join(root, inner[0])
    return root  # the missing image folder is reported with the split


def _resolve_label_dir(root, label_dir, candidates):
    if label_dir is not None:
        return _require_dir(os.path.join(root, label_dir), "label")
    for name in candidates:
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    raise FileNotFoundError(f"no label folder in {root}: expected one of {candidates}")


def _list_split(image_dir, label_dir, layout):
    """The ids of a split without an id list: every `<image_ext>` file of its image folder, sorted (MiB's
    listing), and every annotation's that has no image, so that the scan reports the missing image."""
    def stems(folder, ext):
        return {n[:-len(ext)] for n in os.listdir(folder)
                if n.endswith(ext) and os.path.isfile(os.path.join(folder, n))}

    images = stems(image_dir, layout.image_ext)
    if not images:
        raise ValueError(f"image folder {image_dir} holds no {layout.image_ext} file; expected the split's images")
    return sorted(images | stems(label_dir, layout.label_ext))


def _split_examples(root, split, layout, label_dir, id_list):
    """(image folder, label folder, ids) of "train" or "val"; id_list (relative to root) overrides the layout's."""
    image_rel, label_rels = layout.split_dirs(split)
    image_dir = _require_dir(os.path.join(root, image_rel), "image")
    label_dir = _resolve_label_dir(root, label_dir, label_rels)
    id_list = id_list or layout.split_list(split)
    if id_list is None:
        return image_dir, label_dir, _list_split(image_dir, label_dir, layout)
    return image_dir, label_dir, _read_list(os.path.join(root, id_list))


def prepare(root, out_dir="data", label_dir=None, workers=2, skip_bad=False, train_list=None, val_list=None,
            dataset=datasets.DEFAULT):
    """Writes every training and validation tfrecord (and its id list) from a folder in a dataset's layout.

    First deletes the temporaries that killed runs left under out_dir (remove_stale_temporaries).

    Args:
      root: the dataset's folder (VOC: the one with JPEGImages/, the label folder and the id lists; ADE20K:
        ADEChallengeData2016), or a folder holding exactly one such folder.
      out_dir: output folder (`data` in the project).
      label_dir: label folder name under root (or absolute path), for a layout whose splits share one; None tries
        the layout's (VOC: SegmentationClassAug then SegmentationClass).
      workers: threads for reading and writing.
      skip_bad: skip (and count) bad examples instead of failing on the first.
      train_list, val_list: id lists, relative to root (or absolute); None: the layout's (VOC's
        ImageSets/Segmentation/{train,val}.txt; ADE20K has none: every image of the split's folder).
      dataset: the dataset (name or datasets.Dataset): its layout, classes, setups, protocols and validation.
    Returns:
      dict: label_dir (the training split's), label_dirs ({split: folder}), n_train, n_val (usable examples), bad
      (list of (split, id, kind, message)), bad_counts ({kind: n}), written and skipped (lists of tfrecord paths),
      files ({path: n_images}).
    Raises:
      FileNotFoundError: missing folder, list, or (without skip_bad) image or label of an id.
      ValueError: empty list or split folder, a label_dir for a layout with a label folder per split, or (without
        skip_bad) a bad example; the message names the file.
    """
    record = datasets.get(dataset)
    layout = record.layout
    root = _resolve_root(root, layout, record.name)
    if os.path.isdir(out_dir):
        artifacts.remove_stale_temporaries(out_dir)
    if label_dir is not None and layout.split_dirs("train")[1] != layout.split_dirs("val")[1]:
        raise ValueError(f"label_dir {label_dir!r} names one label folder for both splits, but {record.name} keeps "
                         f"one per split ({layout.split_dirs('train')[1]}, {layout.split_dirs('val')[1]}); "
                         f"expected none")
    dirs = {"train": _split_examples(root, "train", layout, label_dir, train_list),
            "val": _split_examples(root, "val", layout, label_dir, val_list)}
    train_ids, val_ids = dirs["train"][2], dirs["val"][2]
    shared = set(train_ids) & set(val_ids)
    if shared and dirs["train"][0] == dirs["val"][0]:
        logging.warning("%d ids are in both the train and the val list (e.g. %s).", len(shared), min(shared))
    workers = max(1, int(workers))
    train_classes, train_bad = _scan(train_ids, *dirs["train"][:2], skip_bad, workers, "checking train", record)
    val_classes, val_bad = _scan(val_ids, *dirs["val"][:2], skip_bad, workers, "checking val", record)
    bad = [("train",) + b for b in train_bad] + [("val",) + b for b in val_bad]
    for split, image_id, kind, message in bad:
        logging.warning("skipped %s id %s (%s): %s", split, image_id, kind, message)

    outputs = plan_outputs(train_classes, val_classes, out_dir, record)
    todo = [o for o in outputs if not is_complete(o)]
    skipped = [o.path for o in outputs if o not in todo]
    logging.info("%d files complete (skipped), %d to write.", len(skipped), len(todo))
    bar = tqdm(total=sum(len(o.ids) for o in todo), desc="writing", unit="img")
    lock = threading.Lock()

    def progress():
        with lock:
            bar.update()

    pool = concurrent.futures.ThreadPoolExecutor(workers)
    try:
        # Largest first, so that the last files to finish are small ones.
        jobs = [pool.submit(_write, o, *dirs[o.split][:2], progress, layout)
                for o in sorted(todo, key=lambda o: -len(o.ids))]
        for job in concurrent.futures.as_completed(jobs):
            job.result()
    finally:
        pool.shutdown(cancel_futures=True)
        bar.close()
    summary = dict(label_dir=dirs["train"][1], label_dirs={s: d[1] for s, d in dirs.items()},
                   n_train=len(train_classes), n_val=len(val_classes), bad=bad,
                   bad_counts=dict(collections.Counter(b[2] for b in bad)), written=[o.path for o in todo],
                   skipped=skipped, files={o.path: len(o.ids) for o in outputs})
    logging.info("Prepared %s from %s: %d train and %d val images, %d bad skipped %s; %d files written, %d "
                 "skipped.", out_dir, root, summary["n_train"], summary["n_val"], len(bad),
                 summary["bad_counts"], len(todo), len(skipped))
    return summary


def define_flags():
    """The command line's flags (defined only when run as a script: importing this module defines none)."""
    flags.DEFINE_string("root", None, "The dataset's folder (or a folder holding just it), required: voc the "
                        "folder in Pascal VOC 2012 layout (JPEGImages/, labels, ImageSets/), ade20k "
                        "ADEChallengeData2016 (images/, annotations/).")
    flags.DEFINE_alias("voc_root", "root")  # the flag's name before ADE20K
    flags.DEFINE_string("label_dir", None, "Label folder under root (voc only); default SegmentationClassAug, else "
                        "SegmentationClass.")
    flags.DEFINE_string("output_dir", "data", "Output folder.")
    flags.DEFINE_alias("out_dir", "output_dir")  # the flag's name before 2026-12
    flags.DEFINE_enum("dataset", datasets.DEFAULT, sorted(datasets.DATASETS), "The dataset (datasets.py): its "
                      "folder layout, classes and setups.")
    flags.DEFINE_string("train_list", None, f"Training id list, relative to root; default the dataset's "
                        f"({DEFAULT_TRAIN_LIST} for voc; ade20k: every image of images/training).")
    flags.DEFINE_string("val_list", None, f"Validation id list, relative to root; default the dataset's "
                        f"({DEFAULT_VAL_LIST} for voc; ade20k: every image of images/validation).")
    flags.DEFINE_bool("skip_bad", False, "Skip and count bad examples instead of stopping at the first.")
    flags.DEFINE_integer("workers", 2, "Reading/writing threads.", lower_bound=1)


def main(argv):
    """Runs prepare; a fault of the data (a missing or bad file, an empty list) ends it with one line naming the
    file and the fault, and exit status 2 (as a bad flag), not a traceback."""
    del argv
    f = flags.FLAGS
    if f.root is None or not os.path.isdir(f.root):  # a usage error (2), as main.py's; absl's own is 1
        expected = f"the {f.dataset.upper()} folder holding {datasets.get(f.dataset).layout.split_dirs('train')[0]}/"
        raise app.UsageError(f"--root or --voc_root: required, {expected}" if f.root is None
                             else f"--root/--voc_root: no such folder: {f.root} (expected {expected})", exitcode=2)
    try:
        prepare(f.root, f.output_dir, f.label_dir, f.workers, f.skip_bad, f.train_list, f.val_list, f.dataset)
    except (FileNotFoundError, ValueError) as e:
        print(f"prepare_data.py: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


def cli():
    """The console script `recall-prepare-data`."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    cli()
