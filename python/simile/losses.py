"""losses.py - every simile loss by name (the registry of `simile losses`):
    loss = simile.losses.Loss("triplet", margin=0.1, miner="semihard")
    value, grad = loss(emb, labels)          # emb (n, d) float32, labels (n) int; grad (n, d)
or in one call, simile.losses.triplet(emb, labels, margin=0.1).  Losses with trainable
parameters (softmax, focal, arcface, cosface, proxyanchor: classes=C) keep them in the loss:
loss.params and loss.param_grads are NumPy views of the C blocks (no copy); each call adds to
param_grads (zero_param_grads() clears them)."""
import ctypes

import numpy as np

from . import _lib
from ._lib import lib, check, text


def describe():
    """{name: one-line description of the formula and options} for every registered loss."""
    out, i = {}, 0
    while True:
        name, help_ = ctypes.c_char_p(), ctypes.c_char_p()
        if lib.sm_loss_describe(i, ctypes.byref(name), ctypes.byref(help_)) != 0:
            return out
        out[text(name.value)] = text(help_.value)
        i += 1


def names():
    """The registered loss names, in registry order."""
    return list(describe())


class Loss:
    """A simile loss (sm_loss) by name with options as keyword arguments.  dim, the embedding
    size, is taken from the first call when not given; seed initialises trainable parameters."""

    def __init__(self, name, dim=None, seed=1, **options):
        self.name = name
        self.options = dict(options)
        self.seed = int(seed)
        self._h = None
        self.dim = None
        if dim is not None:
            self._create(int(dim))

    def _create(self, dim):
        h = ctypes.c_void_p()
        check(lib.sm_loss_create(ctypes.byref(h), self.name.encode(),
                                 _lib.options_text(self.options).encode(), dim, self.seed))
        self._h, self.dim = h, dim

    def __del__(self):
        if getattr(self, "_h", None):
            lib.sm_loss_free(self._h)
            self._h = None

    def _params(self):
        if self._h is None:
            return None, None
        p, g, n = _lib.F32P(), _lib.F32P(), ctypes.c_int64()
        lib.sm_loss_params(self._h, ctypes.byref(p), ctypes.byref(g), ctypes.byref(n))
        if not n.value:
            return None, None
        return (np.ctypeslib.as_array(p, shape=(n.value,)), np.ctypeslib.as_array(g, shape=(n.value,)))

    @property
    def params(self):
        """The loss's trainable parameters as one flat float32 view (None if it has none)."""
        return self._params()[0]

    @property
    def param_grads(self):
        """The gradient block of params (None if it has none); sm_loss_compute adds to it."""
        return self._params()[1]

    def zero_param_grads(self):
        g = self.param_grads
        if g is not None:
            g[:] = 0

    def __call__(self, emb, labels, grad=True):
        """(value, grad): the loss of emb (n, d) with labels (n) and dL/demb (n, d) float32
        (None with grad=False)."""
        emb = _lib.f32(emb, 2, "emb")
        n, d = emb.shape
        labels = _lib.i32(labels, n)
        if self._h is None:
            self._create(d)
        value = ctypes.c_float()
        g = np.empty((n, d), np.float32) if grad else None
        st = lib.sm_loss_compute(self._h, _lib.ptr(emb, _lib.F32P), _lib.ptr(labels, _lib.I32P), n, d,
                                 ctypes.byref(value), _lib.ptr(g, _lib.F32P) if grad else None)
        check(st, lib.sm_loss_errmsg, self._h)
        return float(value.value), g

    def __repr__(self):
        return f"simile.losses.Loss({self.name!r}, dim={self.dim}, {self.options})"


def compute(name, emb, labels, seed=1, **options):
    """value, grad of loss `name` with options on emb (n, d) and labels (n), with a fresh loss
    (parameters, if any, initialised from seed)."""
    return Loss(name, seed=seed, **options)(emb, labels)


def __getattr__(name):  # simile.losses.<name>(emb, labels, **options) for every registered loss
    if not name.startswith("_") and name in describe():
        def fn(emb, labels, seed=1, **options):
            return compute(name, emb, labels, seed=seed, **options)
        fn.__name__ = name
        fn.__doc__ = describe()[name]
        return fn
    raise AttributeError(f"module 'simile.losses' has no attribute '{name}'")
