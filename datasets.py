"""The datasets and their incremental setups, as data: one record per dataset, one table of setups.

`DATASETS` holds a `Dataset` record per dataset (its classes, colours, void label, folder layout, web search
keywords and default GAN classes); `SETUPS` is the table dataset -> setup -> step -> class list, the shape of
fcdl94/MiB's `tasks.py`. Every other module asks these for a class count, a class name or a setup: none keeps its
own. Pascal VOC 2012 ("voc"): its setups are the original's eight test types, in the original's order
(`TrainManager.TESTS`: the position is the `T{index}` of the artifact names). ADE20K ("ade20k", the SceneParsing
benchmark's 150 classes): the setups of fcdl94/MiB and arthurdouillard/CVPR2021_PLOP in their default class order,
on the protocol and validation those codebases use (see ADE20K below).

Classes are numbered 1..n_classes in the dataset's order; background, 0, is in no step's list (every network
predicts it). A step adds the classes that follow the previous step's, which is what the original's names can
say (`train_disjoint_16-20`, helpers `_C11-15`); `check_setup` holds every setup to it.
"""
import dataclasses
import functools
import os
import types

import numpy as np

VOID = 255  # the label of void pixels (object borders, unlabelled): ignored by the loss and the metrics


def voc_colour_map():
    """The Pascal VOC colour map: uint8 [256, 3] (void, 255, is light grey (224, 224, 192))."""
    palette = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


@functools.lru_cache(maxsize=None)
def _colours(colour_map):
    palette = colour_map()
    palette.setflags(write=False)  # shared by every caller
    return palette


@dataclasses.dataclass(frozen=True)
class FolderLayout:
    """Where a dataset's images, labels and image id lists live under its root folder (prepare_data reads it).

    An example `<id>` of the training split is `<root>/<image_dir>/<id><image_ext>` with the label
    `<label folder>/<id><label_ext>`, the label folder being the first of `label_dirs` that exists (or the one the
    user names); the validation split's are under `val_image_dir` and `val_label_dirs` when those are set (ADE20K's
    `images/validation`), else the same folders (VOC). The ids are the lines of `train_list` and `val_list`
    (relative to the root), or, for a list of None, the names of every `<image_ext>` file of the split's image
    folder, sorted (ADE20K, which has no lists: MiB's `sorted(os.listdir(...))`).
    """
    image_dir: str
    label_dirs: tuple
    train_list: object  # str, or None: every image of the split's folder
    val_list: object
    image_ext: str = ".jpg"
    label_ext: str = ".png"
    val_image_dir: object = None  # None: image_dir
    val_label_dirs: object = None  # None: label_dirs

    def split_dirs(self, split):
        """(image folder, label folder candidates) of "train" or "val", relative to the root."""
        if split not in ("train", "val"):
            raise ValueError(f"unknown split {split!r}; expected 'train' or 'val'")
        if split == "val" and self.val_image_dir is not None:
            return self.val_image_dir, tuple(self.val_label_dirs or self.label_dirs)
        return self.image_dir, tuple(self.label_dirs)

    def split_list(self, split):
        """The id list of "train" or "val" (relative to the root), or None: every image of the split's folder."""
        return self.train_list if split == "train" else self.val_list

    def example_paths(self, image_dir, label_dir, image_id):
        """(image path, label path) of one example, given the image and label folders."""
        return (os.path.join(image_dir, image_id + self.image_ext),
                os.path.join(label_dir, image_id + self.label_ext))


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """One dataset's facts.

    Attributes:
      name: its key in DATASETS and SETUPS, e.g. "voc".
      class_names: class id -> name, background at 0 (n_classes + 1 names).
      colour_map: () -> uint8 [256, 3], the colour of every label value (`palette()`; void included).
      layout: its FolderLayout.
      web_keywords: {class id: web search text} of every object class (flickr/download_flickr.py).
      gan_classes: the classes the GAN replay generates by default (gan/generate_gan.py).
      void: the label of ignored pixels.
      protocols: the protocols the dataset's experiments run (prepare_data writes their files; a config binding
        another is an error): VOC the original's three, ADE20K "overlapped" only (as MiB's and PLOP's ADE runs).
      validation_group: which val_k file holds a validation image: "highest" (its highest object class, the
        original's on VOC: a step validates on the images of seen classes only) or "lowest" (its lowest object
        class: a step's val_1..val_n is every image with a seen class, MiB's and PLOP's ADE test set).
      validation_void: label values written as void (ignored) in the validation files: ADE20K's 0 ("other", no
        class), which MiB and PLOP train as background but leave out of every test.
    """
    name: str
    class_names: tuple
    colour_map: object
    layout: FolderLayout
    web_keywords: types.MappingProxyType
    gan_classes: tuple
    void: int = VOID
    protocols: tuple = ("sequential", "disjoint", "overlapped")
    validation_group: str = "highest"
    validation_void: tuple = ()

    def __post_init__(self):
        classes = set(range(1, self.n_classes + 1))
        if set(self.web_keywords) != classes or not set(self.gan_classes) <= classes:
            raise ValueError(f"dataset {self.name!r}: web keywords for classes {sorted(self.web_keywords)} and GAN "
                             f"classes {list(self.gan_classes)}; expected keywords for 1..{self.n_classes} and GAN "
                             f"classes among them")
        if self.validation_group not in ("highest", "lowest"):
            raise ValueError(f"dataset {self.name!r}: validation_group {self.validation_group!r}; expected "
                             f"'highest' or 'lowest'")
        if not 0 < self.n_classes < self.void:
            raise ValueError(f"dataset {self.name!r}: {self.n_classes} classes do not fit below the void label "
                             f"{self.void}")

    def __repr__(self):
        return f"Dataset({self.name!r}, {self.n_classes} classes)"

    @property
    def n_classes(self):
        """The object classes (background excluded): 20 for VOC."""
        return len(self.class_names) - 1

    @property
    def classes(self):
        """The object class ids, 1..n_classes."""
        return list(range(1, self.n_classes + 1))

    def palette(self):
        """uint8 [256, 3]: the colour of every label value (read-only, computed once)."""
        return _colours(self.colour_map)

    def class_name(self, c):
        """The name of class id c, or str(c) outside the dataset."""
        return self.class_names[c] if 0 <= c <= self.n_classes else str(c)


