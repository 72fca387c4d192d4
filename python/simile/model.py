"""model.py - simile.Model: a network of the C library (sm_model_*): create from a spec or
load a model file, embed images, train on arrays or an image folder, save.
    m = simile.Model.load("ms.smm")
    emb = m.embed(images)                    # images (n, h, w, c) or (n, h, w) float32 -> (n, d)
    m = simile.Model("cnn-s", (28, 28, 1)); m.train(x, y, loss="multisimilarity", epochs=1)
    m.save("ms.smm")"""
import ctypes

import numpy as np

from . import _lib
from ._lib import lib, check, text

_OPTIMIZERS = {"sgd": 0, "adam": 1, "adamw": 2}
_SCHEDULES = {"constant": 0, "step": 1, "cosine": 2}


class Model:
    """A model built from spec ("cnn-s", "cnn-c", "cnn-m", "mlp" or layer text,
    docs/model-spec.md) for inputs of shape (h, w, c), parameters from seed."""

    def __init__(self, spec, input_shape, seed=1):
        h, w, c = (tuple(input_shape) + (1,))[:3] if len(input_shape) == 2 else tuple(input_shape)
        ptr = ctypes.c_void_p()
        check(lib.sm_model_create(ctypes.byref(ptr), spec.encode(), int(h), int(w), int(c), int(seed)))
        self._h = ptr

    @classmethod
    def load(cls, path):
        m = cls.__new__(cls)
        ptr = ctypes.c_void_p()
        check(lib.sm_model_load(ctypes.byref(ptr), str(path).encode()))
        m._h = ptr
        return m

    def __del__(self):
        if getattr(self, "_h", None):
            lib.sm_model_free(self._h)
            self._h = None

    def _check(self, st):
        check(st, lib.sm_model_errmsg, self._h)

    def save(self, path):
        """Write the model file atomically (temporary file, fsync, rename)."""
        self._check(lib.sm_model_save(self._h, str(path).encode()))

    @property
    def input_shape(self):
        h, w, c = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        lib.sm_model_input_shape(self._h, ctypes.byref(h), ctypes.byref(w), ctypes.byref(c))
        return h.value, w.value, c.value

    @property
    def dim(self):
        return int(lib.sm_model_embedding_dim(self._h))

    @property
    def num_params(self):
        return int(lib.sm_model_num_params(self._h))

    @property
    def num_classes(self):
        return int(lib.sm_model_num_classes(self._h))

    @property
    def fingerprint(self):
        """The CRC-32 that identifies the model in a gallery (Gallery(model_fingerprint=...))."""
        return int(lib.sm_model_fingerprint(self._h))

    @property
    def spec(self):
        return text(lib.sm_model_spec(self._h))

    @property
    def loss_name(self):
        return text(lib.sm_model_loss_name(self._h))

    def summary(self):
        return text(lib.sm_model_summary(self._h))

    def _images(self, images):
        h, w, c = self.input_shape
        x = _lib.f32(images, None, "images")
        if x.ndim == 3 and c == 1:
            x = x.reshape(x.shape[0], h if x.shape[1] == h else x.shape[1], x.shape[2], 1)
        if x.ndim != 4 or x.shape[1:] != (h, w, c):
            raise _lib.error(8, f"images: shape {x.shape}, the model takes (n, {h}, {w}, {c})")
        return x

    def embed(self, images):
        """Embeddings (n, d) float32 of images (n, h, w, c) (or (n, h, w) for c = 1), in inference
        mode (batch norm's running statistics)."""
        x = self._images(images)
        out = np.empty((x.shape[0], self.dim), np.float32)
        self._check(lib.sm_model_embed(self._h, _lib.ptr(x, _lib.F32P), x.shape[0], _lib.ptr(out, _lib.F32P)))
        return out

    def logits(self, images):
        """Class logits (n, C) of the model's classifier head (a model trained with softmax or
        focal)."""
        x = self._images(images)
        out = np.empty((x.shape[0], max(self.num_classes, 1)), np.float32)
        self._check(lib.sm_model_logits(self._h, _lib.ptr(x, _lib.F32P), x.shape[0], _lib.ptr(out, _lib.F32P)))
        return out

    def train(self, images=None, labels=None, folder=None, loss="multisimilarity", loss_options=None,
              loss_seed=1, mean=None, std=None, progress=None, **config):
        """Train on images (n, h, w, c) with labels (n), or on an image folder (one sub-folder per
        class, decoded and resized to the model's input; mean/std normalise it), with a loss by
        name (simile.losses) and its options (dict).  config sets sm_train_config's fields:
        epochs, batch_size, optimizer ('sgd', 'adam', 'adamw'), lr, momentum, weight_decay,
        beta1, beta2, eps, schedule ('constant', 'step', 'cosine'), warmup_steps, step_epochs,
        step_gamma, per_class, samples_per_epoch, pk_random, ema_decay, aug_shift, aug_flip,
        seed, grad_shards (docs/distributed.md).  progress(dict) is called after every batch; a true return stops training.
        Returns the class names of the folder (None for arrays)."""
        h, w, c = self.input_shape
        ds = ctypes.c_void_p()
        class_names = None
        if folder is not None:
            if images is not None:
                raise _lib.error(1, "train: give images and labels, or folder")
            names_p, count = ctypes.POINTER(ctypes.c_char_p)(), ctypes.c_int()
            check(lib.sm_dataset_load_folder(ctypes.byref(ds), str(folder).encode(), h, w, c,
                                             ctypes.byref(names_p), ctypes.byref(count)))
            class_names = [text(names_p[i]) for i in range(count.value)]
            _lib.libc_free(names_p)
        else:
            if images is None or labels is None:
                raise _lib.error(1, "train: give images and labels, or folder")
            x = self._images(images)
            y = _lib.i32(labels, x.shape[0])
            check(lib.sm_dataset_from_arrays(ctypes.byref(ds), _lib.ptr(x, _lib.F32P),
                                             _lib.ptr(y, _lib.I32P), x.shape[0], h, w, c))
        lp = ctypes.c_void_p()
        try:
            if mean is not None or std is not None:
                check(lib.sm_dataset_normalize(ds, float(mean or 0.0), float(1.0 if std is None else std)))
            cfg = _lib.TrainConfig()
            lib.sm_train_config_default(ctypes.byref(cfg))
            for k, v in config.items():
                if k == "optimizer":
                    if v not in _OPTIMIZERS:
                        raise _lib.error(1, f"unknown optimizer '{v}' (sgd, adam, adamw)")
                    v = _OPTIMIZERS[v]
                elif k == "schedule":
                    if v not in _SCHEDULES:
                        raise _lib.error(1, f"unknown schedule '{v}' (constant, step, cosine)")
                    v = _SCHEDULES[v]
                elif k in ("progress", "user", "grad_hook") or k not in dict(cfg._fields_):
                    raise _lib.error(1, f"train: unknown option '{k}'")
                setattr(cfg, k, int(v) if isinstance(v, bool) else v)
            if progress is not None:
                def cb(p, _user):
                    q = p.contents
                    try:
                        return 1 if progress({f: getattr(q, f) for f, _ in _lib.TrainProgress._fields_}) else 0
                    except BaseException:  # an exception in the callback stops training
                        return 1
                cfg.progress = _lib.PROGRESS_FN(cb)
            opts = _lib.options_text(loss_options or {})
            check(lib.sm_loss_create(ctypes.byref(lp), loss.encode(), opts.encode(), self.dim, int(loss_seed)))
            self._check(lib.sm_train(self._h, lp, ds, ctypes.byref(cfg)))
        finally:
            lib.sm_loss_free(lp)
            lib.sm_dataset_free(ds)
        return class_names

    def __repr__(self):
        return f"simile.Model(input_shape={self.input_shape}, dim={self.dim}, params={self.num_params})"
