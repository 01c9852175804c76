"""Web replay: download Flickr images per class, then turn the class folders into replay tfrecords.

  # 1. download (credentials from the environment only, never from a flag or a file)
  export FLICKR_API_KEY=... FLICKR_API_SECRET=...
  python flickr/download_flickr.py --images_per_class=1000
  # 2. convert data/replay_images/flickr/images/{cc}/ into data/replay_images/flickr/{cc}.tfrecord (paths.py)
  python flickr/download_flickr.py --to_tfrecord
  # ADE20K's 150 classes, in its data folder (config/bases/ADE20K.gin's base folder is ade20k)
  python flickr/download_flickr.py --dataset=ade20k --data_dir=ade20k/data [--to_tfrecord]

Class folders and records are named by paths.class_folder_name: two digits at least (01, 20, 101, 150); nothing
here parses or sorts these names, every class's folder is derived from its id.

Searches every class keyword (the dataset's web keywords, datasets.py: VOC's are the original's, KEYWORDS;
`--keywords=20=tv monitor` edits one) with signed
`flickr.photos.search` POSTs, relevance order, medium-size URLs (`url_c`), page by page until N images are
kept. Each image download and each search call ends by `--deadline` (retries and waits included), which a
server dripping bytes cannot stretch; replies are size-capped.

An image is kept when it decodes and has at most `--max_pixels` pixels (read from its header, before
decoding). As in the original, which stored the downloaded file as is, a JPEG whose longer side is at
most `--max_side` is stored with its original bytes; any other image (another format, or larger: shrunk to
`--max_side`, aspect ratio kept) is re-encoded as JPEG, quality 95. Duplicates (same SHA-1 of the download)
are dropped; files are 0000.jpg, 0001.jpg, ... in the order kept. `{cc}/manifest.json` records each kept
image (URL, photo id, owner for attribution) as it lands and each rejected photo id with the reason; a
rerun continues from it and fetches no kept or rejected photo again. Transient failures (timeouts,
connection errors, HTTP 408/429/5xx) are not recorded, so the next run tries those photos again.
"""

import collections
import concurrent.futures
import dataclasses
import email.utils
import functools
import hashlib
import http.client
import io
import json
import logging as std_logging
import os
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
import flickrapi
import requests
from tqdm import tqdm

import artifacts
import datasets
import paths


KEYWORDS = datasets.VOC.web_keywords  # search keyword of each VOC class (SPEC.md, "Replay generation")
ENV_KEY, ENV_SECRET = "FLICKR_API_KEY", "FLICKR_API_SECRET"
REST_URL = flickrapi.FlickrAPI.REST_URL
MANIFEST = "manifest.json"
MB = 1 << 20
USER_AGENT = "RECALL-TF2 replay downloader"
# Flickr error codes of a refused key or signature (the user's credentials), and of a busy service.
KEY_ERRORS, BUSY_ERRORS = {"96", "97", "98", "100"}, {"0", "10", "105"}


class RejectedError(Exception):
    """A photo (or a search page) that is not used; the message is the reason recorded."""


class TransientError(Exception):
    """A failure that may pass (timeout, connection error, HTTP 408/429/5xx); never recorded as final."""

    def __init__(self, reason, retry_after=None):
        super().__init__(reason)
        self.retry_after = retry_after  # seconds the server asked us to wait, or None


