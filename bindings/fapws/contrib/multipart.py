"""multipart: multipart/form-data parsing that streams file parts to
temporary files, so a large upload never sits in memory.

    fields, files = parse(environ)
    fields["name"] -> str; files["upload"] -> Upload(filename, content_type, file)
"""

import io
import os
import re
import shutil
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


def _versioned(path):
    """FAPWS3's DiskVersioning: never overwrite; name.ext, name_1.ext, ..."""
    if not os.path.exists(path):
        return path
    stem, ext = os.path.splitext(path)
    n = 1
    while os.path.exists(f"{stem}_{n}{ext}"):
        n += 1
    return f"{stem}_{n}{ext}"


class MultipartFormData:
    """FAPWS3's file-like wsgi.input for multipart bodies: the server
    write()s the body into it; fields land in .results as [value] and files
    are stored under basepath, as [stored path, {attributes}].

        class Environ(base.Environ):
            def __init__(self):
                super().__init__()
                self["wsgi.input"] = multipart.MultipartFormData("/srv/uploads/")

    Uploaded file names keep their base name only (FAPWS3 joined the
    client's name to basepath as given, '../' included).
    """

    def __init__(self, basepath="./"):
        self.basepath = basepath
        self.results = {}
        self._buf = bytearray()
        self._parsed = True

    def write(self, data):
        self._buf += data.encode("latin-1") if isinstance(data, str) else data
        self._parsed = False

    def _parse(self):
        if self._parsed:
            return
        self._parsed = True
        first = bytes(self._buf[:self._buf.find(b"\r\n")]) if b"\r\n" in self._buf else b""
        if not first.startswith(b"--"):
            return
        environ = {"CONTENT_TYPE": "multipart/form-data; boundary=" + first[2:].decode("latin-1"),
                   "wsgi.input": io.BytesIO(bytes(self._buf))}
        fields, files = parse(environ)
        for name, value in fields.items():
            self.results.setdefault(name, []).append(value)
        for name, upload in files.items():
            filename = os.path.basename(upload.filename.replace("\\", "/"))
            if not filename:
                self.results.setdefault(name, []).append("")
                continue
            path = _versioned(os.path.join(self.basepath, filename))
            with open(path, "wb") as f:
                upload.file.seek(0)
                shutil.copyfileobj(upload.file, f)
            self.results.setdefault(name, []).extend([path, {"filename": upload.filename,
                                                              "Content-Type": upload.content_type}])

    def seek(self, position):
        self._parse()

    def read(self, size=-1):
        return bytes(self._buf) if size is None or size < 0 else bytes(self._buf[:size])

    def getvalue(self):
        self._parse()
        return self.results

    def get(self, key, default=None):
        self._parse()
        return self.results.get(key, default)

    def keys(self):
        self._parse()
        return self.results.keys()
