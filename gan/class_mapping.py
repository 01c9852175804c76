"""GAN replay's class mapping: every target class to a generator class (gan/generate_gan.py uses it).

Class mapping, as in the paper: a classifier over the generator's classes (EfficientNet-B2 from TF-Hub for
ImageNet) scores every training image that contains the target class (the whole image; an image with
several classes counts for each); the class maps to the generator class with the highest mean softmax
confidence. The original repository holds no code for this step (its `generate_gan.py` samples all 1000
ImageNet classes); the rule is the paper's. `--mapping_images_per_class N` caps the images scored per class
(a faster approximation; 0, the default, scores all of them). The mapping (with top-5 and confidences) is
written to JSON (with the dataset it was made for: another dataset's mapping, and so its folder, is refused); a
mapping file given by the user overrides it, class by class.

Mapping report: beside the JSON, `<mapping>.md` (class_mapping.md by default) tabulates every class (id, name,
generator class, mean confidence, margin over the second generator class, images scored, replay source), weakest
first, and the log shows the same table. Many ADE20K classes are "stuff" (wall, sky, floor) that no ImageNet class
draws: `--min_confidence X` gives no GAN record to a class whose mean confidence is below X, and
`--exclude_classes` to the classes named; both are listed in the report and the log as "excluded: use web
replay", with the binding that reads their replay from the web source instead
(`TrainManager.web_replay_classes = [...]`). An excluded class's record of an earlier run is removed, so that no
experiment reads it.

Module contract (checked, with errors naming the module and the expected inputs):
- classifier: a signature with input `images` (or a single input) float [N, H, W, 3] in [0, 1]; output
  ("default", "logits", or the only output) [N, K] logits (or probabilities), or [N, K + 1] with a
  background class first (TF-Slim style), which is dropped.

The signature helpers (_signatures, _input_specs, _pick_output) serve generate_gan.Generator as well.
"""

import json
import math
import os

from absl import logging
import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_hub as hub
from tqdm import tqdm

import artifacts
import data_loader
import datasets
import paths

DEFAULT_CLASSIFIER_SIZE = 260  # EfficientNet-B2's default input size.


def _input_specs(signature):
    """Returns {input name: tf.TensorSpec} of a concrete function (keyword inputs)."""
    args, kwargs = signature.structured_input_signature
    specs = dict(kwargs)
    for i, spec in enumerate(args):
        specs[getattr(spec, "name", None) or "arg%d" % i] = spec
    return specs


def _signatures(module):
    """Yields (name, concrete function), "default" first, then "serving_default", then the rest."""
    sigs = getattr(module, "signatures", {}) or {}
    names = sorted(sigs.keys(), key=lambda n: (n != "default", n != "serving_default", n))
    for name in names:
        yield name, sigs[name]


def _pick_output(outputs, preferred, handle):
    """Returns the key of the output to use among `preferred`, or the only one."""
    for key in preferred:
        if key in outputs:
            return key
    if len(outputs) == 1:
        return next(iter(outputs))
    raise ValueError("module %r: cannot choose an output among %s; expected one of %s or a single output"
                     % (handle, sorted(outputs), list(preferred)))