class ApiKeyError(ValueError):
    """Flickr refused the API key or the signature made with the secret."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """How long and how much the downloader may spend on one image or one search call.

    Attributes:
      timeout: seconds per connect and per socket read (a silent server fails this fast).
      deadline: seconds for one image download or one search call, every attempt and wait included.
      retries: further attempts after a transient failure, within the deadline.
      backoff: seconds before the first retry, doubled each time (unless the server sends Retry-After).
      max_retry_after: cap of a server's Retry-After, in seconds.
      max_bytes: size cap of one image download.
      max_reply_bytes: size cap of one search reply.
      max_pixels: width x height cap of a downloaded image (checked before decoding it).
      max_side: longer side of kept images; larger ones are shrunk (0 keeps every size).
    """
    timeout: float = 20.0
    deadline: float = 60.0
    retries: int = 3
    backoff: float = 1.0
    max_retry_after: float = 30.0
    max_bytes: int = 20 * MB
    max_reply_bytes: int = 16 * MB
    max_pixels: int = 25_000_000
    max_side: int = 1024

    def __post_init__(self):
        for name, value in dataclasses.asdict(self).items():
            may_be_zero = name in ("retries", "backoff", "max_retry_after", "max_side")
            if not value >= 0 or (value == 0 and not may_be_zero):
                raise ValueError("%s must be %s 0, got %r" % (name, ">=" if may_be_zero else ">", value))


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


# ---------------------------------------------------------------- HTTP with a deadline and a size cap

def _http_url(url):
    """urlsplit(url) if it is a usable http(s) URL (printable ASCII, as http.client needs), else
    RejectedError."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() in ("http", "https") and parts.hostname and parts.port != 0 and \
                url.isascii() and url.isprintable() and " " not in url:
            return parts
    except (TypeError, AttributeError, ValueError):  # not a string, or a bad port
        pass
    raise RejectedError("not an http(s) URL")


@functools.lru_cache(maxsize=None)
def _ssl_context():
    return ssl.create_default_context(cafile=requests.certs.where())


def _connection(parts, timeout):
    """(unopened http.client connection, request target) for the URL; through the proxy that the
    environment names for it (http_proxy, https_proxy, no_proxy), if any."""
    https = parts.scheme.lower() == "https"
    kind = functools.partial(http.client.HTTPSConnection, context=_ssl_context()) if https else \
        http.client.HTTPConnection
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    proxy = urllib.request.getproxies().get(parts.scheme.lower())
    if not proxy or urllib.request.proxy_bypass(parts.hostname):
        return kind(parts.hostname, parts.port, timeout=timeout), target
    proxy = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    if not https:
        return http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=timeout), parts.geturl()
    conn = kind(proxy.hostname, proxy.port, timeout=timeout)
    conn.set_tunnel(parts.hostname, parts.port)  # CONNECT through the proxy, then TLS with the host
    return conn, target


def _cut(conn, fired):
    """Watchdog of _exchange: at the deadline, shuts the socket down so that a pending read ends now."""
    fired.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass


def _exchange(method, url, deadline, timeout, max_bytes, body=None, headers=None):
    """One HTTP request whose whole reply must arrive before `deadline` (a time.monotonic() value).

    Socket timeouts (`timeout`, per connect and per read) bound each read, not their sum: a server
    sending a byte a second keeps them all alive. A timer therefore shuts the socket at the deadline.

    Args: method, url ("GET"/"POST", http(s)); deadline; timeout; max_bytes: size cap of the body;
      body, headers: request body (bytes or None) and extra headers.
    Returns: (status, reply headers (http.client.HTTPMessage), body: bytes, b"" unless status is 200).
    Raises: TransientError (timeout, deadline, connection error, body cut short); RejectedError (body
      over max_bytes, bad Content-Length, malformed HTTP reply).
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TransientError("timeout (deadline)")
    conn, target = _connection(_http_url(url), min(timeout, remaining))
    fired = threading.Event()
    watchdog = threading.Timer(remaining, _cut, (conn, fired))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.connect()
        if fired.is_set():  # the deadline passed while connecting, before the socket existed
            raise TransientError("timeout (deadline)")
        conn.request(method, target, body, {"User-Agent": USER_AGENT, "Accept-Encoding": "identity",
                                            "Connection": "close", **(headers or {})})
        response = conn.getresponse()
        data = _read_body(response, max_bytes) if response.status == 200 else b""
        if fired.is_set():  # the watchdog ended the body early
            raise TransientError("timeout (deadline)")
        if response.status == 200 and response.length:  # cut short (http.client does not raise)
            raise TransientError("connection error (body cut short)")
        return response.status, response.headers, data
    except (OSError, http.client.HTTPException, ValueError) as e:  # ValueError: a header http.client refuses
        if fired.is_set():
            raise TransientError("timeout (deadline)") from None
        if isinstance(e, TimeoutError):
            raise TransientError("timeout") from None
        if isinstance(e, (OSError, http.client.IncompleteRead)):  # refused, reset, closed early
            raise TransientError("connection error (%s)" % type(e).__name__) from None
        raise RejectedError("bad HTTP reply (%s)" % type(e).__name__) from None
    finally:
        watchdog.cancel()
        conn.close()


def _read_body(response, max_bytes):
    """The body of an http.client response, at most max_bytes (RejectedError beyond)."""
    length = response.getheader("Content-Length")
    if length is not None:
        if not length.strip().isdigit():
            raise RejectedError("bad Content-Length (%r)" % length[:40])
        if int(length) > max_bytes:
            raise RejectedError("larger than %d bytes" % max_bytes)
    chunks, size = [], 0
    while True:
        chunk = response.read(64 * 1024)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise RejectedError("larger than %d bytes" % max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _raise_if_transient(status, headers):
    """TransientError for HTTP 408, 429 and 5xx, carrying the server's Retry-After."""
    if status in (408, 429) or status >= 500:
        raise TransientError("HTTP %d" % status, _retry_after(headers.get("Retry-After")))


