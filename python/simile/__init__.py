"""simile - Python bindings of the simile C library (libsimile.so, over ctypes): metric-learning
losses with their gradients (simile.losses, and simile.torch.Loss for PyTorch), retrieval and
verification metrics (simile.metrics), galleries for open-set identification (simile.Gallery)
and models (simile.Model).  Arrays are NumPy; float32 C-contiguous arrays are passed without a
copy, others are converted.  Failures raise simile.Error (.status, .message).  docs/python.md."""
from ._lib import Error, lib as _clib, text as _text
from . import losses, metrics
from .data import load_idx, load_folder
from .gallery import Gallery
from .model import Model

__version__ = _text(_clib.sm_version())


def version():
    """The C library's version string (sm_version)."""
    return _text(_clib.sm_version())


def set_num_threads(n):
    """Threads of the compute kernels for the whole process (n <= 0: all cores)."""
    _clib.sm_set_num_threads(int(n))


def get_num_threads():
    return int(_clib.sm_get_num_threads())


__all__ = ["Error", "losses", "metrics", "Gallery", "Model", "load_idx", "load_folder", "version", "set_num_threads",
           "get_num_threads"]
