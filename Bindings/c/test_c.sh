#!/usr/bin/env bash
# test_c.sh PREFIX WORKDIR [PLUGIN_DIR MODELS_DIR] — checks an installed libcoalesce from plain C (used by `make test-c`).
#  1. the library needs no Swift toolchain (ldd) and exports only cz_* symbols (nm);
#  2. example.c builds with gcc against the INSTALLED header and library (pkg-config) and runs
#     with an empty environment (no LD_LIBRARY_PATH), generating with the test-pattern backend
#     and writing a PNG; its progress callback can cancel;
#  3. test_api.c checks NULL/bad input, ownership, threads and create/load/generate/free cycles;
#  4. the header compiles as C89, C99 and C++98 without warnings;
#  5. abi_host.c, built against the 0.1 header (smaller structs, by-value defaults: an "old" host)
#     and against a copy of the current header with one more trailing field per struct (a "new"
#     host), runs against the installed library;
#  6. an old host with -Werror builds once it sets CZ_VERSION_MIN_REQUIRED, and not before;
#  7. with PLUGIN_DIR and MODELS_DIR: loading, running and freeing the bundled backends' models
#     calls setenv, unsetenv and putenv 0 times (an LD_PRELOAD spy).
set -euo pipefail
PREFIX=$1
WORK=$2
PLUGINS=${3:-}
MODELS=${4:-}
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

# The deprecated 0.1 functions stay exported for programs built against 0.1.
for f in cz_engine_default_options cz_generate_default_params; do
    echo "$exported" | grep -qx "$f" || { echo "FAIL: $f (0.1) is no longer exported" >&2; exit 1; }
done