def _retry_after(value):
    """Seconds of a Retry-After header (delay-seconds or an HTTP date), or None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:  # an HTTP date
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _with_retries(attempt, limits, deadline):
    """Returns attempt(), retrying a TransientError after min(Retry-After or backoff * 2^i,
    max_retry_after) seconds while retries and time before `deadline` remain (else raises it). Any other
    error is raised at once."""
    for i in range(limits.retries + 1):
        try:
            return attempt()
        except TransientError as e:
            wait = e.retry_after if e.retry_after is not None else limits.backoff * 2 ** i
            wait = min(wait, limits.max_retry_after)
            if i == limits.retries or time.monotonic() + wait >= deadline:
                raise
            logging.debug("%s, retrying in %.1f s", e, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- images

def fetch_image(url, limits=Limits()):
    """Downloads one image within limits.deadline (up to 5 redirects).

    Args:
      url: http(s) URL (anything else, a non-string included, is rejected without a request).
      limits: Limits.

    Returns:
      (bytes to store (see _stored_bytes), str: SHA-1 of the download).

    Raises:
      RejectedError: final, recorded in the manifest. TransientError: the next run tries again.
    """
    _http_url(url)
    deadline = time.monotonic() + limits.deadline
    data = _with_retries(lambda: _get_image(url, deadline, limits), limits, deadline)
    return _stored_bytes(data, limits), hashlib.sha1(data).hexdigest()


def _get_image(url, deadline, limits):
    for _ in range(6):
        status, headers, data = _exchange("GET", url, deadline, limits.timeout, limits.max_bytes)
        if status in (301, 302, 303, 307, 308) and headers.get("Location"):
            url = urllib.parse.urljoin(url, headers["Location"])
            continue
        _raise_if_transient(status, headers)
        if status != 200:
            raise RejectedError("HTTP %d" % status)
        content_type = headers.get("Content-Type", "")
        if content_type.startswith("text/"):
            raise RejectedError("not an image (Content-Type %s)" % content_type.split(";")[0])
        return data
    raise RejectedError("more than 5 redirects")


def _stored_bytes(data, limits):
    """`data` itself if it is a JPEG within limits.max_side, else the image as JPEG (quality 95), shrunk
    to max_side keeping its aspect ratio. RejectedError if it is no image or has too many pixels."""
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only: nothing decoded yet
            if im.width * im.height > limits.max_pixels:
                raise RejectedError("too many pixels (%dx%d > %d)" % (im.width, im.height, limits.max_pixels))
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            small = not limits.max_side or max(im.size) <= limits.max_side
            if im.format == "JPEG" and small:
                im.load()  # verify() does not decode the pixels; a truncated file fails here
                return data
            if im.format != "JPEG":
                im = im.convert("RGB")  # palette and alpha images resize badly in their own mode
            if not small:
                im.thumbnail((limits.max_side, limits.max_side), Image.LANCZOS)  # JPEG: decodes reduced
            out = io.BytesIO()
            im.convert("RGB").save(out, format="JPEG", quality=95)
            return out.getvalue()
    except RejectedError:
        raise
    except Image.DecompressionBombError:  # Pillow's own, larger limit
        raise RejectedError("too many pixels (Pillow's limit)") from None
    except Exception as e:  # pylint: disable=broad-except  (Pillow raises many types)
        raise RejectedError("not an image (%s)" % type(e).__name__) from None


# ---------------------------------------------------------------- search

class FlickrSearch:
    """Signed `flickr.photos.search` calls, each within limits.deadline and limits.max_reply_bytes.

    flickrapi (the original's client) signs each call (its OAuth1 signer: the key travels in the
    Authorization header of a POST, never in a URL); the POST itself is sent here, because flickrapi's own
    call reads the whole reply with neither a deadline nor a size cap. The loggers of the OAuth libraries,
    which print the signed request at DEBUG, are held at INFO.
    """

    def __init__(self, api_key, api_secret, api_url=None, limits=Limits()):
        """Args: api_key, api_secret: personal credentials; api_url: REST endpoint (default Flickr's);
        limits: Limits."""
        for name in ("oauthlib", "requests_oauthlib"):
            std_logging.getLogger(name).setLevel(max(std_logging.INFO, std_logging.getLogger(name).level))
        client = flickrapi.FlickrAPI(api_key, api_secret, store_token=False, cache=False)  # no ~/.flickr
        self._auth = client.flickr_oauth.oauth
        self._key = api_key
        self.api_url = api_url or REST_URL
        self.limits = limits

    def page(self, text, page, per_page):
        """One results page, relevance order, with url_c, owner name and license.

        Returns: (photos: list, as Flickr sent them; pages: int, the number of result pages).
        Raises: RejectedError (malformed reply: the caller skips the page); ApiKeyError (Flickr refused
          the credentials); RuntimeError (transient failures until the retries or the deadline ran out).
        """
        params = {"method": "flickr.photos.search", "format": "json", "nojsoncallback": "1",
                  "text": text, "tag_mode": "any", "sort": "relevance", "media": "photos",
                  "extras": "url_c,owner_name,license", "per_page": str(per_page), "page": str(page)}
        deadline = time.monotonic() + self.limits.deadline
        try:
            reply = _with_retries(lambda: self._call(params, deadline), self.limits, deadline)
        except TransientError as e:
            raise RuntimeError("search %r page %d failed: %s" % (text, page, e)) from None
        return _parse_search(reply)

    def _call(self, params, deadline):
        """One signed POST (a fresh nonce each time); returns the reply with "stat": "ok"."""
        signed = requests.Request("POST", self.api_url, data=params, auth=self._auth).prepare()
        body = signed.body.encode() if isinstance(signed.body, str) else signed.body
        status, headers, data = _exchange("POST", self.api_url, deadline, self.limits.timeout,
                                          self.limits.max_reply_bytes, body, dict(signed.headers))
        _raise_if_transient(status, headers)
        if status != 200:
            raise RuntimeError("%s answered HTTP %d" % (self.api_url, status))
        try:
            reply = json.loads(data)
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            raise RejectedError("malformed page (not JSON)") from None
        if not isinstance(reply, dict):
            raise RejectedError("malformed page (not a JSON object)")
        if reply.get("stat") != "ok":
            code = str(reply.get("code"))
            message = str(reply.get("message"))[:200].replace(self._key, "<key>")
            if code in KEY_ERRORS:
                raise ApiKeyError("Flickr refused the credentials (error %s: %s): check %s and %s"
                                  % (code, message, ENV_KEY, ENV_SECRET))
            if code in BUSY_ERRORS:
                raise TransientError("Flickr error %s: %s" % (code, message))
            raise RuntimeError("Flickr error %s: %s" % (code, message))
        return reply


def _parse_search(reply):
    """(photos list, pages int) of a search reply; RejectedError naming what is malformed."""
    photos = reply.get("photos")
    if not isinstance(photos, dict):
        raise RejectedError("malformed page (photos is not an object)")
    items = photos.get("photo")
    if not isinstance(items, list):
        raise RejectedError("malformed page (photo is not a list)")
    try:
        pages = int(photos.get("pages"))  # Flickr sends a number, sometimes as a string
    except (TypeError, ValueError, OverflowError):
        raise RejectedError("malformed page (page count %r)" % str(photos.get("pages"))[:40]) from None
    return items, pages


def search_pages(search, text, per_page=100, start_page=1, max_pages=100, skipped=None):
    """Yields (page number, photos) of search.page(text, ...) from start_page; stops after the last page,
    an empty page, or page max_pages. Malformed pages are skipped and counted in `skipped` (a Counter)."""
    skipped = collections.Counter() if skipped is None else skipped
    for page in range(start_page, max_pages + 1):
        try:
            photos, pages = search.page(text, page, per_page)
        except RejectedError as e:
            skipped[str(e)] += 1
            logging.warning("search %r page %d skipped: %s", text, page, e)
            continue
        if not photos:
            return
        yield page, photos
        if page >= pages:
            return


def _photo_id(photo):
    """The photo's id as a string, or None if the search result has no usable id."""
    pid = photo.get("id") if isinstance(photo, dict) else None
    if isinstance(pid, bool) or not isinstance(pid, (str, int)) or not str(pid).strip():
        return None
    return str(pid)


# ---------------------------------------------------------------- class folders and manifests

def _load_manifest(folder, class_id, keyword):
    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(path):
        return {"class": class_id, "keyword": keyword, "next_page": 1, "images": [], "rejected": {}}
    try:
        with open(path) as f:
            manifest = json.load(f)
        usable = isinstance(manifest["images"], list) and isinstance(manifest["rejected"], dict) and \
            isinstance(manifest["next_page"], int)
    except (ValueError, KeyError, TypeError):  # JSONDecodeError included
        usable = False
    if not usable:
        raise ValueError("%s is not a manifest: remove it or use another --images_dir" % path)
    if manifest.get("keyword") != keyword:
        raise ValueError("%s was made for keyword %r, not %r: use another --images_dir or remove it"
                         % (path, manifest.get("keyword"), keyword))
    return manifest


def _save_manifest(folder, manifest):
    artifacts.write_bytes(os.path.join(folder, MANIFEST), json.dumps(manifest, indent=1).encode())


def _accept(folder, manifest, pid, photo, data, sha1):
    """Writes the next image file, then records it in the manifest at once (a kill loses nothing kept)."""
    name = "%04d.jpg" % len(manifest["images"])
    artifacts.write_bytes(os.path.join(folder, name), data)
    manifest["images"].append({"file": name, "photo_id": pid, "owner": photo.get("owner"),
                               "owner_name": photo.get("ownername"), "license": photo.get("license"),
                               "url": photo["url_c"], "sha1": sha1})
    _save_manifest(folder, manifest)


def download_class(search, pool, class_id, keyword, folder, n, workers=8, per_page=100, max_pages=100,
                   limits=Limits()):
    """Downloads until `folder` (created) holds n kept images of `keyword` (resumes from its manifest).

    Args:
      search: a FlickrSearch; pool: an executor of `workers` threads (the parallel downloads);
      class_id, keyword: the class and its search text; per_page, max_pages: search paging;
      limits: Limits of fetch_image.
    Returns:
      the number of kept images (< n when the search ran out of results).
    """
    os.makedirs(folder, exist_ok=True)
    manifest = _load_manifest(folder, class_id, keyword)
    images = manifest["images"]
    if len(images) >= n:
        logging.info("class %02d (%s): %d images, complete, skipped", class_id, keyword, len(images))
        return len(images)
    skipped = collections.Counter()
    with tqdm(total=n, initial=len(images), desc="%02d %s" % (class_id, keyword)) as bar:
        _download_pages(search, pool, manifest, folder, n, workers, per_page, max_pages, limits, bar,
                        skipped)
    rejected = manifest["rejected"]
    reasons = collections.Counter(r.split(" (")[0] for r in rejected.values())
    log = logging.info if len(images) >= n else logging.warning
    log("class %02d (%s): kept %d of %d wanted; rejected %d %s; skipped this run %s", class_id, keyword,
        len(images), n, len(rejected), dict(reasons), dict(skipped))
    return len(images)


def _download_pages(search, pool, manifest, folder, n, workers, per_page, max_pages, limits, bar,
                    skipped):
    """The search-and-download loop of download_class.

    Kept images are saved in the manifest one by one, rejections after every chunk. `next_page` moves
    past a page only when none of its photos failed transiently, so the next run tries those again.
    """
    images, rejected = manifest["images"], manifest["rejected"]
    seen_ids = {e["photo_id"] for e in images} | set(rejected)
    seen_hashes = {e["sha1"] for e in images}
    retry_page = None  # first page holding a photo that failed transiently
    for page, photos in search_pages(search, manifest["keyword"], per_page, manifest["next_page"],
                                     max_pages, skipped):
        todo = []
        for photo in photos:
            pid = _photo_id(photo)
            if pid is None:
                skipped["malformed photo (no id)"] += 1
            elif pid not in seen_ids and photo.get("url_c") is not None:  # None: no medium size
                todo.append((pid, photo))
                seen_ids.add(pid)
        while todo and len(images) < n:
            step = max(n - len(images), workers)  # download a few spare candidates in parallel
            chunk, todo = todo[:step], todo[step:]
            futures = [pool.submit(fetch_image, photo["url_c"], limits) for _, photo in chunk]
            for (pid, photo), future in zip(chunk, futures):
                if len(images) >= n:
                    break
                try:
                    data, sha1 = future.result()
                    if sha1 in seen_hashes:
                        raise RejectedError("duplicate of a kept image")
                except TransientError as e:
                    skipped["%s (tried again next run)" % e] += 1
                    retry_page = retry_page or page
                    logging.debug("class %02d: photo %s failed: %s", manifest["class"], pid, e)
                    continue
                except RejectedError as e:
                    rejected[pid] = str(e)
                    logging.debug("class %02d: photo %s rejected: %s", manifest["class"], pid, e)
                    continue
                _accept(folder, manifest, pid, photo, data, sha1)
                seen_hashes.add(sha1)
                bar.update(1)
            for future in futures:
                future.cancel()
            _save_manifest(folder, manifest)
        if len(images) >= n:
            break
        manifest["next_page"] = retry_page or page + 1
        _save_manifest(folder, manifest)
    _save_manifest(folder, manifest)


def check_download(classes, images_dir, images_per_class, keywords=None, workers=8, per_page=100,
                   max_pages=100, dataset=datasets.DEFAULT):
    """Checks the arguments of download before any request; returns {class: keyword}.

    Raises: ValueError naming the bad value and what was expected (also for a corrupt manifest, or a
      class folder made for another keyword).
    """
    keywords = {**datasets.get(dataset).web_keywords, **(keywords or {})}
    unknown = [c for c in classes if c not in keywords]
    if unknown:
        raise ValueError("no search keyword for classes %s (known: %s)" % (unknown, sorted(keywords)))
    for name, value, low, high in (("images_per_class", images_per_class, 1, None),
                                   ("workers", workers, 1, None), ("per_page", per_page, 1, 500),
                                   ("max_pages", max_pages, 1, None)):
        if value < low or (high is not None and value > high):
            raise ValueError("%s must be in [%d, %s], got %r" % (name, low, high or "inf", value))
    for c in classes:
        folder = paths.web_class_dir(images_dir, c)
        if os.path.exists(os.path.join(folder, MANIFEST)):
            _load_manifest(folder, c, keywords[c])
    return {c: keywords[c] for c in classes}


def download(classes, images_dir, images_per_class, keywords=None, api_url=None, workers=8,
             per_page=100, max_pages=100, limits=Limits(), credentials=None, dataset=datasets.DEFAULT):
    """Downloads every class into images_dir/{cc}/ (see download_class).

    Args:
      classes: class ids; images_dir: parent of the class folders; images_per_class: N;
      keywords: {class: keyword} overriding the dataset's web keywords; api_url: REST endpoint (default Flickr's);
      workers: parallel downloads; per_page, max_pages: search paging (Flickr allows 500 per page);
      limits: Limits of every download and search call;
      credentials: (key, secret); default from the environment (get_credentials).
      dataset: the dataset (name or datasets.Dataset) whose web keywords are searched.
    Returns:
      {class: kept images}.
    """
    keywords = check_download(classes, images_dir, images_per_class, keywords, workers, per_page,
                              max_pages, dataset)
    key, secret = credentials or get_credentials()
    search = FlickrSearch(key, secret, api_url, limits)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return {c: download_class(search, pool, c, keywords[c], paths.web_class_dir(images_dir, c),
                                  images_per_class, workers, per_page, max_pages, limits)
                for c in classes}


# ---------------------------------------------------------------- tfrecords and command line

def class_files(images_dir, class_id):
    """The image file names of images_dir/{cc}/, in manifest order (else sorted).

    Raises:
      FileNotFoundError / ValueError: no such folder, or no image in it.
    """
    folder = paths.web_class_dir(images_dir, class_id)
    if os.path.exists(os.path.join(folder, MANIFEST)):
        with open(os.path.join(folder, MANIFEST)) as f:
            names = [e["file"] for e in json.load(f)["images"]]
    elif os.path.isdir(folder):
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".jpeg", ".png")))
    else:
        raise FileNotFoundError("class folder %r not found (run the download first)" % folder)
    if not names:
        raise ValueError("class folder %r holds no image" % folder)
    return names


