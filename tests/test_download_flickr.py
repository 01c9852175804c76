"""Tests of flickr/download_flickr.py against a Flickr-like HTTP server on 127.0.0.1 (no internet).

The server answers signed `flickr.photos.search` POSTs with paged JSON results and serves image URLs that
work, fail (404, 503), time out, return HTML, return a huge body, repeat an image, fail once, hold a PNG,
a truncated JPEG or a decompression bomb, drip bytes, redirect, or send malformed headers; search pages can
be replaced by malformed, dripping or endless replies. Every loop of the server is bounded, and it stops by
itself after a while or after a bounded number of requests.
"""
import collections
import copy
import email.utils
import functools
import hashlib
import http.server
import io
import json
import logging
import os
import shutil
import signal
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib

from absl import logging as absl_logging
import numpy as np
from PIL import Image
from PIL import ImageFile
import pytest

from conftest import ROOT
from flickr import download_flickr

KEY, SECRET = "test-key-0123", "S3cr3t-value-4f9d"
CAP = 100_000  # max_bytes in the tests
TIMEOUT = 0.25
DRIP_S = 0.2  # a dripping server sends one byte every DRIP_S
MB = 1 << 20
SCRIPT = os.path.join(ROOT, "flickr", "download_flickr.py")


def _image_bytes(i, fmt="JPEG", **save_kwargs):
    rng = np.random.default_rng(i)
    image = rng.integers(0, 255, size=(24, 32, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(image).save(out, format=fmt, **save_kwargs)
    return out.getvalue()


def _gradient_jpeg(width, height):
    """A smooth (so small) JPEG of width x height."""
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
    image = np.broadcast_to(x, (height, width, 3))
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(out, format="JPEG")
    return out.getvalue()


@functools.lru_cache(maxsize=None)
def _png_bomb(width=13000, height=13000):
    """A valid ~20 KB black 1-bit PNG of width x height (decoded as RGB: width x height x 3 bytes)."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + the packed pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


COMMENTED = _image_bytes(7000, comment=b"kept byte for byte")
HTML, TRUNCATED = b"<html><body>Photo unavailable</body></html>", _image_bytes(4000)
# The server's fixed image replies: name -> (status, body, Content-Type, Content-Length (None: the true
# one, False: none, else this value), extra headers).
FIXED = {
    "png0": (200, _image_bytes(1000, "PNG"), "image/png", None, None),
    "dup": (200, _image_bytes(0), "image/jpeg", None, None),
    "html": (200, HTML, "text/html", None, None),
    "htmlasimage": (200, HTML, "image/jpeg", None, None),
    "huge": (200, _image_bytes(3000) + b"\0" * (3 * CAP), "image/jpeg", False, None),  # capped while read
    "hugelen": (200, b"\xff\xd8", "image/jpeg", 10 ** 9, None),
    "badlen": (200, _image_bytes(3100), "image/jpeg", "12abc", None),
    "neglen": (200, _image_bytes(3200), "image/jpeg", -5, None),
    "truncated": (200, TRUNCATED[:len(TRUNCATED) * 3 // 4], "image/jpeg", None, None),  # verify() passes
    "busy": (503, b"busy", "text/plain", None, {"Retry-After": "3600"}),
    "down": (503, b"down", "text/plain", None, None),
    "bomb": (200, _png_bomb(), "image/png", None, None),
    "big": (200, _gradient_jpeg(1200, 600), "image/jpeg", None, None),
    "commented": (200, COMMENTED, "image/jpeg", None, None),
    "redirect": (302, b"", "text/plain", None, {"Location": "/img/good7"}),
    "redirectfile": (302, b"", "text/plain", None, {"Location": "file:///etc/passwd"}),
}


def _photo(pid, name):
    """A search result named `name`; a non-string `name` is sent as is (a malformed result)."""
    if not isinstance(name, str):
        return copy.deepcopy(name)
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
            pages[-1].append(_photo(pid, name.rstrip("*") if isinstance(name, str) else name))
            if isinstance(name, str) and name.endswith("*"):
                good.append(str(pid))
            pid += 1
    return pages, good


class FakeFlickr:
    """Flickr-like server: POST /services/rest/ (search) and GET /img/<name>.

    Attributes the tests set: failing_pages {(keyword, page)} answered HTTP 500; page_failures
    {(keyword, page): [(status, headers), ...]} answered once each, in turn; page_replies
    {(keyword, page): bytes or "drip" / "driphead" / "stream" / "announced"}; refuse_key (answer "Invalid
    API Key"); on_image (called with the image name before each image reply). With tls=(key file,
    certificate file), it speaks HTTPS.
    """

    def __init__(self, searches=None, lifetime_s=60, max_requests=500, tls=None):
        searches = {"airplane": AIRPLANE, "bike": BIKE} if searches is None else searches
        self.searches, self.good = {}, {}
        for i, (keyword, spec) in enumerate(searches.items()):
            self.searches[keyword], self.good[keyword] = _pages(spec, 100 * (i + 1))
        self.hits = collections.Counter()
        self.sent = collections.Counter()  # bytes sent by the dripping and endless replies
        self.requests = []  # (path, headers, body) of every request
        self.failing_pages, self.page_failures, self.page_replies = set(), {}, {}
        self.refuse_key, self.on_image = False, None
        self.max_requests = max_requests
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]
        if tls:  # (key file, certificate file): HTTPS
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls[1], tls[0])
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.base = self.base.replace("http:", "https:")
        for pages in self.searches.values():
            for photo in (p for page in pages for p in page if isinstance(p, dict)):
                if isinstance(photo.get("url_c"), str):
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
        self.stopping.set()
        self.watchdog.cancel()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):

            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status, body=b"", content_type="image/jpeg", length=None, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if length is not False:
                    self.send_header("Content-Length", str(len(body) if length is None else length))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout, size cap)
                    pass

            def _drip(self, head):
                """One byte every DRIP_S, inside the headers or the body, until the client leaves."""
                start = b"HTTP/1.1 200 OK\r\nX-Drip: " if head else (
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
                try:
                    self.wfile.write(start)
                    for _ in range(200):  # 40 s at most, far beyond every deadline of the tests
                        if fake.stopping.wait(DRIP_S):
                            break
                        self.wfile.write(b"a" if head else b" ")
                        with fake.lock:
                            fake.sent["drip"] += 1
                except OSError:
                    pass

            def _stream(self):
                """An endless JSON reply without Content-Length (300 MB at most), until the client leaves."""
                self._reply(200, b'{"stat": "ok", "photos": {"page": 1, "pages": 1, "photo": [',
                            "application/json", length=False)
                chunk = b'{"id": "1", "url_c": "http://127.0.0.1:9/x.jpg"}, ' * 1000
                try:
                    for _ in range(300 * MB // len(chunk)):
                        if fake.stopping.is_set():
                            break
                        self.wfile.write(chunk)
                        with fake.lock:
                            fake.sent["stream"] += len(chunk)
                except OSError:
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
                path = urllib.parse.urlsplit(self.path).path  # an absolute URI through a proxy
                if path != "/services/rest/" or 'oauth_consumer_key="%s"' % KEY not in auth:
                    return self._reply(403, b"unsigned", "text/plain")
                if fake.refuse_key:  # echoes the key, as a careless server could
                    reply = {"stat": "fail", "code": 100, "message": "Invalid API Key (%s)" % KEY}
                    return self._reply(200, json.dumps(reply).encode(), "application/json")
                if params.get("method") != "flickr.photos.search" or params.get("format") != "json":
                    reply = {"stat": "fail", "code": 112, "message": "Method not found"}
                    return self._reply(200, json.dumps(reply).encode(), "application/json")
                assert params.get("sort") == "relevance" and "url_c" in params.get("extras", "")
                keyword, page = params.get("text"), int(params.get("page", 1))
                if (keyword, page) in fake.failing_pages:
                    return self._reply(500, b"internal error", "text/plain")
                if fake.page_failures.get((keyword, page)):
                    status, headers = fake.page_failures[(keyword, page)].pop(0)
                    return self._reply(status, b"busy", "text/plain", headers=headers)
                special = fake.page_replies.get((keyword, page))
                if special in ("drip", "driphead"):
                    return self._drip(head=special == "driphead")
                if special == "stream":
                    return self._stream()
                if special == "announced":
                    return self._reply(200, b'{"photos": ', "application/json", length=300 * MB)
                if isinstance(special, bytes):
                    return self._reply(200, special, "application/json")
                pages = fake.searches.get(keyword, [])
                photos = pages[page - 1] if page <= len(pages) else []
                reply = {"photos": {"page": page, "pages": len(pages), "perpage": 5,
                                    "total": str(len(pages) * 5), "photo": photos}, "stat": "ok"}
                self._reply(200, json.dumps(reply).encode(), "application/json")

            def do_GET(self):  # pylint: disable=invalid-name
                if not self._record():
                    return self._reply(503, b"", "text/plain")
                name = urllib.parse.urlsplit(self.path).path.rsplit("/", 1)[-1]
                if fake.on_image:
                    fake.on_image(name)
                first = fake.hits[self.path] == 1
                if name in FIXED:
                    status, body, content_type, length, headers = FIXED[name]
                    return self._reply(status, body, content_type, length, headers)
                if name.startswith("good"):
                    return self._reply(200, _image_bytes(int(name[4:])))
                if name == "slow":
                    time.sleep(4 * TIMEOUT)
                    return self._reply(200, _image_bytes(2000))
                if name == "flaky" and first:  # 503 once
                    return self._reply(503, b"busy", "text/plain")
                if name == "flaky":
                    return self._reply(200, _image_bytes(5000))
                if name == "ratelimit" and first:  # 429 once, asking for a 1 s wait
                    return self._reply(429, b"slow down", "text/plain", headers={"Retry-After": "1"})
                if name == "ratelimit":
                    return self._reply(200, _image_bytes(6000))
                if name in ("driphead", "dripbody"):
                    return self._drip(head=name == "driphead")
                return self._reply(404, b"not found", "text/plain")

        return Handler


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv(download_flickr.ENV_KEY, KEY)
    monkeypatch.setenv(download_flickr.ENV_SECRET, SECRET)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _limits(**overrides):
    """Small Limits for the tests."""
    kwargs = dict(timeout=TIMEOUT, deadline=2.0, retries=1, backoff=0.01, max_bytes=CAP)
    return download_flickr.Limits(**{**kwargs, **overrides})


def _run(server, images_dir, classes=(1,), n=10, keywords=None, workers=3, api_url=None, **limits):
    return download_flickr.download(list(classes), str(images_dir), n, keywords=keywords or {2: "bike"},
                                    api_url=api_url or server.base + "/services/rest/", workers=workers,
                                    per_page=5, limits=_limits(**limits))


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


def _image_hits(server):
    return {path: n for path, n in server.hits.items() if "/img/" in path}


def _all_text(folder):
    text = b""
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                text += f.read()
    return text


def test_keeps_exactly_the_good_distinct_images_and_never_logs_the_key(env, tmp_path, caplog, capfd):
    del env
    caplog.set_level(logging.DEBUG)  # oauthlib and requests_oauthlib log the signed request at debug level
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
    assert reasons["dup"].startswith("duplicate")
    assert reasons["html"] == "not an image (Content-Type text/html)"
    assert reasons["htmlasimage"].startswith("not an image")
    assert reasons["truncated"].startswith("not an image")
    assert reasons["huge"].startswith("larger") and reasons["hugelen"].startswith("larger")
    assert reasons["file:///etc/passwd"].startswith("not an http")
    # + the ftp URL; "nourl" is not a candidate; "slow" timed out: transient, not recorded.
    assert len(reasons) == 9 and "slow" not in reasons
    assert "'timeout (tried again next run)': 1" in caplog.text
    assert airplane["next_page"] == 2  # the next run reads page 2 again, for "slow"
    assert server.hits["/img/missing"] == 1 and server.hits["/img/flaky"] == 2
    assert server.hits["/img/slow"] == 2  # one retry
    assert not [p for p, _, _ in server.requests if "passwd" in p or "x.jpg" in p]
    # The PNG was re-encoded as JPEG; hashes are of the downloaded payloads, all distinct.
    assert len({e["sha1"] for e in airplane["images"]}) == 6
    assert _kept(images, 2)["keyword"] == "bike"

    # Signed requests reached the server; debug lines were captured, and neither key nor secret is in
    # any of them (oauthlib's debug lines hold the key), nor in the files, nor in the search bodies.
    assert any("oauth_signature" in headers for path, headers, _ in server.requests if "rest" in path)
    assert "photo %s rejected: HTTP 404" % {v: k for k, v in titles.items()}["missing"] in caplog.text
    assert any(r.levelno == logging.DEBUG and r.name == "absl" for r in caplog.records)
    captured = capfd.readouterr()
    assert "kept 6 of 10" in caplog.text
    for where in (caplog.text, captured.out, captured.err, _all_text(tmp_path).decode("latin-1")):
        assert SECRET not in where and KEY not in where
    assert SECRET not in repr(server.requests)
    assert not [body for _, _, body in server.requests if KEY.encode() in body]  # the key is in a header


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


def test_a_kill_mid_page_loses_no_kept_image(env, tmp_path):
    """SIGKILL of the command line while it downloads page 1: the rerun fetches no kept image again."""
    del env
    images = tmp_path / "images"
    spec = {"kill": [["good%d*" % i for i in range(80, 88)]]}
    child = {}

    def kill_at_the_fourth_image(name):
        if name == "good83" and "process" in child:
            time.sleep(0.5)  # lets the child store the first three
            child.pop("process").kill()

    with FakeFlickr(spec) as server, open(tmp_path / "stderr.txt", "w") as stderr:
        server.on_image = kill_at_the_fourth_image
        child["process"] = subprocess.Popen(
            [sys.executable, SCRIPT, "--classes=1", "--keywords=1=kill", "--images_per_class=8",
             "--api_url=%s/services/rest/" % server.base, "--images_dir=%s" % images, "--workers=1",
             "--timeout=2", "--deadline=5", "--retries=0", "--per_page=10"],
            stdout=subprocess.DEVNULL, stderr=stderr, env=dict(os.environ))
        process = child["process"]
        assert process.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text()
        after_kill = _kept(images, 1)  # a valid manifest: written atomically
        kept_before = [e["photo_id"] for e in after_kill["images"]]
        assert kept_before and kept_before == server.good["kill"][:len(kept_before)]
        assert _run(server, images, n=8, keywords={1: "kill"}) == {1: 8}
    assert [e["photo_id"] for e in _kept(images, 1)["images"]] == server.good["kill"]
    fetched = _image_hits(server)
    for e in after_kill["images"]:
        assert fetched[urllib.parse.urlsplit(e["url"]).path] == 1, e  # landed before the kill: kept
    assert sum(fetched.values()) <= 8 + 1  # at most the image in flight at the kill is fetched twice


@pytest.mark.parametrize("what", ["image headers", "image body", "search headers", "search body"])
def test_a_dripping_server_cannot_stretch_the_deadline(env, what):
    """One byte every 0.2 s never trips a 1 s read timeout; the 1 s deadline still ends the call."""
    del env
    limits = download_flickr.Limits(timeout=1.0, deadline=1.0, retries=3, backoff=0.01)
    with FakeFlickr() as server:
        start = time.monotonic()
        if what.startswith("image"):
            with pytest.raises(download_flickr.TransientError, match="deadline"):
                download_flickr.fetch_image(server.base + "/img/drip" + what.split()[1][:4], limits)
        else:
            server.page_replies[("bike", 1)] = "driphead" if what.endswith("headers") else "drip"
            search = download_flickr.FlickrSearch(KEY, SECRET, server.base + "/services/rest/", limits)
            with pytest.raises(RuntimeError, match="deadline"):
                search.page("bike", 1, 5)
        elapsed = time.monotonic() - start
        assert 0.9 * limits.deadline < elapsed < 3 * limits.deadline
        assert server.sent["drip"] >= 3  # the server did drip


def test_https_checks_the_certificate_and_keeps_the_deadline(env, tmp_path, monkeypatch):
    del env
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    key, cert = str(tmp_path / "key.pem"), str(tmp_path / "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)

    def trusting_the_test_certificate():
        return ssl.create_default_context(cafile=cert)

    with FakeFlickr(tls=(key, cert)) as server:
        assert server.base.startswith("https://")
        # The real context (certifi's authorities) refuses the self-signed certificate.
        with pytest.raises(download_flickr.TransientError, match="SSLCertVerificationError"):
            download_flickr.fetch_image(server.base + "/img/good3", _limits(retries=0))
        monkeypatch.setattr(download_flickr, "_ssl_context", trusting_the_test_certificate)
        assert download_flickr.fetch_image(server.base + "/img/good3", _limits())[0] == _image_bytes(3)
        # A drip inside TLS ends by the deadline too (the watchdog shuts the socket under TLS).
        limits = download_flickr.Limits(timeout=1.0, deadline=1.0, retries=3, backoff=0.01)
        start = time.monotonic()
        with pytest.raises(download_flickr.TransientError, match="deadline"):
            download_flickr.fetch_image(server.base + "/img/driphead", limits)
        assert time.monotonic() - start < 3 * limits.deadline


def test_a_huge_search_reply_is_cut_at_the_cap_and_its_page_skipped(env, tmp_path, caplog):
    del env
    caplog.set_level(logging.INFO)
    with FakeFlickr({"wide": [["good40*"], ["good41*"], ["good42*"]]}) as server:
        server.page_replies[("wide", 1)] = "stream"  # 300 MB of JSON, no Content-Length
        server.page_replies[("wide", 2)] = "announced"  # Content-Length: 300 MB
        start = time.monotonic()
        assert _run(server, tmp_path, n=5, keywords={1: "wide"}, max_reply_bytes=MB) == {1: 1}
        assert time.monotonic() - start < 5
    assert MB < server.sent["stream"] < 32 * MB  # stopped early: the client left after 1 MB
    assert "page 1 skipped: larger than 1048576 bytes" in caplog.text
    assert "page 2 skipped: larger than 1048576 bytes" in caplog.text
    assert "'larger than 1048576 bytes': 2" in caplog.text  # counted
    assert [e["photo_id"] for e in _kept(tmp_path, 1)["images"]] == server.good["wide"][2:]


def test_a_decompression_bomb_is_rejected_from_its_header(env, monkeypatch):
    """A 20 KB PNG of 13000 x 13000 is rejected before any pixel is decoded, whatever Pillow's limit."""
    del env
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's own check off: ours must hold
    bomb = _png_bomb()
    with Image.open(io.BytesIO(bomb)) as im:
        assert len(bomb) < 40_000 and im.size == (13000, 13000)
    decoded = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im.size) or load(im))
    with FakeFlickr() as server:
        start = time.monotonic()
        with pytest.raises(download_flickr.RejectedError, match=r"too many pixels \(13000x13000"):
            download_flickr.fetch_image(server.base + "/img/bomb", download_flickr.Limits(timeout=2))
        assert time.monotonic() - start < 2 and decoded == []
        # The cap is exact: 32 x 24 = 768 pixels.
        url = server.base + "/img/good1"
        assert download_flickr.fetch_image(url, _limits(max_pixels=768))[0] == _image_bytes(1)
        assert decoded == [(32, 24)]
        with pytest.raises(download_flickr.RejectedError, match="too many pixels"):
            download_flickr.fetch_image(url, _limits(max_pixels=767))


