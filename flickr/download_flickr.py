"""Web replay: download Flickr images per class, then turn the class folders into replay tfrecords.

  # 1. download (credentials from the environment only, never from a flag or a file)
  export FLICKR_API_KEY=... FLICKR_API_SECRET=...
  python flickr/download_flickr.py --images_per_class=1000
  # 2. convert data/replay_images/flickr/images/{cc}/ into data/replay_images/flickr/{cc}.tfrecord
  python flickr/download_flickr.py --to_tfrecord

Searches every class keyword (KEYWORDS, as the original; `--keywords=20=tv monitor` edits one) with
`flickr.photos.search`, relevance order, medium-size URLs (`url_c`), page by page until N usable images
are kept. A payload is kept only when it was fetched over http(s) within the size cap and decodes as an
image; duplicates (same SHA-1 of the payload) are dropped; files are named 0000.jpg, 0001.jpg, ... in
relevance order. `{cc}/manifest.json` records each kept image's URL, photo id and owner (attribution) and
each rejected photo id with the reason; an interrupted run continues from it.
"""

import collections
import concurrent.futures
import hashlib
import io
import json
import os
import sys
import threading
import time
import urllib.parse

from absl import app
from absl import flags
from absl import logging
import flickrapi
import numpy as np
from PIL import Image
import requests
from tqdm import tqdm

# The scripts live in gan/ and flickr/; data_loader.py lives in the project root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Search keyword of each VOC class (SPEC.md, "Replay generation").
KEYWORDS = {1: "airplane", 2: "bicycle", 3: "bird", 4: "boat", 5: "bottle", 6: "bus", 7: "car",
            8: "cat", 9: "chair", 10: "cow", 11: "dining table", 12: "dog", 13: "horse",
            14: "motorbike", 15: "person", 16: "potted plant", 17: "sheep", 18: "sofa", 19: "train",
            20: "monitor"}
ENV_KEY, ENV_SECRET = "FLICKR_API_KEY", "FLICKR_API_SECRET"
MANIFEST = "manifest.json"
MB = 1 << 20


class RejectedError(Exception):
    """A photo that is not kept; the message is the reason recorded in the manifest."""


def get_credentials(environ=None):
    """Returns (api_key, api_secret) from FLICKR_API_KEY / FLICKR_API_SECRET.

    Raises:
      ValueError: naming the missing variables (never showing any value).
    """
    environ = os.environ if environ is None else environ
    missing = [name for name in (ENV_KEY, ENV_SECRET) if not environ.get(name)]
    if missing:
        raise ValueError("Flickr credentials missing: set the environment variable(s) %s to your personal "
                         "API key and secret (https://www.flickr.com/services/apps/create/)"
                         % " and ".join(missing))
    return environ[ENV_KEY], environ[ENV_SECRET]


def make_flickr(api_key, api_secret, api_url=None, timeout=30.0):
    """A FlickrAPI client with parsed-JSON replies, no token stored on disk, and an optional endpoint."""
    flickr = flickrapi.FlickrAPI(api_key, api_secret, format="parsed-json", store_token=False,
                                 cache=False, timeout=timeout)
    if api_url:
        flickr.REST_URL = api_url  # every call is a POST to this instance attribute
    return flickr


def _with_retries(what, fn, retries, backoff):
    for attempt in range(retries + 1):
        try:
            return fn()
        except (flickrapi.exceptions.FlickrError, requests.RequestException, ValueError) as e:
            if attempt == retries:
                raise RuntimeError("%s failed after %d attempts: %s" % (what, retries + 1, e)) from None
            logging.warning("%s failed (%s), retrying", what, e)
            time.sleep(backoff * 2 ** attempt)


def search_pages(flickr, text, per_page=100, start_page=1, max_pages=100, retries=3, backoff=1.0):
    """Yields (page number, list of photo dicts) of `flickr.photos.search`, relevance order.

    Stops after the last page, an empty page, or page `max_pages`. Photo dicts have at least "id" and,
    when Flickr has that size, "url_c".
    """
    page = start_page
    while page <= max_pages:
        rsp = _with_retries(
            "search %r page %d" % (text, page),
            lambda p=page: flickr.photos.search(text=text, tag_mode="any", sort="relevance", media="photos",
                                                extras="url_c,owner_name,license", per_page=per_page,
                                                page=p), retries, backoff)
        photos = rsp.get("photos", {})
        items = photos.get("photo", [])
        if not items:
            return
        yield page, items
        if page >= int(photos.get("pages", page)):
            return
        page += 1


