// Generated protobuf-c code goes here (scripts/gen-proto.sh).