class Classifier:
    """An image classifier over the generator's classes, loaded with hub.load."""

    def __init__(self, handle, image_size=0, outputs="logits"):
        """Loads the classifier.

        Args:
          handle: local directory or TF-Hub handle.
          image_size: square input size; 0 = the module's static input size, else 260.
          outputs: "logits" (softmax applied here) or "probabilities".
        """
        if outputs not in ("logits", "probabilities"):
            raise ValueError("classifier outputs must be 'logits' or 'probabilities', got %r" % (outputs,))
        self.handle, self.outputs = handle, outputs
        module = hub.load(handle)
        self._module = module
        for name, sig in _signatures(module):
            specs = _input_specs(sig)
            if "images" in specs or len(specs) == 1:
                break
        else:
            raise ValueError("classifier %r: no signature with an 'images' input or a single input (found %s)"
                             % (handle, list(getattr(module, "signatures", {}) or {})))
        self._sig = sig
        self._in = "images" if "images" in specs else next(iter(specs))
        shape = specs[self._in].shape
        if shape.rank != 4:
            raise ValueError("classifier %r: input %r must be [N, H, W, 3], got %s" % (handle, self._in, shape))
        static = shape[1] if shape[1] is not None and shape[1] == shape[2] else None
        self.image_size = int(image_size or static or DEFAULT_CLASSIFIER_SIZE)
        self._out = _pick_output(sig.structured_outputs, ("default", "logits", "probabilities"), handle)
        logging.info("classifier %s: signature %r, input %r at %d px, output %r", handle, name, self._in,
                     self.image_size, self._out)

    def __call__(self, images):
        """Scores images.

        Args:
          images: list of uint8 [H, W, 3] arrays (any sizes).

        Returns:
          float32 numpy [N, n_outputs] probabilities.
        """
        batch = tf.stack([tf.image.resize(tf.cast(im, tf.float32) / 255.0,
                                          [self.image_size, self.image_size], antialias=True)
                          for im in images])
        out = self._sig(**{self._in: batch})[self._out]
        out = tf.cast(tf.reshape(out, [len(images), -1]), tf.float32)
        return (tf.nn.softmax(out) if self.outputs == "logits" else out).numpy()


def iter_tfrecord_images(tfrecords, dataset=datasets.DEFAULT):
    """Yields (uint8 [H, W, 3] image, set of label values) from labelled tfrecords of `dataset` (its label values,
    0..n_classes and void, are checked: ADE20K's reach 150)."""
    n_classes = datasets.get(dataset).n_classes + 1
    for path in tfrecords:
        for ex in data_loader.load_tfrecord([path], "validation+", n_classes=n_classes):
            yield ex["rgb_input"].numpy(), set(np.unique(ex["label"].numpy()).tolist())


def iter_folder_images(folder, classes):
    """Yields (uint8 [H, W, 3] image, {class}) from `folder/{cc}/*` (paths.web_class_dir: 01, 20, 101)."""
    for c in classes:
        sub = paths.web_class_dir(folder, c)
        if not os.path.isdir(sub):
            raise FileNotFoundError("mapping folder %r has no class folder %r (expected folder/%s/*.jpg)"
                                    % (folder, sub, paths.class_folder_name(c)))
        for name in sorted(os.listdir(sub)):
            if name.lower().endswith((".jpg", ".jpeg", ".png")):
                with Image.open(os.path.join(sub, name)) as im:
                    yield np.asarray(im.convert("RGB")), {c}


def _cap(images_per_class):
    """The per-class image cap: 0 or None means no cap (every image, the original's rule)."""
    if images_per_class is None or images_per_class == 0:
        return math.inf
    if isinstance(images_per_class, bool) or not isinstance(images_per_class, int) or images_per_class < 0:
        raise ValueError("mapping images per class must be an int >= 0 (0 = every image), got %r"
                         % (images_per_class,))
    return images_per_class


def default_mapping_tfrecords(dataset=datasets.DEFAULT, data=paths.DATA_DIR):
    """The labelled images the classifier scores by default: the JOINT first-step file (every class) of the
    dataset's first protocol in the data folder `data`, which prepare_data writes.

    VOC: data/training_first_step/train_sequential_1-20.tfrecord; ADE20K, whose only protocol is overlapped:
    <data>/training_first_step/train_overlapped_1-150.tfrecord. A dataset without a JOINT setup: every class.
    """
    record = datasets.get(dataset)
    joint = datasets.setups(record).get("JOINT", {0: record.classes})[0]
    return (paths.first_step_file(data, record.protocols[0], joint),)


DEFAULT_MAPPING_TFRECORDS = default_mapping_tfrecords()


