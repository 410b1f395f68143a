import hashlib
import os
import shutil
import subprocess
import sys

import pytest
import requests

from conftest import free_port, raw, wait_listening

SIZES = [0, 1, 4095, 4096, 1024 * 1024 + 1, 100 * 1024 * 1024]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    data = {}
    for n in SIZES:
        blob = os.urandom(min(n, 1 << 20))
        body = (blob * (n // max(len(blob), 1) + 1))[:n]
        (root / f"f{n}.bin").write_bytes(body)
        data[n] = hashlib.sha256(body).hexdigest()
    (root / "page.html").write_text("<h1>hi</h1>")
    (root / "page.html.gz").write_bytes(b"gzipped")
    (root / "page.html.br").write_bytes(b"brotli")
    (root / "dir").mkdir()
    (root / "dir" / "index.html").write_text("dir index")
    return root, data


def check_bodies(url, data):
    for n, digest in data.items():
        r = requests.get(f"{url}/f{n}.bin")
        assert r.status_code == 200
        assert int(r.headers["Content-Length"]) == n
        assert hashlib.sha256(r.content).hexdigest() == digest, n


def raw_get(url, **headers):
    """The bytes as sent: no client-side decoding of Content-Encoding."""
    r = requests.get(url, headers=headers, stream=True)
    return r.raw.read(decode_content=False)


def check_http(url, port):
    r = requests.get(url + "/page.html", headers={"Accept-Encoding": "identity"})
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    etag = r.headers["ETag"]
    assert requests.get(url + "/page.html", headers={"If-None-Match": etag, "Accept-Encoding": "identity"}).status_code == 304
    r = requests.get(url + "/f4096.bin", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and len(r.content) == 10
    assert requests.get(url + "/f4096.bin", headers={"Range": "bytes=5000-"}).status_code == 416
    assert raw_get(url + "/page.html", **{"Accept-Encoding": "gzip, br"}) == b"brotli"
    assert raw_get(url + "/page.html", **{"Accept-Encoding": "gzip"}) == b"gzipped"
    assert raw_get(url + "/page.html", **{"Accept-Encoding": "identity"}) == b"<h1>hi</h1>"
    assert requests.get(url + "/dir/").text == "dir index"
    for evil in (b"/../../../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd", b"/..%2f..%2fetc%2fpasswd",
                 b"/dir/..%5c..%5cetc", b"/a%00b"):
        prefix = url.split(str(port), 1)[1].encode()
        out = raw(port, b"GET " + prefix + evil + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert out.split(b" ", 2)[1] in (b"400", b"404"), evil
        assert b"root:" not in out


def test_cli_static(serve, files):
    root, data = files
    s = serve(None, "--static", f"/static={root}")
    check_bodies(s.url + "/static", data)
    check_http(s.url + "/static", s.port)


def test_server_static_next_to_an_app(serve, files):
    root, data = files
    s = serve("wsgiapps:environ_app", "--static", f"/s={root}", "--static-max-age", "30")
    assert requests.get(s.url + "/s/f1.bin").headers["Cache-Control"] == "max-age=30"
    assert requests.get(s.url + "/other").json()["PATH_INFO"] == "/other"


def fapws_static_binary():
    here = os.path.dirname(sys.executable)
    for candidate in (os.path.join(here, "fapws-static"), shutil.which("fapws-static")):
        if candidate and os.path.exists(candidate):
            return candidate
    pytest.skip("fapws-static not installed")


def test_fapws_static_binary(files):
    root, data = files
    exe = fapws_static_binary()
    port = free_port()
    p = subprocess.Popen([exe, "--bind", f"127.0.0.1:{port}", "--log-level", "warning", str(root)],
                         stderr=subprocess.PIPE)
    try:
        wait_listening(port, p)
        check_bodies(f"http://127.0.0.1:{port}", data)
        check_http(f"http://127.0.0.1:{port}", port)
    finally:
        p.terminate()
        p.wait(10)
    assert subprocess.run([exe, "--help"], capture_output=True).returncode == 0
    bad = subprocess.run([exe, "/no/such/dir"], capture_output=True)
    assert bad.returncode == 2 and bad.stderr.decode().count("\n") == 1


def test_contrib_staticfile(serve, files, tmp_path):
    root, data = files
    (tmp_path / "sapp.py").write_text(
        "from fapws.contrib.views import Staticfile\n"
        f"app = Staticfile({str(root)!r}, maxage=10)\n")
    s = serve("sapp:app", "--chdir", str(tmp_path))
    r = requests.get(s.url + "/f4096.bin")
    assert hashlib.sha256(r.content).hexdigest() == data[4096]
    assert requests.get(s.url + "/../../etc/passwd").status_code == 404
    again = requests.get(s.url + "/f4096.bin", headers={"If-Modified-Since": r.headers["Last-Modified"]})
    assert again.status_code == 304