_local = threading.local()


def fetch_image(url, timeout=20.0, max_bytes=20 * MB, retries=3, backoff=1.0):
    """Downloads one image with retries and exponential back-off.

    Args:
      url: http(s) URL (anything else is rejected without a request).
      timeout: seconds per connection/read; the whole transfer must end within 4 x timeout.
      max_bytes: size cap of the payload.
      retries: further attempts after a timeout, a connection error or HTTP 408/429/5xx.
      backoff: seconds before the first retry, doubled each time.

    Returns:
      (bytes: JPEG payload (re-encoded if the image was another format), str: SHA-1 of the download).

    Raises:
      RejectedError: with the reason.
    """
    if urllib.parse.urlsplit(url or "").scheme.lower() not in ("http", "https"):
        raise RejectedError("not an http(s) URL")
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    reason = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            data = _get(session, url, timeout, max_bytes)
            break
        except (requests.Timeout, requests.ConnectionError) as e:
            reason = "timeout" if isinstance(e, requests.Timeout) else "connection error"
        except _Transient as e:
            reason = str(e)
        except requests.RequestException as e:
            raise RejectedError("request error: %s" % type(e).__name__) from None
    else:
        raise RejectedError("%s after %d attempts" % (reason, retries + 1))
    return _as_jpeg(data), hashlib.sha1(data).hexdigest()


class _Transient(Exception):
    pass


