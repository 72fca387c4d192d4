"""data.py - datasets read by the C library into NumPy arrays: IDX files (plain or gzip, as
Fashion-MNIST ships them) and image folders (one sub-folder per class)."""
import ctypes

import numpy as np

from . import _lib
from ._lib import lib, check, text


def _arrays(ds):
    n = int(lib.sm_dataset_size(ds))
    h, w, c = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    lib.sm_dataset_shape(ds, ctypes.byref(h), ctypes.byref(w), ctypes.byref(c))
    x = np.empty((n, h.value, w.value, c.value), np.float32)
    y = np.empty(n, np.int32)
    if n:
        ctypes.memmove(x.ctypes.data, lib.sm_dataset_images(ds), x.nbytes)
        ctypes.memmove(y.ctypes.data, lib.sm_dataset_labels(ds), y.nbytes)
    return x, y


def load_idx(images, labels):
    """(x (n, h, w, 1) float32 in [0, 1], y (n) int32) from an IDX image file and its label
    file (sm_dataset_load_idx: every header field and length checked)."""
    ds = ctypes.c_void_p()
    check(lib.sm_dataset_load_idx(ctypes.byref(ds), str(images).encode(), str(labels).encode()))
    try:
        return _arrays(ds)
    finally:
        lib.sm_dataset_free(ds)


def load_folder(folder, h, w, c=1):
    """(x (n, h, w, c) float32 in [0, 1], y (n) int32, class names): the images of a folder
    with one sub-folder per class (sorted names -> labels 0, 1, ...), decoded and resized
    (sm_dataset_load_folder)."""
    ds = ctypes.c_void_p()
    names_p, count = ctypes.POINTER(ctypes.c_char_p)(), ctypes.c_int()
    check(lib.sm_dataset_load_folder(ctypes.byref(ds), str(folder).encode(), int(h), int(w), int(c),
                                     ctypes.byref(names_p), ctypes.byref(count)))
    try:
        names = [text(names_p[i]) for i in range(count.value)]
        x, y = _arrays(ds)
    finally:
        _lib.libc_free(names_p)
        lib.sm_dataset_free(ds)
    return x, y, names
