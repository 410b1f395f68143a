#!/usr/bin/env bash
# Installs fapws as a library and builds an embedder's program three ways, as
# issue #10 asks: a Meson parent project with fapws as a subproject, a CMake
# project with find_package(fapws), and a plain g++ line with pkg-config.
# Each program serves an asynchronous and a coroutine route and checks them.
# Then the Python package as a wheel (issue #14): built, installed into a
# fresh venv without the system's site-packages, and serving a request.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-$ROOT/build/install-test}
rm -rf "$WORK"
mkdir -p "$WORK"
say() { printf '==> %s\n' "$*" >&2; }

say "meson install of the library into $WORK/prefix"
meson setup "$WORK/lib" "$ROOT" -Dpython=false --prefix="$WORK/prefix" >/dev/null
ninja -C "$WORK/lib" >/dev/null
meson install -C "$WORK/lib" --quiet >/dev/null
test -f "$WORK/prefix/include/fapws/responder.hpp"

say "a Meson parent project with fapws as a subproject"
cp -r "$ROOT/test/install/meson" "$WORK/parent"
cp "$ROOT/test/install/embed.cpp" "$WORK/embed.cpp"
mkdir -p "$WORK/parent/subprojects"
ln -s "$ROOT" "$WORK/parent/subprojects/fapws"
meson setup "$WORK/parent-build" "$WORK/parent" -Dfapws:python=true >/dev/null
ninja -C "$WORK/parent-build" >/dev/null
"$WORK/parent-build/embed"
# Nothing of fapws' but the library was built: no apps, tests or extension.
if find "$WORK/parent-build/subprojects" -name 'fapws-static' -o -name '*_test' -o -name '_core*.so' | grep -q .; then
    echo "run.sh: the subproject built more than its library" >&2
    exit 1
fi

say "a CMake project with find_package(fapws)"
cp -r "$ROOT/test/install/cmake" "$WORK/cmake"
cmake -S "$WORK/cmake" -B "$WORK/cmake-build" -DCMAKE_PREFIX_PATH="$WORK/prefix" >/dev/null
cmake --build "$WORK/cmake-build" >/dev/null
"$WORK/cmake-build/embed"

say "g++ with pkg-config"
PC=$(dirname "$(find "$WORK/prefix" -name fapws.pc)")
# shellcheck disable=SC2046
g++ -O1 -o "$WORK/embed-pc" "$WORK/embed.cpp" $(PKG_CONFIG_PATH=$PC pkg-config --cflags --libs fapws)
"$WORK/embed-pc"
say "a wheel, installed into a fresh venv, serving"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
"$PYTHON" -m pip wheel -q --no-build-isolation --no-deps -w "$WORK/wheel" "$ROOT" >/dev/null
WHEEL=$(ls "$WORK"/wheel/fapws-*.whl)
/usr/bin/python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q --no-index "$WHEEL"
# Nothing but the extension and the static server went in: no bench, no demos.
test -x "$WORK/venv/bin/fapws" && test -x "$WORK/venv/bin/fapws-static"
"$PYTHON" - "$WHEEL" <<'PY'
import sys, zipfile
extra = [n for n in zipfile.ZipFile(sys.argv[1]).namelist() if "bench" in n or "beast_" in n or "/apps/" in n]
if extra:
    sys.exit(f"run.sh: the wheel holds more than the package: {extra[:5]}")
PY
mkdir -p "$WORK/app"
cat > "$WORK/app/wheelapp.py" <<'PY'
import fapws


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wheel " + fapws.__file__.encode()]
PY
PORT=$("$WORK/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$WORK/venv/bin/fapws" --bind "127.0.0.1:$PORT" --chdir "$WORK/app" --log-level warning wheelapp:app &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
ANSWER=
for _ in $(seq 100); do
    ANSWER=$("$WORK/venv/bin/python" -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$PORT/x', timeout=2).read().decode())" 2>/dev/null) && break
    sleep 0.1
done
kill "$SERVER"
wait "$SERVER" 2>/dev/null || true
trap - EXIT
case "$ANSWER" in
    "wheel $WORK/venv/"*) ;;
    *) echo "run.sh: the wheel's fapws did not answer from the venv: '$ANSWER'" >&2; exit 1 ;;
esac
echo "install: 4 passed, 0 failed"