def _get(session, url, timeout, max_bytes):
    deadline = time.monotonic() + 4 * timeout
    with session.get(url, timeout=timeout, stream=True) as r:
        if r.status_code in (408, 429) or r.status_code >= 500:
            raise _Transient("HTTP %d" % r.status_code)
        if r.status_code != 200:
            raise RejectedError("HTTP %d" % r.status_code)
        content_type = r.headers.get("Content-Type", "")
        if content_type.startswith("text/"):
            raise RejectedError("not an image (Content-Type %s)" % content_type.split(";")[0])
        if int(r.headers.get("Content-Length") or 0) > max_bytes:
            raise RejectedError("larger than %d bytes" % max_bytes)
        chunks, size = [], 0
        for chunk in r.iter_content(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise RejectedError("larger than %d bytes" % max_bytes)
            if time.monotonic() > deadline:
                raise requests.Timeout("transfer longer than %.1f s" % (4 * timeout))
            chunks.append(chunk)
    return b"".join(chunks)


def _as_jpeg(data):
    """Returns `data` if it is a valid JPEG, else the image re-encoded as JPEG; RejectedError if no image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # verify() does not decode the pixels; a truncated file fails here.
            if im.format == "JPEG":
                return data
            out = io.BytesIO()
            im.convert("RGB").save(out, format="JPEG", quality=95)
            return out.getvalue()
    except Exception as e:  # pylint: disable=broad-except  (Pillow raises many types)
        raise RejectedError("not an image (%s)" % type(e).__name__) from None


def _load_manifest(folder, class_id, keyword):
    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(path):
        return {"class": class_id, "keyword": keyword, "next_page": 1, "images": [], "rejected": {}}
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("keyword") != keyword:
        raise ValueError("%s was made for keyword %r, not %r: use another --images_dir or remove it"
                         % (path, manifest.get("keyword"), keyword))
    return manifest


def _write_atomic(path, data):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _save_manifest(folder, manifest):
    _write_atomic(os.path.join(folder, MANIFEST), json.dumps(manifest, indent=1).encode())


def download_class(flickr, pool, class_id, keyword, folder, n, workers=8, per_page=100, max_pages=100,
                   **fetch_kwargs):
    """Downloads until `folder` holds n kept images of `keyword` (resumes from its manifest).

    Args:
      flickr: a FlickrAPI client (make_flickr).
      pool: a concurrent.futures executor with `workers` threads (bounds the parallel downloads).
      class_id, keyword: the class and its search text.
      folder: the class folder (created).
      n: images to keep.
      workers: size of the pool; at least this many candidates are downloaded at once.
      per_page, max_pages: search paging.
      **fetch_kwargs: timeout, max_bytes, retries, backoff of fetch_image.

    Returns:
      the number of kept images (< n when the search ran out of results).
    """
    os.makedirs(folder, exist_ok=True)
    manifest = _load_manifest(folder, class_id, keyword)
    images = manifest["images"]
    if len(images) >= n:
        logging.info("class %02d (%s): %d images, complete, skipped", class_id, keyword, len(images))
        return len(images)
    with tqdm(total=n, initial=len(images), desc="%02d %s" % (class_id, keyword)) as bar:
        _download_pages(flickr, pool, manifest, folder, n, workers, per_page, max_pages, bar, fetch_kwargs)
    rejected = manifest["rejected"]
    reasons = collections.Counter(r.split(" (")[0] for r in rejected.values())
    log = logging.info if len(images) >= n else logging.warning
    log("class %02d (%s): kept %d of %d wanted; rejected %d %s", class_id, keyword, len(images), n,
        len(rejected), dict(reasons))
    return len(images)


def _download_pages(flickr, pool, manifest, folder, n, workers, per_page, max_pages, bar, fetch_kwargs):
    """The search-and-download loop of download_class; saves the manifest after every chunk."""
    images, rejected = manifest["images"], manifest["rejected"]
    seen_ids = {e["photo_id"] for e in images} | set(rejected)
    seen_hashes = {e["sha1"] for e in images}
    class_id, keyword = manifest["class"], manifest["keyword"]
    retries, backoff = fetch_kwargs.get("retries", 3), fetch_kwargs.get("backoff", 1.0)
    for page, photos in search_pages(flickr, keyword, per_page, manifest["next_page"], max_pages,
                                     retries, backoff):
        todo = [p for p in photos if p.get("url_c") and str(p.get("id")) not in seen_ids]
        while todo and len(images) < n:
            step = max(n - len(images), workers)  # download a few spare candidates in parallel
            chunk, todo = todo[:step], todo[step:]
            futures = [pool.submit(fetch_image, p["url_c"], **fetch_kwargs) for p in chunk]
            for photo, future in zip(chunk, futures):
                if len(images) >= n:
                    break
                pid = str(photo["id"])
                try:
                    data, sha1 = future.result()
                    if sha1 in seen_hashes:
                        raise RejectedError("duplicate of a kept image")
                except RejectedError as e:
                    rejected[pid] = str(e)
                    seen_ids.add(pid)
                    logging.debug("class %02d: photo %s rejected: %s", class_id, pid, e)
                    continue
                name = "%04d.jpg" % len(images)
                _write_atomic(os.path.join(folder, name), data)
                images.append({"file": name, "photo_id": pid, "owner": photo.get("owner"),
                               "owner_name": photo.get("ownername"), "license": photo.get("license"),
                               "url": photo["url_c"], "sha1": sha1})
                seen_ids.add(pid)
                seen_hashes.add(sha1)
                bar.update(1)
            for future in futures:
                future.cancel()
            _save_manifest(folder, manifest)
        if len(images) >= n:
            break
        manifest["next_page"] = page + 1
        _save_manifest(folder, manifest)
    _save_manifest(folder, manifest)


def download(classes, images_dir, images_per_class, keywords=None, api_url=None, workers=8,
             timeout=20.0, max_bytes=20 * MB, retries=3, backoff=1.0, per_page=100, max_pages=100,
             credentials=None):
    """Downloads every class into images_dir/{cc}/ (see download_class).

    Args:
      classes: class ids.
      images_dir: parent of the class folders.
      images_per_class: N.
      keywords: {class: keyword}; defaults to KEYWORDS.
      api_url: REST endpoint (default Flickr's).
      workers: parallel downloads.
      timeout, max_bytes, retries, backoff: see fetch_image.
      per_page, max_pages: search paging.
      credentials: (key, secret); default from the environment (get_credentials).

    Returns:
      {class: kept images}.
    """
    keywords = {**KEYWORDS, **(keywords or {})}
    unknown = [c for c in classes if c not in keywords]
    if unknown:
        raise ValueError("no search keyword for classes %s (known: %s)" % (unknown, sorted(keywords)))
    key, secret = credentials or get_credentials()
    flickr = make_flickr(key, secret, api_url, timeout)
    fetch_kwargs = dict(timeout=timeout, max_bytes=max_bytes, retries=retries, backoff=backoff)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return {c: download_class(flickr, pool, c, keywords[c], os.path.join(images_dir, "%02d" % c),
                                  images_per_class, workers, per_page, max_pages, **fetch_kwargs)
                for c in classes}


def folders_to_tfrecords(images_dir, tfrecord_dir, classes, max_side=0):
    """Writes tfrecord_dir/{cc}.tfrecord (images only) from images_dir/{cc}/ in manifest order.

    Args:
      images_dir: parent of the class folders.
      tfrecord_dir: output folder.
      classes: class ids.
      max_side: if > 0, larger images are downscaled so that their longer side is max_side.

    Returns:
      {class: number of records}.
    """
    import data_loader  # pylint: disable=g-import-not-at-top  (imports TensorFlow; download does not)
    os.makedirs(tfrecord_dir, exist_ok=True)
    counts = {}
    for c in classes:
        folder = os.path.join(images_dir, "%02d" % c)
        if os.path.exists(os.path.join(folder, MANIFEST)):
            with open(os.path.join(folder, MANIFEST)) as f:
                names = [e["file"] for e in json.load(f)["images"]]
        elif os.path.isdir(folder):
            names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".jpeg", ".png")))
        else:
            raise FileNotFoundError("class folder %r not found (run the download first)" % folder)
        if not names:
            raise ValueError("class folder %r holds no image" % folder)

        def examples(folder=folder, names=names):
            for name in tqdm(names, desc="%02d.tfrecord" % c):
                with Image.open(os.path.join(folder, name)) as im:
                    im = im.convert("RGB")
                    if max_side and max(im.size) > max_side:
                        scale = max_side / max(im.size)
                        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                                       Image.BILINEAR)
                    yield data_loader.encode_example(np.asarray(im), None)

        path = os.path.join(tfrecord_dir, "%02d.tfrecord" % c)
        counts[c] = data_loader.write_tfrecord(path, examples())
        logging.info("class %02d: %d images -> %s", c, counts[c], path)
    return counts


def parse_keywords(entries):
    """['20=tv monitor', ...] -> {20: 'tv monitor'}."""
    out = {}
    for entry in entries or []:
        cls, sep, word = entry.partition("=")
        if not sep or not cls.strip().isdigit() or not word.strip():
            raise ValueError("keyword %r: expected CLASS=WORDS, e.g. 20=tv monitor" % entry)
        out[int(cls)] = word.strip()
    return out


def define_flags():
    """Defines the command-line flags (only when run as a script, so importing defines none)."""
    flags.DEFINE_bool("to_tfrecord", False, "Only convert the class folders into tfrecords.")
    flags.DEFINE_list("classes", [str(c) for c in range(1, 21)], "Class ids.")
    flags.DEFINE_integer("images_per_class", 1000, "Images kept per class.")
    flags.DEFINE_multi_string("keywords", [], "Search keyword override CLASS=WORDS (repeatable).")
    flags.DEFINE_string("images_dir", "data/replay_images/flickr/images", "Parent of the class folders.")
    flags.DEFINE_string("tfrecord_dir", "data/replay_images/flickr", "Folder of {cc}.tfrecord.")
    flags.DEFINE_string("api_url", None, "Flickr REST endpoint (default Flickr's; for tests/proxies).")
    flags.DEFINE_integer("workers", 8, "Parallel downloads.")
    flags.DEFINE_float("timeout", 20.0, "Seconds per connection/read.")
    flags.DEFINE_integer("max_bytes", 20 * MB, "Size cap of one image.")
    flags.DEFINE_integer("retries", 3, "Retries after a transient failure.")
    flags.DEFINE_float("backoff", 1.0, "Seconds before the first retry (doubled each time).")
    flags.DEFINE_integer("per_page", 100, "Search results per page (Flickr allows up to 500).")
    flags.DEFINE_integer("max_pages", 100, "Last search page read.")
    flags.DEFINE_integer("max_side", 0, "--to_tfrecord: downscale to this longer side (0 = keep).")


def main(argv):
    del argv
    f = flags.FLAGS
    classes = [int(c) for c in f.classes]
    if f.to_tfrecord:
        folders_to_tfrecords(f.images_dir, f.tfrecord_dir, classes, f.max_side)
        return
    try:
        credentials = get_credentials()
        keywords = parse_keywords(f.keywords)
    except ValueError as e:
        raise app.UsageError(str(e))
    download(classes, f.images_dir, f.images_per_class, keywords, f.api_url, f.workers, f.timeout,
             f.max_bytes, f.retries, f.backoff, f.per_page, f.max_pages, credentials)


if __name__ == "__main__":
    define_flags()
    app.run(main)
