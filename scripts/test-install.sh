#!/usr/bin/env bash
# `make install` into a temporary prefix, then a C program built only from what was installed
# (header, library, pkg-config file) seals and opens a document.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILT=${1:?usage: test-install.sh BUILD_DIR}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/layersec-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
make -s install-files REL="$BUILT" PREFIX="$prefix" >/dev/null
lib="$prefix/lib"
test -L "$lib/liblayersec.so" && test -L "$lib/liblayersec.so.0"
soname=$(readelf -d "$lib/liblayersec.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = liblayersec.so.0 ] || { echo "test-install: SONAME is '$soname'" >&2; exit 1; }
for f in include/layersec.h lib/liblayersec.a lib/pkgconfig/layersec.pc bin/layersec bin/layersec-server; do
  test -e "$prefix/$f" || { echo "test-install: $f not installed" >&2; exit 1; }
done
export PKG_CONFIG_PATH="$lib/pkgconfig"
version=$(pkg-config --modversion layersec)
cflags=$(pkg-config --cflags layersec)
libs=$(pkg-config --libs layersec)
for p in keygen seal open send_poll; do  # send_poll is only built: it needs a service
  gcc -std=c99 -Wall -Wextra -Werror -pedantic-errors $cflags -o "$tmp/$p" "examples-c/$p.c" examples-c/common.c \
      $libs -Wl,-rpath,"$lib"
done
"$tmp/keygen" alice rsa "$tmp/alice.key" "$tmp/alice.crt" >/dev/null
"$tmp/keygen" bob ec "$tmp/bob.key" "$tmp/bob.crt" >/dev/null
printf 'installed library round trip\n' > "$tmp/doc.txt"
"$tmp/seal" "$tmp/alice.key" "$tmp/alice.crt" "$tmp/bob.crt" "$tmp/doc.txt" "$tmp/doc.p7m" doc.txt >/dev/null
"$tmp/open" "$tmp/bob.key" "$tmp/bob.crt" "$tmp/alice.crt" "$tmp/doc.p7m" "$tmp/out.txt" >/dev/null
cmp "$tmp/doc.txt" "$tmp/out.txt"
"$prefix/bin/layersec" --version >/dev/null
echo "test-install: layersec $version installed to a prefix; C examples built with pkg-config sealed and opened a document"
