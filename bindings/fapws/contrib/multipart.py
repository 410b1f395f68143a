"""multipart: multipart/form-data parsing that streams file parts to
temporary files, so a large upload never sits in memory.

    fields, files = parse(environ)
    fields["name"] -> str; files["upload"] -> Upload(filename, content_type, file)
"""

import re
import tempfile

_boundary_re = re.compile(r'boundary="?([^";]+)"?')


class Upload:
    def __init__(self, name, filename, content_type, file):
        self.name, self.filename, self.content_type, self.file = name, filename, content_type, file

    def read(self):
        self.file.seek(0)
        return self.file.read()


def _disposition(value):
    params = {}
    for part in value.split(";")[1:]:
        k, _, v = part.strip().partition("=")
        params[k.lower()] = v.strip().strip('"')
    return params


def parse(environ, spool_limit=64 * 1024, chunk=64 * 1024):
    ctype = environ.get("CONTENT_TYPE", "")
    m = _boundary_re.search(ctype)
    if not ctype.startswith("multipart/form-data") or not m:
        raise ValueError("not multipart/form-data with a boundary")
    delimiter = b"--" + m.group(1).encode("latin-1")
    stream = environ["wsgi.input"]
    fields, files = {}, {}
    buf = b""
    eof = False

    def fill():
        nonlocal buf, eof
        data = stream.read(chunk)
        if not data:
            eof = True
        buf += data

    while delimiter not in buf and not eof:
        fill()
    start = buf.find(delimiter)
    if start < 0:
        raise ValueError("multipart body without a boundary")
    buf = buf[start + len(delimiter):]
    marker = b"\r\n" + delimiter
    while True:
        while b"\r\n\r\n" not in buf and not eof:
            fill()
        if buf.startswith(b"--"):
            break
        head, sep, buf = buf.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("truncated multipart part")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        disp = _disposition(headers.get("content-disposition", ""))
        name = disp.get("name", "")
        is_file = "filename" in disp
        sink = tempfile.SpooledTemporaryFile(max_size=spool_limit) if is_file else None
        data = bytearray()
        while True:
            i = buf.find(marker)
            if i >= 0:
                part, buf = buf[:i], buf[i + len(marker):]
                sink.write(part) if sink else data.extend(part)
                break
            if eof:
                raise ValueError("truncated multipart body")
            keep = len(marker)
            if len(buf) > keep:
                sink.write(buf[:-keep]) if sink else data.extend(buf[:-keep])
                buf = buf[-keep:]
            fill()
        if sink:
            sink.seek(0)
            files[name] = Upload(name, disp["filename"], headers.get("content-type", "application/octet-stream"), sink)
        else:
            fields[name] = data.decode("utf-8", "replace")
        while len(buf) < 2 and not eof:
            fill()
    return fields, files
