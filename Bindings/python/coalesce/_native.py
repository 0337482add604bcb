"""ctypes declarations mirroring Include/coalesce.h, and the search for libcoalesce.so.

Keep the Structure field lists in the same order as the header. Structs are filled by the
library's ``*_init`` functions for ``ctypes.sizeof`` of these declarations, so this binding keeps
working with a newer library whose structs have grown (coalesce.h, ABI STABILITY).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
from typing import Optional

#: Header version this binding was written against (CZ_VERSION_MAJOR).
HEADER_VERSION_MAJOR = 0
#: Oldest library with every call this binding makes (cz_*_init, cz_model_get_info: 0.2).
MIN_VERSION_NUMBER = 200

PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


class EngineOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("plugin_dir", ctypes.c_char_p),
        ("models_dir", ctypes.c_char_p),
        ("threads", ctypes.c_int32),
        ("preload", ctypes.c_int32),
        # since 0.2
        ("log", LOG_FN),
        ("log_user_data", ctypes.c_void_p),
    ]


class GenerateParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("model", ctypes.c_char_p),
        ("prompt", ctypes.c_char_p),
        ("seed", ctypes.c_uint64),
        ("steps", ctypes.c_int32),
        ("count", ctypes.c_int32),
        ("guidance", ctypes.c_float),
        ("progress", PROGRESS_FN),
        ("user_data", ctypes.c_void_p),
        ("timeout_ms", ctypes.c_uint32),
    ]


class ModelInfo(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("height", ctypes.c_int32),
        ("width", ctypes.c_int32),
        ("channels", ctypes.c_int32),
        ("default_steps", ctypes.c_int32),
        ("max_steps", ctypes.c_int32),
        ("max_batch", ctypes.c_int32),
        ("supports_guidance", ctypes.c_int32),
        ("generation", ctypes.c_uint64),
        ("backend", ctypes.c_char * 64),
        ("backend_version", ctypes.c_char * 64),
        ("revision", ctypes.c_char * 128),
    ]


def _candidates() -> list:
    """Where to look for libcoalesce.so, in order."""
    out = []
    env = os.environ.get("COALESCE_LIB")
    if env:
        out.append(env)  # explicit path wins; no fallback if it is wrong (see load_library)
        return out
    prefix = os.environ.get("COALESCE_PREFIX")
    if prefix:
        out.append(os.path.join(prefix, "lib", "libcoalesce.so"))
    if shutil.which("pkg-config"):
        try:
            libdir = subprocess.run(
                ["pkg-config", "--variable=libdir", "coalesce"],
                capture_output=True, text=True, timeout=10,
            ).stdout.strip()
            if libdir:
                out.append(os.path.join(libdir, "libcoalesce.so"))
        except (OSError, subprocess.SubprocessError):
            pass
    found = ctypes.util.find_library("coalesce")
    if found:
        out.append(found)
    out.append("/usr/local/lib/libcoalesce.so")
    return out


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_char_p, c_void_p = ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p
    pp = ctypes.POINTER(c_void_p)
    sigs = {
        "cz_version": (c_char_p, []),
        "cz_version_number": (c_int, []),
        "cz_status_string": (c_char_p, [c_int]),
        "cz_engine_options_init": (c_int, [ctypes.POINTER(EngineOptions), ctypes.c_size_t]),
        "cz_engine_create": (c_int, [ctypes.POINTER(EngineOptions), pp]),
        "cz_engine_list_models": (c_int, [c_void_p, ctypes.POINTER(ctypes.POINTER(c_char_p)),
                                          ctypes.POINTER(ctypes.c_size_t)]),
        "cz_string_list_free": (None, [ctypes.POINTER(c_char_p)]),
        "cz_model_get_info": (c_int, [c_void_p, c_char_p, ctypes.POINTER(ModelInfo)]),
        "cz_engine_free": (None, [c_void_p]),
        "cz_engine_errmsg": (c_char_p, [c_void_p]),
        "cz_model_load": (c_int, [c_void_p, c_char_p, c_char_p]),
        "cz_model_unload": (c_int, [c_void_p, c_char_p]),
        "cz_model_describe": (c_int, [c_void_p, c_char_p, pp]),
        "cz_string_free": (None, [c_void_p]),
        "cz_generate_params_init": (c_int, [ctypes.POINTER(GenerateParams), ctypes.c_size_t]),
        "cz_generate": (c_int, [c_void_p, ctypes.POINTER(GenerateParams), pp]),
        "cz_image_batch_count": (c_int, [c_void_p]),
        "cz_image_batch_width": (c_int, [c_void_p]),
        "cz_image_batch_height": (c_int, [c_void_p]),
        "cz_image_batch_channels": (c_int, [c_void_p]),
        "cz_image_batch_pixels": (ctypes.POINTER(ctypes.c_uint8), [c_void_p, c_int]),
        "cz_image_batch_seed": (ctypes.c_uint64, [c_void_p, c_int]),
        "cz_image_batch_free": (None, [c_void_p]),
        "cz_image_write_png": (c_int, [c_void_p, c_int, c_char_p]),
        "cz_blas_core": (c_char_p, []),
        "cz_kernel_isa": (c_char_p, []),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


_lib: Optional[ctypes.CDLL] = None


def load_library(path: Optional[str] = None) -> ctypes.CDLL:
    """Loads libcoalesce.so once (``path``, else $COALESCE_LIB, $COALESCE_PREFIX/lib,
    pkg-config, the linker path, /usr/local/lib) and declares every function's signature."""
    global _lib
    if _lib is not None and path is None:
        return _lib
    tried = []
    for cand in ([path] if path else _candidates()):
        try:
            lib = ctypes.CDLL(cand)
        except OSError as e:
            tried.append(f"{cand}: {e}")
            continue
        lib.cz_version.restype, lib.cz_version.argtypes = ctypes.c_char_p, []
        lib.cz_version_number.restype, lib.cz_version_number.argtypes = ctypes.c_int, []
        number = lib.cz_version_number()
        if number // 10000 != HEADER_VERSION_MAJOR or number < MIN_VERSION_NUMBER:
            raise OSError(f"{cand} is libcoalesce {lib.cz_version().decode()}, "
                          f"this binding needs {HEADER_VERSION_MAJOR}.x from version 0.2 on")
        _declare(lib)
        _lib = lib
        return lib
    raise OSError("libcoalesce.so not found; set COALESCE_LIB to its path or COALESCE_PREFIX "
                  "to the install prefix. Tried:\n  " + "\n  ".join(tried))