def compute_class_mapping(classifier, classes, labelled_images, n_generator_classes,
                          images_per_class=0, batch_size=16, dataset=datasets.DEFAULT):
    """Maps each target class to the generator class of highest mean classifier confidence.

    The mean is over the softmax probabilities of every image that contains the class (the original's rule),
    or of its first `images_per_class` images when capped.

    Args:
      classifier: a Classifier (or any callable list of uint8 images -> [N, K or K+1] probabilities).
      classes: target class ids.
      labelled_images: iterable of (uint8 [H, W, 3], set of class ids in the image).
      n_generator_classes: K.
      images_per_class: 0 or None (default): every image of the class is scored; N > 0: at most N.
      batch_size: classifier batch size.
      dataset: the dataset whose class names the log shows.

    Returns:
      {class: {"generator_class", "top5": [{"class", "confidence"}], "n_images", "source": "classifier"}}.
    """
    cap = _cap(images_per_class)
    sums = {c: np.zeros(n_generator_classes, np.float64) for c in classes}
    counts = {c: 0 for c in classes}  # images taken (scored or waiting in `pending`)
    pending = []  # (image, classes it counts for)

    def flush():
        probs = np.asarray(classifier([im for im, _ in pending]))
        if probs.shape[1] == n_generator_classes + 1:
            probs = probs[:, 1:]  # TF-Slim style classifiers put a background class first.
        elif probs.shape[1] != n_generator_classes:
            raise ValueError("classifier outputs %d classes, the generator has %d (expected %d or %d)"
                             % (probs.shape[1], n_generator_classes, n_generator_classes,
                                n_generator_classes + 1))
        if not np.isfinite(probs).all():
            raise ValueError("classifier %r: non-finite (NaN or Inf) confidences for images of classes %s"
                             % (getattr(classifier, "handle", classifier),
                                sorted({c for _, wanted in pending for c in wanted})))
        for p, (_, wanted) in zip(probs, pending):
            for c in wanted:
                sums[c] += p
        pending.clear()

    with tqdm(total=None if cap == math.inf else cap * len(classes), desc="class mapping") as bar:
        for image, present in labelled_images:
            wanted = [c for c in classes if c in present and counts[c] < cap]
            if wanted:
                pending.append((image, wanted))
                for c in wanted:
                    counts[c] += 1
                bar.update(len(wanted))
            if len(pending) >= batch_size:
                flush()
            if all(counts[c] >= cap for c in classes):
                break
        if pending:
            flush()
    mapping = {}
    for c in classes:
        if counts[c] == 0:
            raise ValueError("class %d: no training image found to score for the class mapping" % c)
        mean = sums[c] / counts[c]
        top = np.argsort(-mean)[:5]
        mapping[c] = {"generator_class": int(top[0]), "n_images": counts[c], "source": "classifier",
                      "top5": [{"class": int(k), "confidence": float(mean[k])} for k in top]}
        logging.info("class %d (%s) -> generator class %d (mean confidence %.3f over %d images)", c,
                     datasets.get(dataset).class_name(c), top[0], mean[top[0]], counts[c])
    return mapping


def _load_json(path, what):
    """Parses a JSON file; ValueError naming the file when it is not valid JSON."""
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError("%s %r is not valid JSON (%s)" % (what, path, e)) from None