def folders_to_tfrecords(images_dir, tfrecord_dir, classes, max_side=0):
    """Writes tfrecord_dir/{cc}.tfrecord (images only) from images_dir/{cc}/ in manifest order.

    Args: images_dir: parent of the class folders; tfrecord_dir: output folder; classes: class ids;
      max_side: if > 0, larger images are downscaled so that their longer side is max_side.
    Returns: {class: number of records}.
    """
    import data_loader  # pylint: disable=g-import-not-at-top  (imports TensorFlow; download does not)
    os.makedirs(tfrecord_dir, exist_ok=True)
    counts = {}
    for c in classes:
        folder, names = paths.web_class_dir(images_dir, c), class_files(images_dir, c)

        def examples(folder=folder, names=names):
            for name in tqdm(names, desc=paths.replay_name(c)):
                with Image.open(os.path.join(folder, name)) as im:
                    im = im.convert("RGB")
                    if max_side:
                        im.thumbnail((max_side, max_side), Image.BILINEAR)  # keeps the aspect ratio
                    yield data_loader.encode_example(np.asarray(im), None)

        path = os.path.join(tfrecord_dir, paths.replay_name(c))
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
    d = Limits()
    flags.DEFINE_bool("to_tfrecord", False, "Only convert the class folders into tfrecords.")
    flags.DEFINE_enum("dataset", datasets.DEFAULT, sorted(datasets.DATASETS), "The dataset (datasets.py): its "
                      "classes and their search keywords.")
    flags.DEFINE_list("classes", None, "Class ids (default: every class of the dataset, 1..20 for voc, 1..150 for "
                      "ade20k).")
    flags.DEFINE_integer("images_per_class", 1000, "Images kept per class.")
    flags.DEFINE_multi_string("keywords", [], "Search keyword override CLASS=WORDS (repeatable).")
    flags.DEFINE_string("data_dir", paths.DATA_DIR, "The data folder (prepare_data's --output_dir; ade20k/data for "
                        "config/ade20k/): default of --images_dir and --output_dir.")
    flags.DEFINE_string("images_dir", None, "Parent of the class folders (default <data_dir>/replay_images/flickr/"
                        "images, %s)." % paths.web_images_dir(paths.DATA_DIR))
    flags.DEFINE_string("output_dir", None, "Folder of {cc}.tfrecord (default <data_dir>/replay_images/flickr, "
                        "%s)." % paths.replay_dir(paths.DATA_DIR, "flickr"))
    flags.DEFINE_alias("tfrecord_dir", "output_dir")  # the flag's name before 2026-12
    flags.DEFINE_string("api_url", None, "Flickr REST endpoint (default Flickr's; for tests/proxies).")
    flags.DEFINE_integer("workers", 8, "Parallel downloads.")
    flags.DEFINE_float("timeout", d.timeout, "Seconds per connect and per socket read.")
    flags.DEFINE_float("deadline", d.deadline, "Seconds for one image or search call, retries included.")
    flags.DEFINE_integer("retries", d.retries, "Retries after a transient failure (within the deadline).")
    flags.DEFINE_float("backoff", d.backoff, "Seconds before the first retry (doubled each time).")
    flags.DEFINE_float("max_retry_after", d.max_retry_after, "Cap of a server's Retry-After, seconds.")
    flags.DEFINE_integer("max_bytes", d.max_bytes, "Size cap of one image download.")
    flags.DEFINE_integer("max_pixels", d.max_pixels, "Pixel cap of a downloaded image (else rejected).")
    flags.DEFINE_integer("max_side", d.max_side, "Longer side of kept images (and of --to_tfrecord "
                         "records); larger ones are shrunk; 0 keeps every size.")
    flags.DEFINE_integer("per_page", 100, "Search results per page (Flickr allows up to 500).")
    flags.DEFINE_integer("max_pages", 100, "Last search page read.")