VOC = Dataset(
    name="voc",
    class_names=("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
                 "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
                 "tvmonitor"),
    colour_map=voc_colour_map,
    layout=FolderLayout(image_dir="JPEGImages", label_dirs=("SegmentationClassAug", "SegmentationClass"),
                        train_list=os.path.join("ImageSets", "Segmentation", "train.txt"),
                        val_list=os.path.join("ImageSets", "Segmentation", "val.txt")),
    # the original's Flickr search keywords (SPEC.md, "Replay generation")
    web_keywords=types.MappingProxyType({
        1: "airplane", 2: "bicycle", 3: "bird", 4: "boat", 5: "bottle", 6: "bus", 7: "car", 8: "cat", 9: "chair",
        10: "cow", 11: "dining table", 12: "dog", 13: "horse", 14: "motorbike", 15: "person", 16: "potted plant",
        17: "sheep", 18: "sofa", 19: "train", 20: "monitor"}),
    gan_classes=tuple(range(1, 21)),
)

# ADE20K, as fcdl94/MiB's dataset/ade.py (commit 3da2fe3) reads ADEChallengeData2016: class ids 0..150 in the
# annotations, 0 ("other": pixels of no class of the 150) trained as background and left out of every test
# (MiB maps it to its masking value: 0 when training, 255 when testing). The names are MiB's list (the first
# name of each class of the benchmark's objectInfo150), 0 renamed "background".
ADE20K_CLASS_NAMES = (
    "background", "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag")
# Web search keywords: the names, cleaned as the VOC list is (the original searched "airplane" for "aeroplane"):
# where a first name alone is ambiguous or rare on the web, another name of the same ADE class
# (objectInfo150's synonyms) is searched instead.
ADE20K_KEYWORD_EDITS = {
    "base": "pedestal", "case": "display case", "bar": "bar counter", "hovel": "shack", "light": "light source",
    "booth": "booth cubicle", "land": "ground soil", "buffet": "sideboard", "washer": "washing machine",
    "plaything": "toy", "step": "stair step", "tank": "storage tank", "trade name": "brand name logo",
    "pot": "flowerpot", "screen": "projection screen", "hood": "exhaust hood", "ashcan": "trash can",
    "glass": "drinking glass", "television receiver": "television", "apparel": "clothes", "minibike": "motorbike",
}

ADE20K = Dataset(
    name="ade20k",
    class_names=ADE20K_CLASS_NAMES,
    colour_map=voc_colour_map,  # ADE20K's labels drawn with VOC's colour map (only pictures use it)
    layout=FolderLayout(image_dir=os.path.join("images", "training"),
                        label_dirs=(os.path.join("annotations", "training"),),
                        train_list=None, val_list=None,
                        val_image_dir=os.path.join("images", "validation"),
                        val_label_dirs=(os.path.join("annotations", "validation"),)),
    web_keywords=types.MappingProxyType({c: ADE20K_KEYWORD_EDITS.get(name, name)
                                         for c, name in enumerate(ADE20K_CLASS_NAMES) if c}),
    gan_classes=tuple(range(1, 151)),
    protocols=("overlapped",),
    validation_group="lowest",
    validation_void=(0,),
)