def read_mapping_file(path, n_generator_classes, dataset=datasets.DEFAULT):
    """Reads a user mapping: {"classes": {cls: {"generator_class": k}}} (our format) or {cls: k}.

    Class keys are ids ("1") or the dataset's class names (VOC: "aeroplane"); values are JSON integers (not
    true/false, 1.5 or "3").

    Returns:
      {class id: generator class}.

    Raises:
      FileNotFoundError: no such file. ValueError (naming the file, and the class when one is at fault): not
      JSON, not an object, a class that is neither an id nor a name of the dataset, an id outside
      1..n_classes, a class given twice, a value that is not an int in [0, n_generator_classes).
    """
    if not os.path.exists(path):
        raise FileNotFoundError("mapping file %r not found" % path)
    data = _load_json(path, "mapping file")
    entries = data.get("classes", data) if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise ValueError("mapping file %r: expected a JSON object {class: generator class}" % path)
    record = datasets.get(dataset)
    mapping, keys, names = {}, {}, record.class_names
    for key, value in entries.items():
        c = names.index(key) if key in names else None
        if c is None:
            try:
                c = int(key)
            except ValueError:
                raise ValueError("mapping file %r: class %r is neither an id nor a %s class name"
                                 % (path, key, record.name.upper())) from None
        if not 1 <= c <= record.n_classes:
            raise ValueError("mapping file %r: class %r is not an object class of %s; expected an id in 1..%d or "
                             "a class name" % (path, key, record.name, record.n_classes))
        if c in keys:
            raise ValueError("mapping file %r: class %d is given twice (as %r and %r)"
                             % (path, c, keys[c], key))
        keys[c] = key
        k = value.get("generator_class") if isinstance(value, dict) else value
        # bool is a subclass of int in Python: JSON true would otherwise map to generator class 1.
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n_generator_classes:
            raise ValueError("mapping file %r: class %r maps to %s, expected an int in [0, %d)"
                             % (path, key, json.dumps(k), n_generator_classes))
        mapping[c] = k
    return mapping


def resolve_mapping(generator, classes, mapping_output, classifier_handle=None, mapping_file=None,
                    mapping_tfrecords=None, mapping_folder=None,
                    images_per_class=0, classifier_image_size=0, classifier_outputs="logits",
                    batch_size=16, dataset=datasets.DEFAULT, min_confidence=0.0, exclude_classes=()):
    """Returns {class: generator class} of the classes that get GAN replay; writes the full mapping to
    `mapping_output` (JSON) and its report beside it (report_path: the confidence table, weakest first).

    Classifier entries already in `mapping_output` (same dataset and generator size) are reused, unless a
    classifier is given and they were computed with another image cap (`images_per_class`, 0 = every image;
    files without the field were made with the former cap of 100); missing classes are computed with the
    classifier; entries of the user's `mapping_file` override both. mapping_tfrecords None: the dataset's
    (default_mapping_tfrecords).

    Exclusion: the classes of `exclude_classes` (never scored: they need no mapping), and those whose classifier
    mapping has a mean confidence below `min_confidence` (user mappings have none and stay), are left out of the
    returned mapping and named in the log, the report and the JSON's "excluded" (their replay is the web's:
    TrainManager.web_replay_classes).

    Raises:
      ValueError: `mapping_output` made for another dataset, min_confidence outside [0, 1], exclude_classes not
        among `classes`, or a class left without a generator class (no classifier, no mapping file entry).
    """
    record = datasets.get(dataset)
    if isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float)) or \
            not 0.0 <= min_confidence <= 1.0:
        raise ValueError("min_confidence must be a number in [0, 1] (a mean softmax confidence), got %r"
                         % (min_confidence,))
    exclude = set(exclude_classes or ())
    if not exclude <= set(classes):
        raise ValueError("exclude_classes %s are not among the classes generated %s"
                         % (sorted(exclude - set(classes)), list(classes)))
    if mapping_tfrecords is None:
        mapping_tfrecords = default_mapping_tfrecords(record)
    cap = 0 if _cap(images_per_class) == math.inf else images_per_class
    entries = {}
    if os.path.exists(mapping_output):
        old = _load_json(mapping_output, "mapping output")
        if not isinstance(old, dict) or not isinstance(old.get("classes", {}), dict):
            raise ValueError("mapping output %r: expected the JSON object this script writes; remove the "
                             "file to recompute the mapping" % mapping_output)
        made_for = old.get("dataset", datasets.VOC.name)  # files without the field: VOC, the only one then
        if made_for != record.name:
            raise ValueError("mapping output %r was made for dataset %r, not %r: its folder holds that dataset's "
                             "replay; give another --output_dir (or --data_dir, e.g. the %s data folder)"
                             % (mapping_output, made_for, record.name, record.name))
        old_cap = old.get("images_per_class", 100)  # files without the field: the former default cap
        if old.get("generator_classes") == generator.n_classes:
            entries = {int(c): e for c, e in old.get("classes", {}).items()
                       if isinstance(e, dict) and e.get("source") == "classifier"}
        if entries and old_cap != cap:
            if classifier_handle:
                logging.info("class mapping: %s was computed with %s images per class, %s asked: recomputed",
                             mapping_output, old_cap or "all", cap or "all")
                entries = {}
            else:
                logging.warning("class mapping: reused %s, computed with %s images per class (%s asked; give "
                                "--classifier to recompute)", mapping_output, old_cap or "all", cap or "all")
    user = read_mapping_file(mapping_file, generator.n_classes, record) if mapping_file else {}
    todo = [c for c in classes if c not in entries and c not in user and c not in exclude]
    if todo:
        if not classifier_handle:
            raise ValueError("classes %s have no generator class: give --classifier or a --mapping_file "
                             "that covers them" % todo)
        classifier = Classifier(classifier_handle, classifier_image_size, classifier_outputs)
        if mapping_folder:
            images = iter_folder_images(mapping_folder, todo)
        else:
            missing = [p for p in mapping_tfrecords if not os.path.exists(p)]
            if missing or not mapping_tfrecords:
                raise FileNotFoundError("mapping tfrecords not found: %s (give --mapping_tfrecords or "
                                        "--mapping_folder)" % (missing or "none given"))
            images = iter_tfrecord_images(mapping_tfrecords, record)
        entries.update(compute_class_mapping(classifier, todo, images, generator.n_classes,
                                             images_per_class, batch_size, record))
    elif entries or user:
        logging.info("class mapping: reused %s", mapping_output if entries else mapping_file)
    for c, k in user.items():
        entries[c] = {"generator_class": k, "source": "user"}
    excluded = excluded_classes(entries, classes, min_confidence, exclude)
    doc = {"dataset": record.name, "generator": str(generator.handle), "generator_classes": generator.n_classes,
           "classifier": classifier_handle or None, "images_per_class": cap,
           "classes": {str(c): dict(entries[c], name=record.class_name(c)) for c in sorted(entries)},
           "min_confidence": min_confidence, "excluded": {str(c): excluded[c] for c in sorted(excluded)}}
    artifacts.write_json(mapping_output, doc)
    write_mapping_report(mapping_output, doc, classes, record)
    return {c: entries[c]["generator_class"] for c in classes if c not in excluded}


