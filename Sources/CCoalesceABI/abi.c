// Header-only target exposing Include/coalesce_backend.h to Swift.