DATASETS = {VOC.name: VOC, ADE20K.name: ADE20K}
DEFAULT = VOC.name  # the dataset of the original's configs


def in_order(*sizes):
    """{0: [1..sizes[0]], 1: [the next sizes[1] classes], ...}: a setup that adds classes in order."""
    steps, first = {}, 1
    for step, size in enumerate(sizes):
        steps[step] = list(range(first, first + size))
        first += size
    return steps


# dataset -> setup -> step -> the classes the step adds. VOC's setups are the original's test types, in its order
# (TrainManager.TEST_0 .. TEST_7: the index is the T{index} of the names).
SETUPS = {
    "voc": {
        "ADD_ONE_ONE_TIME": in_order(19, 1),                # 19-1
        "ADD_FIVE_ONE_TIME": in_order(15, 5),               # 15-5
        "ADD_FIVE_TWO_TIMES": in_order(10, 5, 5),           # 10-5-5
        "ADD_ONE_FIVE_TIMES": in_order(15, 1, 1, 1, 1, 1),  # 15-1
        "ADD_TEN_ONE_TIME": in_order(10, 10),               # 10-10
        "ADD_TWO_FIVE_TIMES": in_order(10, 2, 2, 2, 2, 2),  # 10-2
        "ADD_ONE_TEN_TIMES": in_order(10, *[1] * 10),       # 10-1
        "JOINT": in_order(20),                              # every class at once (the upper bound)
    },
    # MiB's tasks.py (fcdl94/MiB, commit 3da2fe3: "100-50", "100-10", "50") and PLOP's (arthurdouillard/
    # CVPR2021_PLOP, commit 341eecb: the same and "100-5"), in ADE20K's class order (their default order; the
    # "b"/"c" permutations are not setups here: every setup adds classes in order). MiB's "50" is 50-50.
    "ade20k": {
        "100-50": in_order(100, 50),
        "100-10": in_order(100, *[10] * 5),
        "50-50": in_order(50, 50, 50),
        "100-5": in_order(100, *[5] * 10),
        "JOINT": in_order(150),
    },
}


def get(name):
    """The Dataset record of `name` (a record is returned as it is); ValueError naming the known ones."""
    if isinstance(name, Dataset):
        return name
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def setups(dataset):
    """{setup: {step: classes}} of a dataset (name or record), in the table's order."""
    return SETUPS[get(dataset).name]


def check_setup(dataset, setup, steps):
    """Raises ValueError unless `steps` ({step: classes}) numbers its steps 0..n-1 and adds the dataset's classes
    in order from 1 (the names of the artifacts can say only that), within 1..n_classes."""
    record = get(dataset)
    flat = [c for k in sorted(steps) for c in steps[k]]
    if sorted(steps) != list(range(len(steps))) or not all(steps.values()) or \
            flat != list(range(1, len(flat) + 1)) or len(flat) > record.n_classes:
        raise ValueError(f"setup {setup!r} of {record.name}: steps {steps}; expected steps 0, 1, ... that add "
                         f"classes 1..{record.n_classes} in order, none empty")


def tests(dataset=DEFAULT):
    """[(setup, [classes added per step])] in the table's order: TrainManager.TESTS's shape."""
    return [(name, [len(steps[k]) for k in sorted(steps)]) for name, steps in setups(dataset).items()]


def step_classes(dataset, setup, step):
    """The classes `step` of `setup` adds (MiB's get_task_labels without the old ones)."""
    table = setups(dataset)
    if setup not in table:
        raise ValueError(f"unknown setup {setup!r} of {get(dataset).name}; expected one of {list(table)}")
    if step not in table[setup]:
        raise ValueError(f"setup {setup!r} has steps 0..{len(table[setup]) - 1}, not {step}")
    return list(table[setup][step])


def class_groups(dataset=DEFAULT):
    """The class groups of every setup of a dataset, i.e. the training files prepare_data writes.

    Returns:
      (first-step groups, incremental groups): sorted lists of class lists, e.g. [1..10], [1..15], ... and
      [11], [11, 12], [11..15], ... Helper groups are the groups of all but the last incremental step of their
      setup, so they are among the incremental groups.
    """
    first, incremental = set(), set()
    for steps in setups(dataset).values():
        for step, classes in steps.items():
            (incremental if step else first).add(tuple(classes))
    return [list(g) for g in sorted(first)], [list(g) for g in sorted(incremental)]


for _name, _setups in SETUPS.items():
    for _setup, _steps in _setups.items():
        check_setup(_name, _setup, _steps)