def _confidence(entry):
    """(mean confidence of the chosen generator class, margin over the second) of a mapping entry; None for
    what it lacks (a user mapping has neither; a generator of one class has no margin)."""
    top = (entry or {}).get("top5") or []
    confidence = top[0]["confidence"] if top else None
    return confidence, (confidence - top[1]["confidence"] if len(top) > 1 else None)


def excluded_classes(entries, classes, min_confidence=0.0, exclude_classes=()):
    """The target classes that get no GAN record, and why: {class: reason}.

    Args:
      entries: {class: mapping entry} (compute_class_mapping's, or a user's {"generator_class", "source"}).
      classes: the target classes.
      min_confidence: a class whose classifier mapping has a mean confidence below it is excluded (a user mapping,
        which has no confidence, never is).
      exclude_classes: classes excluded whatever their mapping.
    """
    excluded = {}
    for c in classes:
        confidence, _ = _confidence(entries.get(c))
        if c in exclude_classes:
            excluded[c] = "exclude_classes"
        elif confidence is not None and confidence < min_confidence:
            excluded[c] = "confidence %.3f < min_confidence %.3f" % (confidence, min_confidence)
    return excluded


def report_path(mapping_output):
    """The mapping report beside a mapping JSON: class_mapping.json -> class_mapping.md."""
    stem, ext = os.path.splitext(mapping_output)
    return (stem if ext.lower() != ".md" else mapping_output) + ".md"


