#!/usr/bin/env bash
# `make install` into a temporary prefix, then a C program built only from what was installed
# (header, library, pkg-config file) seals and opens a document. The installed programs and
# library are stripped, the SONAME is liblayersec.so.<major> of the workspace version, and
# KEEP_DEBUG=1 keeps the debug info beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILT=${1:?usage: test-install.sh BUILD_DIR}
# The workspace version (the Makefile passes it; the same reading of Cargo.toml otherwise).
VERSION=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
SONAME=${SONAME:-liblayersec.so.${VERSION%%.*}}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/layersec-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
make -s install-files REL="$BUILT" PREFIX="$prefix" >/dev/null
lib="$prefix/lib"
test -L "$lib/liblayersec.so" && test -L "$lib/$SONAME" && test -f "$lib/liblayersec.so.$VERSION"
soname=$(readelf -d "$lib/liblayersec.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = "$SONAME" ] || { echo "test-install: SONAME is '$soname', expected $SONAME" >&2; exit 1; }
for f in include/layersec.h lib/liblayersec.a lib/pkgconfig/layersec.pc bin/layersec bin/layersec-server; do
  test -e "$prefix/$f" || { echo "test-install: $f not installed" >&2; exit 1; }
done
# Stripped: no symbol table, no debug info (the build has both).
# (grep -c reads all of readelf's output: with -q, pipefail would see readelf's SIGPIPE.)
has_section() { readelf -S -W "$1" 2>/dev/null | grep -c -F " $2 " >/dev/null; }
for f in "lib/liblayersec.so.$VERSION" bin/layersec bin/layersec-server; do
  for s in .symtab .debug_info .debug_line; do
    ! has_section "$prefix/$f" "$s" || { echo "test-install: $f is not stripped ($s)" >&2; exit 1; }
  done
done
if has_section "$prefix/lib/liblayersec.a" .debug_info; then
  echo "test-install: liblayersec.a keeps its debug info" >&2; exit 1
fi
# KEEP_DEBUG=1: the debug info beside each file, linked from it.
dprefix="$tmp/prefix-debug"
make -s install-files REL="$BUILT" PREFIX="$dprefix" KEEP_DEBUG=1 >/dev/null
for f in "lib/liblayersec.so.$VERSION" bin/layersec bin/layersec-server; do
  has_section "$dprefix/$f.debug" .debug_info || { echo "test-install: no debug info in $f.debug" >&2; exit 1; }
  has_section "$dprefix/$f" .gnu_debuglink || { echo "test-install: $f does not name $f.debug" >&2; exit 1; }
  ! has_section "$dprefix/$f" .debug_info || { echo "test-install: $f is not stripped" >&2; exit 1; }
done
export PKG_CONFIG_PATH="$lib/pkgconfig"
version=$(pkg-config --modversion layersec)
cflags=$(pkg-config --cflags layersec)
libs=$(pkg-config --libs layersec)
for p in keygen seal open stream send_poll; do  # send_poll is only built: it needs a service
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
echo "test-install: layersec $version installed to a prefix (stripped, SONAME $SONAME); C examples built with pkg-config sealed and opened a document"
