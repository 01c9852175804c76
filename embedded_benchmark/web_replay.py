"""The embedded benchmark's web replay: Flickr-like "search results" per class, made into replay tfrecords.

`build_web_replay` writes <base>/web/{cc}/ (0000.jpg ..., manifest.json in the format of
flickr/download_flickr.py) for every class: the class's objects with a domain shift, plus wrong-class and
object-less images as web search returns; flickr's folders_to_tfrecords makes
<base>/data/replay_images/flickr/{cc}.tfrecord.
"""

import hashlib
import io
import json
import os

import numpy as np
from PIL import Image
from tqdm import tqdm

import artifacts
import data_loader
import paths
from embedded_benchmark import generator
from embedded_benchmark import world

WEB_MANIFEST = "manifest.json"  # flickr/download_flickr.py's MANIFEST (checked in build_web_replay)


def web_dir(base):
    """The parent of the class folders of the "search results": <base>/web (flickr's --images_dir)."""
    return os.path.join(base, "web")


def _shift_look(image, amount, rng):
    """A web-like colour cast, contrast change and noise for images without an object."""
    x = image.astype(np.float32)
    x = x * (1 + amount * rng.uniform(-0.35, 0.35, 3)) + amount * rng.uniform(-30, 30, 3)
    x = x.mean() + (1 - 0.4 * amount * rng.random()) * (x - x.mean()) + rng.normal(0, 8 * amount, x.shape)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def web_results(cfg, class_id):
    """The "search results" of one class, in order: list of (uint8 [S, S, 3], content, shown class).

    content is "class" (an object of class_id), "wrong_class" (an object of another class, shown class)
    or "no_object" (scenery only, shown class 0); the noisy ones sit at seeded random positions.
    """
    n = cfg.replay_per_class
    kinds = np.array(["class"] * n, dtype=object)
    order = np.random.default_rng([cfg.seed, 6, class_id]).permutation(n)
    n_wrong, n_empty = round(cfg.web_wrong_class * n), round(cfg.web_no_object * n)
    kinds[order[:n_wrong]] = "wrong_class"
    kinds[order[n_wrong:n_wrong + n_empty]] = "no_object"
    wcfg, results = cfg.world_config(), []
    for i, content in enumerate(kinds):
        rng = np.random.default_rng([cfg.seed, 7, class_id, i])
        shown = class_id
        if content == "wrong_class":
            shown = int(rng.choice([c for c in generator.CLASSES if c != class_id]))
        if content == "no_object":
            scenery = generator.background(cfg.image_size, rng)
            image, shown = _shift_look(scenery, cfg.web_domain_shift, rng), 0
        else:
            image = world.render_object(shown, cfg.image_size, rng, domain_shift=cfg.web_domain_shift,
                                        config=wcfg)[0]
        results.append((image, str(content), shown))
    return results


def _write_web_class(cfg, folder, class_id, keyword):
    """Writes one class's web folder: its images (JPEG) and manifest.json, as download_flickr.py does."""
    os.makedirs(folder, exist_ok=True)
    entries = []
    for i, (image, content, shown) in enumerate(web_results(cfg, class_id)):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=90)
        data, name = buf.getvalue(), f"{i:04d}.jpg"
        artifacts.write_bytes(os.path.join(folder, name), data)
        entries.append({"file": name, "photo_id": f"embedded-{class_id:02d}-{i:04d}", "owner": "embedded",
                        "owner_name": "embedded world", "license": "0",
                        "url": f"embedded://web/{class_id:02d}/{name}",
                        "sha1": hashlib.sha1(data).hexdigest(), "content": content, "shown_class": shown})
    manifest = {"class": class_id, "keyword": keyword, "next_page": 2, "images": entries, "rejected": {}}
    artifacts.write_json(os.path.join(folder, WEB_MANIFEST), manifest)


def web_class_complete(folder, n):
    """Whether a class's web folder holds its manifest and the n images it lists."""
    path = os.path.join(folder, WEB_MANIFEST)
    if not os.path.exists(path):
        return False
    with open(path) as f:
        names = [e["file"] for e in json.load(f)["images"]]
    return len(names) == n and all(os.path.exists(os.path.join(folder, name)) for name in names)


def build_web_replay(cfg, base):
    """Writes the web folders (skipping complete classes) and turns them into the flickr replay tfrecords."""
    from flickr import download_flickr  # pylint: disable=g-import-not-at-top  (flickrapi)
    assert download_flickr.MANIFEST == WEB_MANIFEST, download_flickr.MANIFEST
    images_dir, data = web_dir(base), os.path.join(base, paths.DATA_DIR)
    todo = []
    for c in tqdm(generator.CLASSES, desc="web folders", leave=False):
        folder = paths.web_class_dir(images_dir, c)
        if not web_class_complete(folder, cfg.replay_per_class):
            _write_web_class(cfg, folder, c, world.DATASET.web_keywords[c])
            todo.append(c)
        elif data_loader.framed_record_count(paths.replay_file(data, "flickr", c)) != cfg.replay_per_class:
            todo.append(c)
    if todo:
        download_flickr.folders_to_tfrecords(images_dir, paths.replay_dir(data, "flickr"), todo)
    n_wrong, n_empty = round(cfg.web_wrong_class * cfg.replay_per_class), round(cfg.web_no_object
                                                                               * cfg.replay_per_class)
    return {"images_per_class": cfg.replay_per_class, "wrong_class_per_class": n_wrong,
            "no_object_per_class": n_empty}
