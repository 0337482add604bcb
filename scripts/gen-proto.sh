#!/usr/bin/env bash
# Regenerates the protocol code from proto/coalesce.proto and proto/worker.proto:
#   C (protobuf-c, Debian protobuf-c-compiler) -> Sources/CCoalesceProto/{coalesce,worker}.pb-c.c and include/*.pb-c.h
#   (worker.proto is the daemon's internal protocol with its backend worker processes: C only)
#   Python (_pb2)                              -> Bindings/python/coalesce_client/coalesce_pb2.py
# The Python generator is `protoc --python_out` if a protoc is on PATH, else grpcio-tools'
# bundled protoc (`pip install grpcio-tools`, or point GRPC_TOOLS_PATH at a `pip install --target`
# directory). The committed _pb2 was made by grpcio-tools 1.85.1 (protoc 35.1) and needs the
# protobuf runtime >= 7.35 (the one in scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for p in coalesce worker; do
    protoc-c --proto_path=proto --c_out="$tmp" "$p.proto"
    mv "$tmp/$p.pb-c.h" Sources/CCoalesceProto/include/$p.pb-c.h
    mv "$tmp/$p.pb-c.c" Sources/CCoalesceProto/$p.pb-c.c
done
echo "gen-proto: C -> Sources/CCoalesceProto"

py_out=Bindings/python/coalesce_client
if command -v protoc >/dev/null 2>&1; then
    protoc --proto_path=proto --python_out="$py_out" coalesce.proto
elif PYTHONPATH="${GRPC_TOOLS_PATH:-}${PYTHONPATH:+:$PYTHONPATH}" python3 -c "import grpc_tools" 2>/dev/null; then
    PYTHONPATH="${GRPC_TOOLS_PATH:-}${PYTHONPATH:+:$PYTHONPATH}" \
        python3 -m grpc_tools.protoc --proto_path=proto --python_out="$py_out" coalesce.proto
else
    echo "gen-proto: no Python protobuf generator: install one with" >&2
    echo "  pip install --target /tmp/grpctools --no-deps grpcio-tools && GRPC_TOOLS_PATH=/tmp/grpctools $0" >&2
    exit 1
fi
echo "gen-proto: Python -> $py_out/coalesce_pb2.py"
