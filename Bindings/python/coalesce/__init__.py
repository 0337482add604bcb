"""coalesce — in-process Python binding to libcoalesce.so (Include/coalesce.h).

    import coalesce
    with coalesce.Engine() as eng:
        eng.load_model("test-pattern", "models/test-pattern")
        images = eng.generate("test-pattern", prompt="a sneaker", seed=42, count=4)  # (4, 28, 28) uint8
        images.to_pil(0).save("sneaker.png")                   # PIL (Pillow) image
        coalesce.save_png(images[1], "sneaker-1.png")         # or straight from numpy

The library is found through $COALESCE_LIB (path to libcoalesce.so), $COALESCE_PREFIX (install
prefix), pkg-config, the linker path, then /usr/local/lib. The daemon client is the separate
package ``coalesce_client``.
"""
from .engine import Engine, ModelInfo, blas_core, kernel_isa, status_string, version, write_png_native
from .errors import (CancelledError, CoalesceError, DeadlineExceededError, InternalError,
                     InvalidArgumentError, NotFoundError, ResourceExhaustedError,
                     UnavailableError)
from .images import ImageBatch, encode_png, read_png, save_png, to_pil

__all__ = [
    "Engine", "ModelInfo", "version", "blas_core", "kernel_isa", "status_string", "write_png_native",
    "ImageBatch", "to_pil", "save_png", "encode_png", "read_png",
    "CoalesceError", "InvalidArgumentError", "NotFoundError", "ResourceExhaustedError",
    "CancelledError", "DeadlineExceededError", "InternalError", "UnavailableError",
]