def mapping_report(doc, classes, dataset=datasets.DEFAULT, mapping_output="class_mapping.json"):
    """The mapping's confidence per class as Markdown, weakest first.

    Args:
      doc: the mapping JSON resolve_mapping writes ("classes", "excluded", "min_confidence", ...).
      classes: the target classes (the rows).
      dataset: whose class names the rows show.
      mapping_output: the JSON's path (the report names it).

    Returns:
      (the whole report, its table alone): str, str. Rows are sorted by mean confidence, lowest first; user
      mappings (no confidence) and excluded classes without a mapping come last, by class.
    """
    record = datasets.get(dataset)
    entries, excluded = doc["classes"], {int(c): r for c, r in doc.get("excluded", {}).items()}

    def fmt(value):
        return "-" if value is None else "%.3f" % value

    rows = []
    for c in classes:
        entry = entries.get(str(c))
        confidence, margin = _confidence(entry)
        if c in excluded:
            replay = "excluded: use web replay (%s)" % excluded[c]
        else:
            replay = "GAN" + (" (user mapping)" if entry and entry.get("source") == "user" else "")
        rows.append(((confidence is None, confidence or 0.0, c),
                     "| %d | %s | %s | %s | %s | %s | %s |"
                     % (c, record.class_name(c), "-" if entry is None else entry["generator_class"], fmt(confidence),
                        fmt(margin), (entry or {}).get("n_images", "-"), replay)))
    table = "\n".join(["| class | name | generator class | mean confidence | margin | images | replay |",
                       "|---:|:---|---:|---:|---:|---:|:---|"] + [row for _, row in sorted(rows)])
    cap = doc.get("images_per_class") or 0
    names = ", ".join("%d (%s)" % (c, record.class_name(c)) for c in sorted(excluded))
    lines = ["# GAN class mapping of %s: confidence per class" % record.name, "",
             "Generator `%s` (%d classes); classifier `%s`, %s of each class; mapping `%s`."
             % (doc["generator"], doc["generator_classes"], doc.get("classifier") or "none (user or reused mapping)",
                "the first %d training images" % cap if cap else "every training image",
                mapping_output),
             "Mean confidence: the classifier's mean softmax confidence in the chosen generator class over the "
             "class's training images; margin: its lead over the second generator class. Weakest first; minimum "
             "confidence %s." % (fmt(doc.get("min_confidence")) if doc.get("min_confidence") else "none"), "",
             table, ""]
    if excluded:
        lines += ["Excluded (no GAN record; use web replay): %s. To read their replay from the web source "
                  "(flickr/download_flickr.py) in a GAN experiment, bind in its config:" % names, "",
                  "    TrainManager.web_replay_classes = [%s]" % ", ".join(map(str, sorted(excluded))), ""]
    else:
        lines += ["Excluded: none (every class gets GAN replay).", ""]
    return "\n".join(lines), table


def write_mapping_report(mapping_output, doc, classes, dataset=datasets.DEFAULT):
    """Writes mapping_report beside the mapping JSON (report_path) and logs its table and the excluded classes."""
    record = datasets.get(dataset)
    path = report_path(mapping_output)
    report, table = mapping_report(doc, classes, record, mapping_output)
    artifacts.write_text(path, report)
    logging.info("class mapping of %s, weakest first (report: %s):\n%s", record.name, path, table)
    excluded = {int(c): r for c, r in doc.get("excluded", {}).items()}
    if excluded:
        logging.warning("GAN replay: %d class(es) excluded, no GAN record (use web replay): %s. Bind "
                        "TrainManager.web_replay_classes = [%s] in the experiment's config (report: %s)",
                        len(excluded), "; ".join("%d (%s): %s" % (c, record.class_name(c), excluded[c])
                                                 for c in sorted(excluded)),
                        ", ".join(map(str, sorted(excluded))), path)
