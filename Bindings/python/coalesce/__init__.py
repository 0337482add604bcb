"""coalesce — in-process Python binding to libcoalesce.so (Include/coalesce.h).

    import coalesce
    with coalesce.Engine() as eng:
        eng.load_model("test-pattern", "models/test-pattern")
        images = eng.generate("test-pattern", prompt="a sneaker", seed=42, count=4)  # (4, 28, 28) uint8
        coalesce.save_png(images[0], "sneaker.png")

The library is found through $COALESCE_LIB (path to libcoalesce.so), $COALESCE_PREFIX (install
prefix), pkg-config, the linker path, then /usr/local/lib. The daemon client is the separate
package ``coalesce_client``.
"""
from .engine import Engine, ModelInfo, blas_core, status_string, version, write_png_native
from .errors import (CancelledError, CoalesceError, DeadlineExceededError, InternalError,
                     InvalidArgumentError, NotFoundError, ResourceExhaustedError,
                     UnavailableError)
from .png import encode_png, read_png, save_png

__all__ = [
    "Engine", "ModelInfo", "version", "blas_core", "status_string", "write_png_native",
    "save_png", "encode_png", "read_png",
    "CoalesceError", "InvalidArgumentError", "NotFoundError", "ResourceExhaustedError",
    "CancelledError", "DeadlineExceededError", "InternalError", "UnavailableError",
]
