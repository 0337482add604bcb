#!/usr/bin/env bash
# test_c.sh PREFIX WORKDIR — checks an installed libcoalesce from plain C (used by `make test-c`).
#  1. the library needs no Swift toolchain (ldd) and exports only cz_* symbols (nm);
#  2. example.c builds with gcc against the INSTALLED header and library (pkg-config) and runs
#     with an empty environment (no LD_LIBRARY_PATH), generating with the test-pattern backend
#     and writing a PNG; its progress callback can cancel;
#  3. test_api.c checks NULL/bad input, ownership, threads and create/load/generate/free cycles.
set -euo pipefail
PREFIX=$1
WORK=$2
HERE=$(cd "$(dirname "$0")" && pwd)
CC=${CC:-gcc}
command -v "$CC" >/dev/null || CC=cc
LIB="$PREFIX/lib/libcoalesce.so"
mkdir -p "$WORK"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"

echo "== ldd $LIB"
ldd "$LIB"
if ldd "$LIB" | grep -E -q 'libswift|libFoundation|/opt/swift|not found'; then
    echo "FAIL: libcoalesce.so depends on the Swift toolchain or a missing library" >&2
    exit 1
fi

echo "== exported symbols"
exported=$(nm -D --defined-only "$LIB" | awk '$2 ~ /^[A-Z]$/ {print $3}')
echo "$exported" | tr '\n' ' '; echo
bad=$(echo "$exported" | grep -v '^cz_' || true)
if [ -n "$bad" ]; then
    echo "FAIL: symbols other than cz_* are exported: $bad" >&2
    exit 1
fi
# Every function the header declares is exported.
for f in $(sed -n 's/^CZ_API [^(]*[ *]\(cz_[a-z_0-9]*\)(.*/\1/p' "$PREFIX/include/coalesce.h"); do
    echo "$exported" | grep -qx "$f" || { echo "FAIL: $f declared in coalesce.h but not exported" >&2; exit 1; }
done

echo "== build example.c with $CC against the installed library: $(pkg-config --cflags --libs coalesce)"
# shellcheck disable=SC2046
"$CC" -std=c99 -Wall -Wextra -Werror -o "$WORK/example" "$HERE/example.c" $(pkg-config --cflags --libs coalesce)
# shellcheck disable=SC2046
"$CC" -std=c99 -Wall -Wextra -Werror -gdwarf-4 -o "$WORK/test_api" "$HERE/test_api.c" \
    $(pkg-config --cflags --libs coalesce) -lpthread

echo "== run example (empty environment: no Swift toolchain, no LD_LIBRARY_PATH)"
rm -f "$WORK/example.png" "$WORK/example.raw"
(cd "$WORK" && env -i PATH=/usr/bin:/bin ./example -p "a sneaker" -s 42 -c 4 -o example.png -r example.raw)
head -c 8 "$WORK/example.png" | od -An -c | grep -q 'P   N   G' || { echo "FAIL: example.png is not a PNG" >&2; exit 1; }
test "$(stat -c %s "$WORK/example.raw")" -eq $((4 * 28 * 28)) || { echo "FAIL: raw size" >&2; exit 1; }

echo "== example cancelled by its progress callback at step 2 (exit status 3 expected)"
set +e
(cd "$WORK" && env -i PATH=/usr/bin:/bin ./example --cancel-at 2 -n 4 -o cancelled.png)
rc=$?
set -e
test "$rc" -eq 3 || { echo "FAIL: cancel returned $rc" >&2; exit 1; }
test ! -e "$WORK/cancelled.png" || { echo "FAIL: cancelled run wrote a PNG" >&2; exit 1; }

echo "== test_api"
(cd "$WORK" && env -i PATH=/usr/bin:/bin ./test_api "$PREFIX/share/coalesce/models/test-pattern" 20)
echo "test-c: OK"