def main(argv):
    """Runs the download or --to_tfrecord; a user error exits with status 2 and a one-line reason."""
    if len(argv) > 1:
        raise app.UsageError("unexpected arguments %s" % argv[1:])
    f = flags.FLAGS
    record = datasets.get(f.dataset)
    images_dir = f.images_dir or paths.web_images_dir(f.data_dir)
    output_dir = f.output_dir or paths.replay_dir(f.data_dir, "flickr")
    try:
        if f.classes is not None and not all(c.strip().isdigit() and 1 <= int(c) <= record.n_classes
                                             for c in f.classes):
            raise ValueError("--classes: expected class ids of %s (1..%d) such as 1,2,20, got %s"
                             % (record.name, record.n_classes, f.classes))
        classes = record.classes if f.classes is None else [int(c) for c in f.classes]
        if f.to_tfrecord:
            if f.max_side < 0:
                raise ValueError("max_side must be >= 0, got %d" % f.max_side)
            for c in classes:
                class_files(images_dir, c)
        else:
            limits = Limits(timeout=f.timeout, deadline=f.deadline, retries=f.retries, backoff=f.backoff,
                            max_retry_after=f.max_retry_after, max_bytes=f.max_bytes,
                            max_pixels=f.max_pixels, max_side=f.max_side)
            keywords = parse_keywords(f.keywords)
            check_download(classes, images_dir, f.images_per_class, keywords, f.workers, f.per_page,
                           f.max_pages, f.dataset)
            credentials = get_credentials()
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e), exitcode=2)
    if f.to_tfrecord:
        folders_to_tfrecords(images_dir, output_dir, classes, f.max_side)
        return
    try:
        download(classes, images_dir, f.images_per_class, keywords, f.api_url, f.workers, f.per_page,
                 f.max_pages, limits, credentials, f.dataset)
    except ApiKeyError as e:
        raise app.UsageError(str(e), exitcode=2)


def cli():
    """The console script `recall-download-flickr`."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    cli()
