#!/usr/bin/env bash
# leak_test.sh PREFIX WORKDIR [CYCLES] — runs test_api.c (bad input, threads, and CYCLES
# create/load/hot-swap/describe/generate/png/unload/free cycles) against the installed
# libcoalesce under valgrind memcheck: any invalid access or definitely/indirectly lost block
# fails; then, natively, EMPTY_LOADS (default 10000) loads of a model whose config.json is empty
# must fail cleanly without growing the resident set (each used to lose 4 KiB). Used by
# `make test-leaks`.
#
# The backend is the INSTALLED test-pattern plugin (a SwiftPM product built with -static-stdlib,
# so it carries its own Swift runtime). libcoalesce keeps each plugin loaded once used (see
# PluginPins in Sources/CoalesceC/CEngine.swift); before that, every dlopen/dlclose of such a
# plugin re-ran its runtime's constructors and lost about 1.3 KB, which this test caught.
set -euo pipefail
PREFIX=$1
WORK=$2
CYCLES=${3:-50}
EMPTY_LOADS=${EMPTY_LOADS:-10000}
HERE=$(cd "$(dirname "$0")" && pwd)
CC=${CC:-gcc}
command -v "$CC" >/dev/null || CC=cc
command -v valgrind >/dev/null || { echo "FAIL: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
mkdir -p "$WORK"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
# shellcheck disable=SC2046
"$CC" -std=c99 -Wall -gdwarf-4 -o "$WORK/test_api" "$HERE/test_api.c" \
    $(pkg-config --cflags --libs coalesce) -lpthread
echo "== valgrind: test_api with $CYCLES cycles"
set +e
valgrind --error-exitcode=99 --leak-check=full \
    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
    --log-file="$WORK/valgrind.log" \
    "$WORK/test_api" "$PREFIX/share/coalesce/models/test-pattern" "$CYCLES"
rc=$?
set -e
sed -n '/HEAP SUMMARY/,$p' "$WORK/valgrind.log"
test "$rc" -eq 0 || { cat "$WORK/valgrind.log"; echo "FAIL: valgrind or test_api failed (status $rc)" >&2; exit 1; }
# Heap still in use at exit must not grow with the number of cycles.
valgrind --log-file="$WORK/valgrind-small.log" \
    "$WORK/test_api" "$PREFIX/share/coalesce/models/test-pattern" 2 >/dev/null
small=$(sed -n 's/.*in use at exit: \([0-9,]*\) bytes.*/\1/p' "$WORK/valgrind-small.log" | tr -d ,)
full=$(sed -n 's/.*in use at exit: \([0-9,]*\) bytes.*/\1/p' "$WORK/valgrind.log" | tr -d ,)
echo "heap in use at exit: $small bytes after 2 cycles, $full bytes after $CYCLES cycles"
test -n "$small" && test "$small" = "$full" || { echo "FAIL: heap in use at exit grows with cycles" >&2; exit 1; }
echo "== $EMPTY_LOADS loads of an empty config.json (RSS must not grow)"
"$WORK/test_api" "$PREFIX/share/coalesce/models/test-pattern" 0 "$EMPTY_LOADS"
echo "test-leaks: OK (no invalid access, nothing lost, no growth over $CYCLES cycles or $EMPTY_LOADS empty-config loads)"
