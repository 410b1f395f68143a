import json

import requests

from conftest import raw


def get_environ(server, path="/", **kw):
    r = requests.get(server.url + path, **kw)
    assert r.status_code == 200
    return r.json()


def test_required_keys_and_types(serve):
    s = serve("wsgiapps:environ_app")
    env = get_environ(s, "/a/b?x=1&y=%20")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/a/b"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(s.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert int(env["REMOTE_PORT"]) > 0
    assert env["REQUEST_URI"] == env["RAW_URI"] == "/a/b?x=1&y=%20"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["has_file_wrapper"] is True
    assert env["HTTP_HOST"] == f"127.0.0.1:{s.port}"
    assert "CONTENT_LENGTH" not in env
    assert "CONTENT_TYPE" not in env


def test_path_info_is_percent_decoded_latin1(serve):
    s = serve("wsgiapps:environ_app")
    env = json.loads(raw(s.port, b"GET /caf%C3%A9/%2F/x%zz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                     .split(b"\r\n\r\n", 1)[1])
    # PEP 3333: bytes decoded as latin-1, so UTF-8 shows as mojibake.
    assert env["PATH_INFO"] == "/caf\u00c3\u00a9///x%zz"
    assert env["RAW_URI"] == "/caf%C3%A9/%2F/x%zz"


def test_headers_mapped_joined_and_underscores_dropped(serve):
    s = serve("wsgiapps:environ_app")
    req = (b"GET / HTTP/1.1\r\nHost: t\r\nX-Multi: a\r\nX-Multi: b\r\nX_Spoof: evil\r\n"
           b"Cookie: a=1\r\nCookie: b=2\r\nUser-Agent: t\xe9st\r\nContent-Type: text/x\r\nConnection: close\r\n\r\n")
    env = json.loads(raw(s.port, req).split(b"\r\n\r\n", 1)[1])
    assert env["HTTP_X_MULTI"] == "a,b"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_SPOOF" not in env
    assert env["HTTP_USER_AGENT"] == "t\u00e9st"
    assert env["CONTENT_TYPE"] == "text/x"
    assert "HTTP_CONTENT_TYPE" not in env


def test_content_length_present_with_body(serve):
    s = serve("wsgiapps:environ_app")
    r = requests.post(s.url + "/", data=b"12345")
    assert r.json()["CONTENT_LENGTH"] == "5"


def test_http10_protocol(serve):
    s = serve("wsgiapps:environ_app")
    out = raw(s.port, b"GET / HTTP/1.0\r\n\r\n")
    assert b"HTTP/1.1 200" in out
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_wsgiref_validator_sees_no_problem(serve):
    s = serve("wsgiapps:validated")
    for _ in range(3):
        r = requests.get(s.url + "/v?q=1")
        assert r.status_code == 200 and r.text == "validated"
    s.stop()
    assert b"Warning" not in s.proc.stderr.read()


def test_forwarding_headers_only_from_trusted_proxies(serve):
    xff = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    # Untrusted: nothing changes.
    for ips in ("", "10.0.0.0/8"):
        s = serve("wsgiapps:environ_app", "--forwarded-allow-ips", ips)
        env = get_environ(s, headers=xff)
        assert env["wsgi.url_scheme"] == "http" and env["REMOTE_ADDR"] == "127.0.0.1"
    # The local host is trusted by default, as in gunicorn and uvicorn.
    s = serve("wsgiapps:environ_app")
    env = get_environ(s, headers=xff)
    assert env["wsgi.url_scheme"] == "https" and env["REMOTE_ADDR"] == "203.0.113.7"


def test_the_client_is_the_rightmost_address_not_a_trusted_proxy(serve):
    s = serve("wsgiapps:environ_app", "--forwarded-allow-ips", "127.0.0.0/8")
    # 1.2.3.4 may be forged by the client; 10.0.0.5 is what our proxy saw.
    env = get_environ(s, headers={"X-Forwarded-For": "1.2.3.4, 10.0.0.5"})
    assert env["REMOTE_ADDR"] == "10.0.0.5"
    t = serve("wsgiapps:environ_app", "--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8")
    assert get_environ(t, headers={"X-Forwarded-For": "1.2.3.4, 10.0.0.5"})["REMOTE_ADDR"] == "1.2.3.4"


def test_rfc7239_forwarded(serve):
    s = serve("wsgiapps:environ_app", "--forwarded-allow-ips", "127.0.0.1,2001:db8::/32")
    env = get_environ(s, headers={"Forwarded": 'for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"',
                                  "X-Forwarded-For": "198.51.100.1"})
    # Forwarded wins; 2001:db8::17 is a trusted proxy, so the client is further left.
    assert env["REMOTE_ADDR"] == "192.0.2.60"
    assert env["wsgi.url_scheme"] == "https"


def test_a_bad_forwarded_allow_ips_entry_is_a_usage_error():
    import subprocess
    import sys

    import os

    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps"))
    r = subprocess.run([sys.executable, "-m", "fapws", "--forwarded-allow-ips", "10.0.0.0/40",
                        "wsgiapps:environ_app"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "10.0.0.0/40" in r.stderr

def _proxied(port, header, path="/"):
    from conftest import raw

    return raw(port, header + f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())


def test_proxy_protocol_v1_and_v2_give_the_client_address(serve):
    import json
    import struct

    s = serve("wsgiapps:environ_app", "--proxy-protocol", "--forwarded-allow-ips", "")
    body = _proxied(s.port, b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 8080\r\n").split(b"\r\n\r\n", 1)[1]
    env = json.loads(body)
    assert env["REMOTE_ADDR"] == "203.0.113.9" and env["REMOTE_PORT"] == "40000"
    v6 = _proxied(s.port, b"PROXY TCP6 2001:db8::5 ::1 4711 80\r\n").split(b"\r\n\r\n", 1)[1]
    assert json.loads(v6)["REMOTE_ADDR"] == "2001:db8::5"
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = bytes([198, 51, 100, 7, 127, 0, 0, 1]) + struct.pack("!HH", 5555, 80)
    v2 = _proxied(s.port, sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs)
    env = json.loads(v2.split(b"\r\n\r\n", 1)[1])
    assert env["REMOTE_ADDR"] == "198.51.100.7" and env["REMOTE_PORT"] == "5555"
    # LOCAL (a health check): the real peer stays.
    local = _proxied(s.port, sig + bytes([0x20, 0x00, 0, 0]))
    assert json.loads(local.split(b"\r\n\r\n", 1)[1])["REMOTE_ADDR"] == "127.0.0.1"


def test_without_a_proxy_header_the_connection_is_refused(serve):
    s = serve("wsgiapps:environ_app", "--proxy-protocol")
    assert _proxied(s.port, b"").startswith(b"HTTP/1.1 400 ")
    assert _proxied(s.port, b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n").startswith(b"HTTP/1.1 400 ")


def test_a_proxy_header_on_a_plain_listener_is_a_bad_request(serve):
    s = serve("wsgiapps:environ_app")
    assert _proxied(s.port, b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 8080\r\n").startswith(b"HTTP/1.1 400 ")


def test_per_request_values_follow_each_request_on_one_connection_and_across_connections(serve):
    # REMOTE_ADDR, REMOTE_PORT, HTTP_HOST and PATH_INFO are reused from the
    # previous request when their text repeats: a change must still show.
    s = serve("wsgiapps:environ_app")
    with requests.Session() as a, requests.Session() as b:
        first = a.get(s.url + "/one", headers={"Host": "a.example"}).json()
        second = a.get(s.url + "/two?q=1", headers={"Host": "b.example"}).json()
        third = a.get(s.url + "/th%20ree", headers={"Host": "b.example"}).json()
        other = b.get(s.url + "/one", headers={"Host": "a.example"}).json()
    assert (first["HTTP_HOST"], second["HTTP_HOST"], third["HTTP_HOST"]) == ("a.example", "b.example", "b.example")
    assert (first["PATH_INFO"], second["PATH_INFO"], third["PATH_INFO"]) == ("/one", "/two", "/th ree")
    assert (first["REQUEST_URI"], second["REQUEST_URI"], third["RAW_URI"]) == ("/one", "/two?q=1", "/th%20ree")
    assert first["REMOTE_PORT"] == second["REMOTE_PORT"] == third["REMOTE_PORT"]
    assert other["REMOTE_PORT"] != first["REMOTE_PORT"]
    assert other["REMOTE_ADDR"] == first["REMOTE_ADDR"] == "127.0.0.1"