def test_jpegs_keep_their_bytes_and_other_images_are_reencoded(env, tmp_path):
    del env
    with FakeFlickr({"mixed": [["commented*", "png0*", "big*", "redirect*", "redirectfile"]]}) as server:
        assert _run(server, tmp_path, n=5, keywords={1: "mixed"}, max_side=100) == {1: 4}
    manifest = _kept(tmp_path, 1)
    stored = [(tmp_path / "01" / e["file"]).read_bytes() for e in manifest["images"]]
    # A JPEG within max_side: the downloaded bytes, comment included.
    assert stored[0] == COMMENTED and b"kept byte for byte" in stored[0]
    # A PNG: re-encoded as JPEG, quality 95.
    reference = io.BytesIO()
    Image.open(io.BytesIO(_image_bytes(1000, "PNG"))).convert("RGB").save(reference, "JPEG", quality=95)
    assert stored[1] == reference.getvalue()
    # A 1200 x 600 JPEG: shrunk to max_side, aspect ratio kept, re-encoded.
    with Image.open(io.BytesIO(stored[2])) as im:
        assert im.format == "JPEG" and im.size == (100, 50)
    # A redirect is followed (to good7, within max_side: kept as is); one to file:// is rejected.
    assert stored[3] == _image_bytes(7) and server.hits["/img/good7"] == 1
    assert list(manifest["rejected"].values()) == ["not an http(s) URL"]
    # The manifest's SHA-1 is of the download, whatever was stored.
    downloads = [COMMENTED, _image_bytes(1000, "PNG"), _gradient_jpeg(1200, 600), _image_bytes(7)]
    assert [e["sha1"] for e in manifest["images"]] == [hashlib.sha1(d).hexdigest() for d in downloads]


  # One malformed thing each: (photo between two good ones, or a replacement of search page 1; reason).
