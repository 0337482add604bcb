"""Images as numpy arrays and PIL images; PNG files through Pillow (libpng-compatible, no codec
of our own)."""
from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any, List, Optional, Union, overload

import numpy as np

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["ImageBatch", "to_pil", "encode_png", "save_png", "read_png"]

_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _check(image: Any) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"images are uint8 pixels, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (2, 3, 4))):
        raise ValueError(f"an image is (H, W) or (H, W, C) with C in 1..4, got {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError("empty image")
    return np.ascontiguousarray(a)


def to_pil(image: Any) -> "PILImage.Image":
    """One uint8 image, (H, W) or (H, W, C), as a PIL image (mode L, LA, RGB or RGBA)."""
    from PIL import Image
    a = _check(image)
    mode = _MODES[1 if a.ndim == 2 else a.shape[2]]
    return Image.frombytes(mode, (a.shape[1], a.shape[0]), a.tobytes())


def encode_png(image: Any) -> bytes:
    """PNG bytes of one uint8 image, (H, W) or (H, W, C) with C in 1..4 (Pillow)."""
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG")
    return buf.getvalue()


def save_png(image: Any, path: Union[str, "os.PathLike[str]"]) -> None:
    """Writes one image (see encode_png) to ``path``."""
    data = encode_png(image)
    with open(path, "wb") as f:
        f.write(data)


def read_png(path: Union[str, "os.PathLike[str]"]) -> np.ndarray:
    """Reads a PNG (8 bits per channel) into a uint8 array: (H, W) for grayscale, (H, W, C) otherwise."""
    from PIL import Image
    with Image.open(path) as im:
        if im.format != "PNG":
            raise ValueError(f"{os.fspath(path)}: not a PNG")
        if im.mode not in _MODES.values():
            raise ValueError(f"{os.fspath(path)}: unsupported PNG mode {im.mode}")
        return np.array(im)


class ImageBatch(np.ndarray):
    """What :meth:`coalesce.Engine.generate` returns: a numpy uint8 array (count, H, W) or
    (count, H, W, C), plus :meth:`to_pil`. Indexing out one image gives a plain ndarray (use
    :func:`coalesce.to_pil` on it); slices along the batch axis stay ImageBatch."""

    def __new__(cls, pixels: np.ndarray) -> "ImageBatch":
        if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4):
            raise ValueError(f"an image batch is uint8 (count, H, W[, C]), got {pixels.dtype} {pixels.shape}")
        return np.asarray(pixels).view(cls)

    def __getitem__(self, key: Any) -> Any:
        out = np.ndarray.__getitem__(self, key)
        if isinstance(out, np.ndarray) and out.ndim != self.ndim:
            return out.view(np.ndarray)
        return out

    def __array_wrap__(self, array: Any, context: Any = None, return_scalar: bool = False) -> Any:
        """Arithmetic and reductions give plain arrays (or scalars), not image batches."""
        out = np.asarray(array)
        return out[()] if return_scalar else out

    @property
    def count(self) -> int:
        return int(self.shape[0])

    @overload
    def to_pil(self) -> "List[PILImage.Image]": ...
    @overload
    def to_pil(self, index: int) -> "PILImage.Image": ...

    def to_pil(self, index: Optional[int] = None) -> "Union[PILImage.Image, List[PILImage.Image]]":
        """Image ``index`` as a PIL image, or every image as a list."""
        plain = self.view(np.ndarray)
        if index is None:
            return [to_pil(plain[i]) for i in range(plain.shape[0])]
        return to_pil(plain[index])
