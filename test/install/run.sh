#!/usr/bin/env bash
# Installs fapws as a library and builds an embedder's program three ways, as
# issue #10 asks: a Meson parent project with fapws as a subproject, a CMake
# project with find_package(fapws), and a plain g++ line with pkg-config.
# Each program serves an asynchronous and a coroutine route and checks them.
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
echo "install: 3 passed, 0 failed"