MALFORMED = {
    "bad Content-Length": ("badlen", "bad Content-Length"),
    "negative Content-Length": ("neglen", "bad Content-Length"),
    "missing id": ({"url_c": "{base}/img/good55"}, "malformed photo (no id)"),
    "id of a wrong type": ({"id": {"n": 1}, "url_c": "{base}/img/good55"}, "malformed photo (no id)"),
    "photo not an object": (["not", "a", "photo"], "malformed photo (no id)"),
    "numeric url_c": ({"id": "901", "url_c": 12345}, "not an http(s) URL"),
    "url_c a list": ({"id": "902", "url_c": ["http://127.0.0.1/x.jpg"]}, "not an http(s) URL"),
    "url_c with a bad port": ({"id": "903", "url_c": "http://127.0.0.1:port/x.jpg"}, "not an http(s) URL"),
    "non-numeric page count": (b'{"stat": "ok", "photos": {"pages": "many", "photo": []}}', "page count"),
    "photos not an object": (b'{"stat": "ok", "photos": ["x"]}', "photos is not an object"),
    "photo not a list": (b'{"stat": "ok", "photos": {"pages": 2, "photo": {"id": "1"}}}', "not a list"),
    "page not JSON": (b"<html>Service unavailable</html>", "not JSON"),
    "page JSON not an object": (b"[1, 2, 3]", "not a JSON object"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_field_rejects_only_its_photo_or_page(env, tmp_path, caplog, kind):
    del env
    caplog.set_level(logging.INFO)
    thing, reason = MALFORMED[kind]
    page_kind = isinstance(thing, bytes)
    spec = [["good50*", "good51*"], ["good52*", "good53*"]] if page_kind else [["good50*", thing, "good51*"]]
    with FakeFlickr({"odd": spec}) as server:
        if page_kind:
            server.page_replies[("odd", 1)] = thing
        for _ in range(2):  # the rerun does not crash at the same place either
            assert _run(server, tmp_path, n=5, keywords={1: "odd"}) == {1: 2}
            assert all(n == 1 for n in _image_hits(server).values())  # nothing fetched twice
    manifest = _kept(tmp_path, 1)
    assert [e["photo_id"] for e in manifest["images"]] == server.good["odd"][-2:]
    recorded = list(manifest["rejected"].values())
    if recorded:
        assert len(recorded) == 1 and recorded[0].startswith(reason)
    else:  # no id to record it under, or a page: counted in the first run's summary
        summary = [r.getMessage() for r in caplog.records if "skipped this run" in r.getMessage()][0]
        assert "rejected 0 {}" in summary and reason in summary and summary.endswith(": 1}"), summary


def test_retry_after_is_honoured_within_a_cap_and_the_deadline(env):
    del env
    assert download_flickr._retry_after("7") == 7  # pylint: disable=protected-access
    in_30_s = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 < download_flickr._retry_after(in_30_s) <= 30  # pylint: disable=protected-access
    assert download_flickr._retry_after("soon") is None  # pylint: disable=protected-access
    with FakeFlickr() as server:
        # 429 with Retry-After: 1, then the image: the wait is the server's, not the 0.01 s back-off.
        start = time.monotonic()
        limits = download_flickr.Limits(timeout=1, deadline=5, retries=2, backoff=0.01, max_retry_after=3)
        assert download_flickr.fetch_image(server.base + "/img/ratelimit", limits)[0] == _image_bytes(6000)
        assert 0.9 < time.monotonic() - start < 3 and server.hits["/img/ratelimit"] == 2

        # Retry-After: 3600 is capped (0.2 s), and the deadline (1.5 s) ends the retries.
        start = time.monotonic()
        limits = download_flickr.Limits(timeout=1, deadline=1.5, retries=20, backoff=0.01,
                                        max_retry_after=0.2)
        with pytest.raises(download_flickr.TransientError, match="HTTP 503"):
            download_flickr.fetch_image(server.base + "/img/busy", limits)
        # Uncapped, the first 3600 s wait would pass the deadline: one attempt only.
        assert time.monotonic() - start < 2 and server.hits["/img/busy"] >= 3

        # A search page answered 503 with Retry-After: 1 is asked again a second later.
        server.page_failures[("bike", 1)] = [(503, {"Retry-After": "1"})]
        limits = download_flickr.Limits(timeout=1, deadline=5, retries=2, backoff=0.01, max_retry_after=3)
        search = download_flickr.FlickrSearch(KEY, SECRET, server.base + "/services/rest/", limits)
        start = time.monotonic()
        photos, pages = search.page("bike", 1, 5)
        assert len(photos) == 4 and pages == 2 and time.monotonic() - start > 0.9
        assert len(_searched(server.requests, "bike", 1)) == 2


def test_transient_failures_are_not_recorded_and_are_tried_again(env, tmp_path, caplog):
    del env
    caplog.set_level(logging.INFO)
    with FakeFlickr({"shaky": [["good60*", "down", "slow"], ["good61*"]]}) as server:
        assert _run(server, tmp_path, n=5, keywords={1: "shaky"}) == {1: 2}
        manifest = _kept(tmp_path, 1)
        assert manifest["rejected"] == {} and manifest["next_page"] == 1
        assert "'HTTP 503 (tried again next run)': 1" in caplog.text
        assert "'timeout (tried again next run)': 1" in caplog.text
        assert server.hits["/img/down"] == 2 and server.hits["/img/slow"] == 2  # one retry each

        assert _run(server, tmp_path, n=5, keywords={1: "shaky"}) == {1: 2}
        assert server.hits["/img/down"] == 4 and server.hits["/img/slow"] == 4  # tried again
        assert server.hits["/img/good60"] == server.hits["/img/good61"] == 1  # kept ones are not


def test_a_proxy_named_by_the_environment_is_used(env, tmp_path, monkeypatch):
    del env
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("no_proxy", raising=False)
    spec = {"far": [["http://photos.example.invalid/img/good70", "http://photos.example.invalid/img/good71"]]}
    with FakeFlickr(spec) as server:
        monkeypatch.setenv("http_proxy", server.base)  # .invalid names never resolve: only the proxy works
        api_url = "http://api.example.invalid/services/rest/"
        assert _run(server, tmp_path, n=5, keywords={1: "far"}, api_url=api_url, retries=0) == {1: 2}
    paths = [path for path, _, _ in server.requests]
    assert "http://photos.example.invalid/img/good70" in paths
    assert "http://api.example.invalid/services/rest/" in paths


def test_missing_credentials_and_bad_arguments_are_clear_errors(monkeypatch, tmp_path):
    monkeypatch.delenv(download_flickr.ENV_KEY, raising=False)
    monkeypatch.setenv(download_flickr.ENV_SECRET, SECRET)
    with pytest.raises(ValueError, match="FLICKR_API_KEY") as error:
        download_flickr.download([1], str(tmp_path), 5)
    assert SECRET not in str(error.value) and "FLICKR_API_SECRET" not in str(error.value)
    assert download_flickr.get_credentials({"FLICKR_API_KEY": "k", "FLICKR_API_SECRET": "s"}) == ("k", "s")
    assert download_flickr.parse_keywords(["20=tv monitor"]) == {20: "tv monitor"}
    with pytest.raises(ValueError, match="CLASS=WORDS"):
        download_flickr.parse_keywords(["monitor"])
    with pytest.raises(ValueError, match="deadline must be > 0"):
        download_flickr.Limits(deadline=0)
    with pytest.raises(ValueError, match="per_page"):
        download_flickr.check_download([1], str(tmp_path), 5, per_page=501)
    (tmp_path / "01").mkdir()
    (tmp_path / "01" / "manifest.json").write_text('{"images": [], "rejected": {}, "next_page": 1, '
                                                   '"keyword": "boat"}')
    with pytest.raises(ValueError, match="made for keyword 'boat'"):
        download_flickr.check_download([1], str(tmp_path), 5)
    (tmp_path / "01" / "manifest.json").write_text('{"images": ')
    with pytest.raises(ValueError, match="is not a manifest"):
        download_flickr.check_download([1], str(tmp_path), 5)


def test_user_errors_exit_with_status_2_and_a_clean_message(env, tmp_path):
    del env
    no_secret = {k: v for k, v in os.environ.items() if k != download_flickr.ENV_SECRET}
    cases = {  # name: (arguments, environment, expected text)
        "missing secret": ([], no_secret, "FLICKR_API_SECRET"),
        "bad count": (["--images_per_class=0"], None, "images_per_class must be"),
        "bad class": (["--classes=1,x"], None, "--classes"),
        "bad deadline": (["--deadline=0"], None, "deadline must be > 0"),
        "no folder": (["--to_tfrecord"], None, "not found (run the download first)"),
        "ade class": (["--dataset=ade20k", "--classes=2,151"], None,
                      "--classes: expected class ids of ade20k (1..150) such as 1,2,20, got ['2', '151']"),
        "refused key": (["--retries=0"], None, "Flickr refused the credentials"),
    }
    with FakeFlickr() as server:
        server.refuse_key = True
        processes = {
            name: subprocess.Popen(
                [sys.executable, SCRIPT, "--classes=2", "--images_dir=%s" % (tmp_path / name),
                 "--api_url=%s/services/rest/" % server.base] + args,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ or dict(os.environ))
            for name, (args, environ, _) in cases.items()}
        outputs = {name: p.communicate(timeout=60) for name, p in processes.items()}
    for name, (_, _, expected) in cases.items():
        out, err = outputs[name]
        assert processes[name].returncode == 2, (name, err[-2000:])
        assert expected in err and "Traceback" not in err, (name, err[-2000:])
        assert KEY not in out + err and SECRET not in out + err, name


def test_command_line_download_and_to_tfrecord(env, tmp_path):
    del env
    images, records = tmp_path / "images", tmp_path / "records"
    with FakeFlickr() as server:
        result = subprocess.run(
            [sys.executable, SCRIPT, "--classes=2", "--images_per_class=4", "--keywords=2=bike",
             "--api_url=%s/services/rest/" % server.base, "--images_dir=%s" % images, "--workers=2",
             "--timeout=2", "--deadline=10", "--retries=0", "--per_page=5", "--verbosity=1"],
            capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr and KEY not in result.stdout + result.stderr
    assert len(_kept(images, 2)["images"]) == 4

    no_secret = {k: v for k, v in os.environ.items() if k != download_flickr.ENV_SECRET}
    result = subprocess.run(
        [sys.executable, SCRIPT, "--to_tfrecord", "--classes=2", "--images_dir=%s" % images,
         "--output_dir=%s" % records, "--max_side=16"],
        capture_output=True, text=True, timeout=120, check=False, env=no_secret)
    assert result.returncode == 0, result.stderr[-3000:]
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    shapes = []
    for raw in tf.data.TFRecordDataset(str(records / "02.tfrecord")):
        ex = tf.io.parse_single_example(raw, {"input": tf.io.FixedLenFeature([], tf.string)})
        shapes.append(tuple(tf.io.decode_jpeg(ex["input"]).shape))
    assert shapes == [(12, 16, 3)] * 4
    assert sorted(os.listdir(records)) == ["02.tfrecord"]


# ------------------------------------------------------------------------------------------ ADE20K's classes

# ADE20K classes, their web keywords (datasets.ADE20K.web_keywords: 100's name "buffet" is searched as "sideboard")
# and the server's results; two- and three-digit class folders side by side (10, 100, 101: no prefix confusion).
ADE_SEARCHES = {"building": [["good20*", "good21*"]], "sideboard": [["good22*", "good23*"]],
                "poster": [["good24*", "missing", "good25*"]], "flag": [["good26*", "good27*"]],
                "grass": [["good28*", "good29*"]]}
ADE_CLASSES = {2: "building", 10: "grass", 100: "sideboard", 101: "poster", 150: "flag"}


def test_ade20k_classes_download_into_three_digit_folders_and_records(env, tmp_path):
    """--dataset=ade20k: each class is searched with its ADE20K keyword into <data_dir>/.../images/{cc}/ (02, 10,
    100, 101, 150), and --to_tfrecord turns each folder into {cc}.tfrecord holding that class's images only."""
    del env
    from datasets import ADE20K  # pylint: disable=g-import-not-at-top
    assert {c: ADE20K.web_keywords[c] for c in ADE_CLASSES} == ADE_CLASSES
    data = tmp_path / "ade20k" / "data"
    with FakeFlickr(searches=ADE_SEARCHES) as server:
        result = subprocess.run(
            [sys.executable, SCRIPT, "--dataset=ade20k", "--classes=%s" % ",".join(map(str, ADE_CLASSES)),
             "--data_dir=%s" % data, "--images_per_class=2", "--api_url=%s/services/rest/" % server.base,
             "--workers=2", "--timeout=2", "--deadline=10", "--retries=0", "--per_page=5"],
            capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ))
        searched = {urllib.parse.parse_qs(body.decode())["text"][0] for path, _, body in server.requests
                    if path.endswith("/rest/")}
        good = server.good
    assert result.returncode == 0, result.stderr[-3000:]
    assert searched == set(ADE_CLASSES.values())
    images = data / "replay_images" / "flickr" / "images"
    assert sorted(os.listdir(images)) == ["02", "10", "100", "101", "150"]
    for c, keyword in ADE_CLASSES.items():
        manifest = _kept(images, c)
        assert (manifest["class"], manifest["keyword"]) == (c, keyword)
        assert [e["photo_id"] for e in manifest["images"]] == good[keyword]
        assert download_flickr.class_files(str(images), c) == ["0000.jpg", "0001.jpg"]
    assert "class 101 (poster): kept 2 of 2 wanted" in result.stderr

    records = data / "replay_images" / "flickr"
    counts = download_flickr.folders_to_tfrecords(str(images), str(records), list(ADE_CLASSES))
    assert counts == {c: 2 for c in ADE_CLASSES}
    assert sorted(n for n in os.listdir(records) if n.endswith(".tfrecord")) == [
        "02.tfrecord", "10.tfrecord", "100.tfrecord", "101.tfrecord", "150.tfrecord"]
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    for c in ADE_CLASSES:  # each record holds its own class's images, in manifest order (not 10's or 100's)
        stored = [np.asarray(Image.open(images / ("%02d" % c) / n), np.float32) for n in ("0000.jpg", "0001.jpg")]
        for i, raw in enumerate(tf.data.TFRecordDataset(str(records / ("%02d.tfrecord" % c)))):
            data_bytes = tf.train.Example.FromString(raw.numpy()).features.feature["input"].bytes_list.value[0]
            image = tf.io.decode_jpeg(data_bytes).numpy().astype(np.float32)
            assert np.abs(image - stored[i]).mean() < 8, (c, i)
            assert all(np.abs(image - other).mean() > 40 for j, other in enumerate(stored) if j != i), (c, i)