echo "== backend plugins export only cz_backend_entry"
for p in "$PREFIX"/lib/coalesce/backends/*.so; do
    syms=$(nm -D --defined-only "$p" | awk '$2 ~ /^[A-Z]$/ {print $3}')
    test "$syms" = "cz_backend_entry" || { echo "FAIL: $p exports: $(echo $syms | head -c 300)" >&2; exit 1; }
done

echo "== the header compiles as C89, C99, C++98 (warnings are errors)"
printf '#include <coalesce.h>\nint main(void) { cz_engine_options o; return cz_engine_options_init(&o, sizeof o) == CZ_OK ? 0 : 1; }\n' \
    > "$WORK/header_only.c"
"$CC" -std=c89 -pedantic -Wall -Wextra -Werror -fsyntax-only -I"$PREFIX/include" "$WORK/header_only.c"
"$CC" -std=c99 -pedantic -Wall -Wextra -Werror -fsyntax-only -I"$PREFIX/include" "$WORK/header_only.c"
if command -v g++ >/dev/null; then
    g++ -std=c++98 -pedantic -Wall -Wextra -Werror -fsyntax-only -x c++ -I"$PREFIX/include" "$WORK/header_only.c"
fi
# clang's -Weverything too, but for -Wpadded: the structs' padding is part of the 0.1 ABI.
if command -v clang >/dev/null; then
    for std in c89 c99; do
        clang -std=$std -Weverything -Wno-padded -Werror -fsyntax-only -I"$PREFIX/include" "$WORK/header_only.c"
    done
    clang -std=c++98 -Weverything -Wno-padded -Werror -fsyntax-only -x c++ -I"$PREFIX/include" "$WORK/header_only.c"
fi

echo "== an old host under -Werror: refused while deprecations warn, built once CZ_VERSION_MIN_REQUIRED says 0.1"
for std in c89 c99 c11; do
    if "$CC" -std=$std -Wall -Werror -fsyntax-only -I"$PREFIX/include" "$HERE/old_host.c" 2>"$WORK/old_host.err"; then
        echo "FAIL: old_host.c ($std) compiled with -Werror although it calls deprecated functions" >&2; exit 1
    fi
    grep -q "deprecated" "$WORK/old_host.err" || { cat "$WORK/old_host.err" >&2; echo "FAIL: not a deprecation error" >&2; exit 1; }
    "$CC" -std=$std -Wall -Wextra -Werror -fsyntax-only -DCZ_VERSION_MIN_REQUIRED=CZ_VERSION_0_1 -I"$PREFIX/include" "$HERE/old_host.c"
    # Written for 0.2: cz_blas_core (deprecated in 0.3) is quiet, the 0.2 deprecations are not.
    if "$CC" -std=$std -Wall -Werror -fsyntax-only -DCZ_VERSION_MIN_REQUIRED=CZ_VERSION_0_2 -I"$PREFIX/include" "$HERE/old_host.c" 2>"$WORK/old_host.err"; then
        echo "FAIL: old_host.c ($std) for 0.2 compiled although it calls functions deprecated in 0.2" >&2; exit 1
    fi
    if grep -q "cz_blas_core" "$WORK/old_host.err"; then
        cat "$WORK/old_host.err" >&2; echo "FAIL: cz_blas_core warned for a 0.2 host" >&2; exit 1
    fi
done
if command -v g++ >/dev/null; then
    for std in c++98 c++11 c++17; do
        g++ -std=$std -Wall -Wextra -Werror -fsyntax-only -x c++ -DCZ_VERSION_MIN_REQUIRED=CZ_VERSION_0_1 \
            -I"$PREFIX/include" "$HERE/old_host.c"
    done
fi

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
echo "== ABI: an old host (0.1 header) and a new host (one more field per struct) against this library"
mkdir -p "$WORK/abi-old" "$WORK/abi-new"
cp "$HERE/abi/coalesce-0.1.h" "$WORK/abi-old/coalesce.h"
sed -e 's/^} cz_engine_options;/    int64_t future_field;\n} cz_engine_options;/' \
    -e 's/^} cz_generate_params;/    int64_t future_field;\n} cz_generate_params;/' \
    -e 's/^} cz_model_info;/    int64_t future_field;\n} cz_model_info;/' \
    "$PREFIX/include/coalesce.h" > "$WORK/abi-new/coalesce.h"
test "$(grep -c future_field "$WORK/abi-new/coalesce.h")" -eq 3 || { echo "FAIL: new header not made" >&2; exit 1; }
for kind in old new; do
    flag=$(echo "$kind" | tr a-z A-Z)_HOST
    "$CC" -std=c99 -Wall -Wextra -Werror -Wno-deprecated-declarations -D"$flag" -I"$WORK/abi-$kind" \
        -o "$WORK/abi_host_$kind" "$HERE/abi_host.c" -L"$PREFIX/lib" -Wl,-rpath,"$PREFIX/lib" -lcoalesce
    (cd "$WORK" && env -i PATH=/usr/bin:/bin "./abi_host_$kind" "$PREFIX/share/coalesce/models/test-pattern")
done
if [ -n "$PLUGINS" ] && [ -n "$MODELS" ]; then
    echo "== the host's environment: setenv/unsetenv/putenv calls while the bundled backends load, generate, free"
    "$CC" -std=c99 -Wall -Wextra -Werror -shared -fPIC -o "$WORK/env_spy.so" "$HERE/env_spy.c" -ldl
    "$CC" -std=c99 -Wall -Wextra -Werror -o "$WORK/spy_host" "$HERE/spy_host.c" -I"$PREFIX/include" \
        -L"$PREFIX/lib" -Wl,-rpath,"$PREFIX/lib" -lcoalesce
    set +e
    (cd "$WORK" && env -i PATH=/usr/bin:/bin COALESCE_PLUGIN_DIR="$PLUGINS" LD_PRELOAD="$WORK/env_spy.so" \
        ./spy_host "$MODELS/test-pattern" "$MODELS/coalescer" "$MODELS/latent-diffusion" "$MODELS/distilled-unet" \
        "$MODELS/nested-unet" 2>"$WORK/spy.err")
    rc=$?
    set -e
    cat "$WORK/spy.err"
    test "$rc" -eq 0 || { echo "FAIL: spy_host exited $rc" >&2; exit 1; }
    grep -q "ENV-SPY setenv CZ_SPY_MARKER" "$WORK/spy.err" || { echo "FAIL: the spy saw nothing (not preloaded?)" >&2; exit 1; }
    others=$(grep "^ENV-SPY" "$WORK/spy.err" | grep -v "CZ_SPY_MARKER" || true)
    test -z "$others" || { echo "FAIL: the library edited the environment: $others" >&2; exit 1; }
    echo "0 environment edits by the library"
fi
echo "test-c: OK"
