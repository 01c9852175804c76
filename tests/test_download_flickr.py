"""Tests of flickr/download_flickr.py against a Flickr-like HTTP server on 127.0.0.1 (no internet).

The server answers signed `flickr.photos.search` POSTs with paged JSON results and serves image URLs that
work, fail (404), time out, return HTML, return a huge body, repeat an image, fail once (503), or hold a
PNG or a truncated JPEG. It stops by itself after a while or after a bounded number of requests.
"""
import collections
import http.server
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.parse

from absl import logging as absl_logging
import numpy as np
from PIL import Image
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "flickr"))
import download_flickr  # pylint: disable=wrong-import-position

KEY, SECRET = "test-key-0123", "S3cr3t-value-4f9d"
CAP = 100_000  # max_bytes in the tests
TIMEOUT = 0.25


def _image_bytes(i, fmt="JPEG"):
    rng = np.random.default_rng(i)
    image = rng.integers(0, 255, size=(24, 32, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(image).save(out, format=fmt)
    return out.getvalue()


def _photo(pid, name):
    url = name if "://" in name else None
    photo = {"id": str(pid), "owner": "owner%d@N00" % pid, "ownername": "Owner %d" % pid, "license": "4",
             "secret": "abc%d" % pid, "server": "1", "farm": 1, "title": name}
    if name != "nourl":
        photo["url_c"] = url or "{base}/img/%s" % name
    return photo


  # Search results: class 1 ("airplane") over 3 pages; the good, distinct images are marked with "*".
AIRPLANE = [["good0*", "missing", "good1*", "html", "nourl"],
            ["slow", "dup", "good2*", "huge", "file:///etc/passwd"],
            ["png0*", "hugelen", "flaky*", "htmlasimage", "truncated", "ftp://127.0.0.1/x.jpg", "good3*"]]
BIKE = [["good10*", "good11*", "good12*", "good13*"], ["good14*", "good15*"]]


def _pages(spec, first_id):
    pages, good, pid = [], [], first_id
    for page in spec:
        pages.append([])
        for name in page:
            pages[-1].append(_photo(pid, name.rstrip("*")))
            if name.endswith("*"):
                good.append(str(pid))
            pid += 1
    return pages, good


class FakeFlickr:
    """Flickr-like server: POST /services/rest/ (search) and GET /img/<name>."""

    def __init__(self, lifetime_s=60, max_requests=500):
        self.searches = {}
        self.good = {}
        for keyword, spec, first in (("airplane", AIRPLANE, 100), ("bike", BIKE, 200)):
            self.searches[keyword], self.good[keyword] = _pages(spec, first)
        self.hits = collections.Counter()
        self.requests = []  # (path, headers, body) of every request
        self.failing_pages = set()  # (keyword, page) answered with HTTP 500
        self.max_requests = max_requests
        self.lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]
        for pages in self.searches.values():
            for page in pages:
                for photo in page:
                    if "url_c" in photo:
                        photo["url_c"] = photo["url_c"].format(base=self.base)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.watchdog = threading.Timer(lifetime_s, self.server.shutdown)
        self.watchdog.daemon = True

    def __enter__(self):
        self.thread.start()
        self.watchdog.start()
        return self

    def __exit__(self, *exc):
        self.watchdog.cancel()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):

            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status, body=b"", content_type="image/jpeg", length=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if length is not False:
                    self.send_header("Content-Length", str(len(body) if length is None else length))
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout, size cap)
                    pass

            def _record(self, body=b""):
                with fake.lock:
                    fake.requests.append((self.path, str(self.headers), body))
                    fake.hits[self.path] += 1
                    return len(fake.requests) <= fake.max_requests

            def do_POST(self):  # pylint: disable=invalid-name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not self._record(body):
                    return self._reply(503, b"server request budget spent", "text/plain")
                params = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
                auth = self.headers.get("Authorization", "")
                if self.path != "/services/rest/" or 'oauth_consumer_key="%s"' % KEY not in auth:
                    return self._reply(403, b"unsigned", "text/plain")
                if params.get("method") != "flickr.photos.search" or params.get("format") != "json":
                    reply = {"stat": "fail", "code": 112, "message": "Method not found"}
                    return self._reply(200, json.dumps(reply).encode(), "application/json")
                assert params.get("sort") == "relevance" and "url_c" in params.get("extras", "")
                keyword, page = params.get("text"), int(params.get("page", 1))
                if (keyword, page) in fake.failing_pages:
                    return self._reply(500, b"internal error", "text/plain")
                pages = fake.searches.get(keyword, [])
                photos = pages[page - 1] if page <= len(pages) else []
                reply = {"photos": {"page": page, "pages": len(pages), "perpage": 5, "total": str(len(pages) * 5),
                                    "photo": photos}, "stat": "ok"}
                self._reply(200, json.dumps(reply).encode(), "application/json")

            def do_GET(self):  # pylint: disable=invalid-name
                if not self._record():
                    return self._reply(503, b"", "text/plain")
                name = self.path.rsplit("/", 1)[-1]
                if name.startswith("good"):
                    return self._reply(200, _image_bytes(int(name[4:])))
                if name == "png0":
                    return self._reply(200, _image_bytes(1000, "PNG"), "image/png")
                if name == "dup":
                    return self._reply(200, _image_bytes(0))
                if name == "slow":
                    time.sleep(4 * TIMEOUT)
                    return self._reply(200, _image_bytes(2000))
                if name == "html":
                    return self._reply(200, b"<html><body>Photo unavailable</body></html>", "text/html")
                if name == "htmlasimage":
                    return self._reply(200, b"<html><body>Photo unavailable</body></html>")
                if name == "huge":  # no Content-Length: the cap must hold while streaming
                    return self._reply(200, _image_bytes(3000) + b"\0" * (3 * CAP), length=False)
                if name == "hugelen":
                    return self._reply(200, b"\xff\xd8", length=10 ** 9)
                if name == "truncated":
                    data = _image_bytes(4000)  # Pillow's verify() passes, decoding fails
                    return self._reply(200, data[:len(data) * 3 // 4])
                if name == "flaky":
                    if fake.hits[self.path] == 1:
                        return self._reply(503, b"busy", "text/plain")
                    return self._reply(200, _image_bytes(5000))
                return self._reply(404, b"not found", "text/plain")

        return Handler


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv(download_flickr.ENV_KEY, KEY)
    monkeypatch.setenv(download_flickr.ENV_SECRET, SECRET)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _run(server, images_dir, classes=(1,), n=10, **kwargs):
    return download_flickr.download(list(classes), str(images_dir), n, keywords={2: "bike"},
                                    api_url=server.base + "/services/rest/", workers=3, timeout=TIMEOUT,
                                    max_bytes=CAP, retries=1, backoff=0.01, per_page=5, **kwargs)


def _kept(images_dir, c):
    with open(os.path.join(images_dir, "%02d" % c, "manifest.json")) as f:
        return json.load(f)


def _searched(requests, keyword, page):
    """The search requests for (keyword, page) among the server's recorded requests."""
    found = []
    for path, _, body in requests:
        params = urllib.parse.parse_qs(body.decode()) if path.endswith("/rest/") else {}
        if params.get("text") == [keyword] and params.get("page") == [str(page)]:
            found.append(params)
    return found


def _all_text(folder):
    text = b""
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                text += f.read()
    return text


def test_keeps_exactly_the_good_distinct_images_and_hides_the_secret(env, tmp_path, caplog, capfd):
    del env
    caplog.set_level(logging.DEBUG)  # flickrapi, requests and oauthlib log requests at debug level
    absl_logging.set_verbosity(absl_logging.DEBUG)
    images = tmp_path / "images"
    try:
        with FakeFlickr() as server:
            counts = _run(server, images, classes=(1, 2), n=10)
    finally:
        absl_logging.set_verbosity(absl_logging.INFO)
      # class 1 has 6 good distinct images for 10 wanted; class 2 stops at 10 > 6 too.
    assert counts == {1: 6, 2: 6}
    airplane = _kept(images, 1)
    assert [e["photo_id"] for e in airplane["images"]] == server.good["airplane"]
    assert [e["file"] for e in airplane["images"]] == ["%04d.jpg" % i for i in range(6)]
    assert sorted(os.listdir(images / "01")) == ["%04d.jpg" % i for i in range(6)] + ["manifest.json"]
    for e in airplane["images"]:
        assert e["url"].startswith(server.base) and e["owner"].startswith("owner")
        with Image.open(images / "01" / e["file"]) as im:
            assert im.format == "JPEG" and im.size == (32, 24)
    titles = {photo["id"]: photo["title"] for page in server.searches["airplane"] for photo in page}
    reasons = {titles[pid]: reason for pid, reason in airplane["rejected"].items()}
    assert reasons["missing"] == "HTTP 404"
    assert reasons["slow"].startswith("timeout")
    assert reasons["dup"].startswith("duplicate")
    assert reasons["html"] == "not an image (Content-Type text/html)"
    assert reasons["htmlasimage"].startswith("not an image")
    assert reasons["truncated"].startswith("not an image")
    assert reasons["huge"].startswith("larger") and reasons["hugelen"].startswith("larger")
    assert reasons["file:///etc/passwd"].startswith("not an http")
    assert len(reasons) == 10  # + the ftp URL; "nourl" is not a candidate
    assert server.hits["/img/missing"] == 1 and server.hits["/img/flaky"] == 2
    assert server.hits["/img/slow"] == 2  # one retry
    assert not [p for p, _, _ in server.requests if "passwd" in p or "x.jpg" in p]
    # The PNG was re-encoded as JPEG; hashes are of the downloaded payloads, all distinct.
    assert len({e["sha1"] for e in airplane["images"]}) == 6
    assert _kept(images, 2)["keyword"] == "bike"

    # Signed requests reached the server, and the secret appears nowhere.
    assert any("oauth_signature" in headers for path, headers, _ in server.requests if "rest" in path)
    captured = capfd.readouterr()
    assert "kept 6 of 10" in caplog.text
    for where in (caplog.text, captured.out, captured.err, _all_text(tmp_path).decode("latin-1"),
                  repr(server.requests)):
        assert SECRET not in where


def test_stops_at_n_and_resumes_after_an_interruption(env, tmp_path):
    del env
    images = tmp_path / "images"
    with FakeFlickr() as server:
        assert _run(server, images, classes=(2,), n=3) == {2: 3}
        bike = _kept(images, 2)
        assert [e["photo_id"] for e in bike["images"]] == server.good["bike"][:3]
        assert _searched(server.requests, "bike", 1) and not _searched(server.requests, "bike", 2)

        # Stopping at N in the middle of page 1 leaves page 1 to be read again by the next run.
        assert _run(server, images, classes=(1,), n=2) == {1: 2}
        assert _kept(images, 1)["next_page"] == 1 and server.hits["/img/missing"] == 1

        # A network failure on page 2 interrupts the run; the manifest keeps what was done.
        server.failing_pages.add(("airplane", 2))
        with pytest.raises(RuntimeError, match="page 2"):
            _run(server, images, classes=(1,), n=10)
        partial = _kept(images, 1)
        assert [e["photo_id"] for e in partial["images"]] == server.good["airplane"][:2]
        assert partial["next_page"] == 2
        assert server.hits["/img/missing"] == 1  # page 1 read again, its rejected photo not tried again

        server.failing_pages.clear()
        before, n_before = collections.Counter(server.hits), len(server.requests)
        assert _run(server, images, classes=(1, 2), n=10)[1] == 6
        assert [e["photo_id"] for e in _kept(images, 1)["images"]] == server.good["airplane"]
        assert server.hits["/img/good0"] == before["/img/good0"] == 1  # not downloaded again
        assert server.hits["/img/missing"] == 1  # a rejected photo is not tried again
        assert not _searched(server.requests[n_before:], "airplane", 1)  # resumed at page 2

        # Complete classes are skipped without any request.
        n_requests = len(server.requests)
        assert _run(server, images, classes=(2,), n=3) == {2: 6}
        assert len(server.requests) == n_requests


def test_missing_credentials_are_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(download_flickr.ENV_KEY, raising=False)
    monkeypatch.setenv(download_flickr.ENV_SECRET, SECRET)
    with pytest.raises(ValueError, match="FLICKR_API_KEY") as error:
        download_flickr.download([1], str(tmp_path), 5)
    assert SECRET not in str(error.value) and "FLICKR_API_SECRET" not in str(error.value)
    assert download_flickr.get_credentials({"FLICKR_API_KEY": "k", "FLICKR_API_SECRET": "s"}) == ("k", "s")
    assert download_flickr.parse_keywords(["20=tv monitor"]) == {20: "tv monitor"}
    with pytest.raises(ValueError, match="CLASS=WORDS"):
        download_flickr.parse_keywords(["monitor"])


def test_command_line_download_and_to_tfrecord(env, tmp_path):
    del env
    images, records = tmp_path / "images", tmp_path / "records"
    script = os.path.join(ROOT, "flickr", "download_flickr.py")
    with FakeFlickr() as server:
        result = subprocess.run(
            [sys.executable, script, "--classes=2", "--images_per_class=4", "--keywords=2=bike",
             "--api_url=%s/services/rest/" % server.base, "--images_dir=%s" % images, "--workers=2",
             "--timeout=2", "--retries=0", "--per_page=5", "--verbosity=1"],
            capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr
    assert len(_kept(images, 2)["images"]) == 4

    no_secret = {k: v for k, v in os.environ.items() if k != download_flickr.ENV_SECRET}
    result = subprocess.run([sys.executable, script, "--classes=2", "--images_dir=%s" % images],
                            capture_output=True, text=True, timeout=60, check=False, env=no_secret)
    assert result.returncode != 0 and "FLICKR_API_SECRET" in result.stderr

    result = subprocess.run(
        [sys.executable, script, "--to_tfrecord", "--classes=2", "--images_dir=%s" % images,
         "--tfrecord_dir=%s" % records, "--max_side=16"],
        capture_output=True, text=True, timeout=120, check=False, env=no_secret)
    assert result.returncode == 0, result.stderr[-3000:]
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    shapes = []
    for raw in tf.data.TFRecordDataset(str(records / "02.tfrecord")):
        ex = tf.io.parse_single_example(raw, {"input": tf.io.FixedLenFeature([], tf.string)})
        shapes.append(tuple(tf.io.decode_jpeg(ex["input"]).shape))
    assert shapes == [(12, 16, 3)] * 4
    assert sorted(os.listdir(records)) == ["02.tfrecord"]
