"""_lib.py - loads libsimile.so (ctypes), declares the C functions the package calls, and turns
a failed status into simile.Error.  Where the library is found, first hit wins:
SIMILE_LIBRARY (a path), then libsimile.so.0 on the loader's path (LD_LIBRARY_PATH, ldconfig's
cache: /usr/local/lib after `cmake --install build && ldconfig`), then the libdir that
`pkg-config --variable=libdir simile` names."""
import ctypes
import ctypes.util
import os
import subprocess

import numpy as np

from ctypes import (c_char_p, c_double, c_float, c_int, c_int8, c_int32, c_int64,
                    c_uint32, c_uint64, c_void_p, POINTER)


class Error(Exception):
    """A failed simile call: .status is the sm_status code (int), .name its short description
    (sm_strerror), .message the library's detailed message (sm_errmsg)."""

    def __init__(self, status, message, name=""):
        self.status = int(status)
        self.name = name
        self.message = message
        super().__init__(f"{name}: {message}" if name else message)


def _load():
    tried = []
    path = os.environ.get("SIMILE_LIBRARY")
    if path:
        return ctypes.CDLL(path)  # an explicit path that fails to load is an error as it is
    try:
        return ctypes.CDLL("libsimile.so.0")
    except OSError as e:
        tried.append(f"libsimile.so.0 on the loader's path ({e})")
    try:
        libdir = subprocess.run(["pkg-config", "--variable=libdir", "simile"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        if libdir:
            return ctypes.CDLL(os.path.join(libdir, "libsimile.so.0"))
        tried.append("pkg-config: no simile.pc on PKG_CONFIG_PATH")
    except (OSError, subprocess.SubprocessError) as e:
        tried.append(f"pkg-config ({e})")
    raise ImportError("simile: cannot load libsimile.so.0: install the library (cmake --install "
                      "build; ldconfig) or set SIMILE_LIBRARY=/path/to/libsimile.so.0; tried: "
                      + "; ".join(tried))


lib = _load()

F32P = POINTER(c_float)
I32P = POINTER(c_int32)
I64P = POINTER(c_int64)
F64P = POINTER(c_double)
I8P = POINTER(c_int8)


class TrainProgress(ctypes.Structure):
    _fields_ = [("epoch", c_int), ("epochs", c_int), ("step", c_int64), ("steps_per_epoch", c_int64),
                ("loss", c_double), ("images_per_sec", c_double), ("seconds", c_double),
                ("lr", c_float), ("epoch_done", c_int), ("elapsed_seconds", c_double),
                ("eta_seconds", c_double), ("val", c_void_p)]


PROGRESS_FN = ctypes.CFUNCTYPE(c_int, POINTER(TrainProgress), c_void_p)
GRAD_HOOK_FN = ctypes.CFUNCTYPE(c_int, F32P, c_int64, c_void_p)


class Augment(ctypes.Structure):  # sm_augment
    _fields_ = [(n, c_float) for n in ("crop_scale_min", "crop_scale_max", "crop_ratio_min", "crop_ratio_max",
                                      "brightness", "contrast", "saturation", "erase_p", "erase_scale_min",
                                      "erase_scale_max", "erase_ratio_min", "erase_ratio_max")]


class TrainConfig(ctypes.Structure):  # sm_train_config, field for field
    _fields_ = [("epochs", c_int), ("batch_size", c_int), ("optimizer", c_int), ("lr", c_float),
                ("momentum", c_float), ("weight_decay", c_float), ("beta1", c_float),
                ("beta2", c_float), ("eps", c_float), ("schedule", c_int),
                ("warmup_steps", c_int64), ("step_epochs", c_int), ("step_gamma", c_float),
                ("per_class", c_int), ("samples_per_epoch", c_int64), ("pk_random", c_int),
                ("ema_decay", c_float), ("aug_shift", c_int), ("aug_flip", c_int),
                ("aug", Augment), ("seed", c_uint64), ("progress", PROGRESS_FN), ("user", c_void_p),
                ("grad_hook", GRAD_HOOK_FN), ("freeze_bn", c_int), ("freeze_until", c_int),
                ("backbone_lr_mult", c_float), ("val", c_void_p), ("keep_best", c_int), ("embed_at", c_int),
                ("checkpoint", ctypes.c_char_p), ("checkpoint_steps", c_int64), ("resume", ctypes.c_char_p),
                ("dist", c_void_p), ("grad_shards", c_int)]


class RetrievalResult(ctypes.Structure):
    _fields_ = [("precision_at_1", c_double), ("r_precision", c_double), ("map_at_r", c_double),
                ("recall_at_k", c_double * 4), ("nmi", c_double), ("num_queries", c_int64),
                ("num_skipped", c_int64), ("num_classes", c_int)]


class GalleryClass(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("items", c_int64), ("removed", c_int)]


class GalleryCalibration(ctypes.Structure):
    _fields_ = [("calibrated", c_int), ("changed", c_int), ("generation", c_uint64),
                ("calibrated_generation", c_uint64), ("items_at_calibration", c_int64)]


# sm_gallery_match and sm_gallery_decision as NumPy record types, so that a whole (nq, k)
# result is one array the C call fills and its fields are read as columns.
MATCH_DTYPE = np.dtype({"names": ["class_index", "class_name", "item_id", "distance"],
                        "formats": [np.int32, np.uintp, np.int64, np.float32],
                        "offsets": [0, 8, 16, 24], "itemsize": 32})
DECISION_DTYPE = np.dtype({"names": ["class_index", "best_class", "class_name", "distance", "votes"],
                           "formats": [np.int32, np.int32, np.uintp, np.float32, np.float32],
                           "offsets": [0, 4, 8, 16, 20], "itemsize": 24})

S = c_int  # sm_status
_protos = {
    "sm_strerror": (c_char_p, [c_int]),
    "sm_errmsg": (c_char_p, []),
    "sm_version": (c_char_p, []),
    "sm_set_num_threads": (None, [c_int]),
    "sm_get_num_threads": (c_int, []),
    # datasets
    "sm_dataset_from_arrays": (S, [POINTER(c_void_p), F32P, I32P, c_int64, c_int, c_int, c_int]),
    "sm_dataset_load_folder": (S, [POINTER(c_void_p), c_char_p, c_int, c_int, c_int,
                                   POINTER(POINTER(c_char_p)), POINTER(c_int)]),
    "sm_dataset_normalize": (S, [c_void_p, c_float, c_float]),
    "sm_dataset_free": (None, [c_void_p]),
    "sm_dataset_size": (c_int64, [c_void_p]),
    "sm_dataset_load_idx": (S, [POINTER(c_void_p), c_char_p, c_char_p]),
    "sm_dataset_shape": (None, [c_void_p, POINTER(c_int), POINTER(c_int), POINTER(c_int)]),
    "sm_dataset_images": (c_void_p, [c_void_p]),
    "sm_dataset_labels": (c_void_p, [c_void_p]),
    # models
    "sm_model_create": (S, [POINTER(c_void_p), c_char_p, c_int, c_int, c_int, c_uint64]),
    "sm_model_load": (S, [POINTER(c_void_p), c_char_p]),
    "sm_model_save": (S, [c_void_p, c_char_p]),
    "sm_model_free": (None, [c_void_p]),
    "sm_model_errmsg": (c_char_p, [c_void_p]),
    "sm_model_spec": (c_char_p, [c_void_p]),
    "sm_model_input_shape": (None, [c_void_p, POINTER(c_int), POINTER(c_int), POINTER(c_int)]),
    "sm_model_embedding_dim": (c_int, [c_void_p]),
    "sm_model_num_params": (c_int64, [c_void_p]),
    "sm_model_num_classes": (c_int, [c_void_p]),
    "sm_model_loss_name": (c_char_p, [c_void_p]),
    "sm_model_fingerprint": (c_uint32, [c_void_p]),
    "sm_model_summary": (c_char_p, [c_void_p]),
    "sm_model_embed": (S, [c_void_p, F32P, c_int64, F32P]),
    "sm_model_logits": (S, [c_void_p, F32P, c_int64, F32P]),
    "sm_train_config_default": (None, [POINTER(TrainConfig)]),
    "sm_train": (S, [c_void_p, c_void_p, c_void_p, POINTER(TrainConfig)]),
    # losses
    "sm_loss_create": (S, [POINTER(c_void_p), c_char_p, c_char_p, c_int, c_uint64]),
    "sm_loss_free": (None, [c_void_p]),
    "sm_loss_errmsg": (c_char_p, [c_void_p]),
    "sm_loss_name": (c_char_p, [c_void_p]),
    "sm_loss_compute": (S, [c_void_p, F32P, I32P, c_int, c_int, POINTER(c_float), F32P]),
    "sm_loss_describe": (S, [c_int, POINTER(c_char_p), POINTER(c_char_p)]),
    "sm_loss_params": (None, [c_void_p, POINTER(F32P), POINTER(F32P), POINTER(c_int64)]),
    # metrics and search
    "sm_retrieval_metrics": (S, [F32P, I32P, c_int64, c_int, c_int, POINTER(RetrievalResult)]),
    "sm_nmi": (S, [I32P, I32P, c_int64, POINTER(c_double)]),
    "sm_roc": (S, [F32P, I8P, c_int64, F64P, F64P, F32P, c_int64, I64P]),
    "sm_roc_auc": (S, [F32P, I8P, c_int64, POINTER(c_double)]),
    "sm_eer": (S, [F32P, I8P, c_int64, POINTER(c_double), F32P]),
    "sm_tar_at_far": (S, [F32P, I8P, c_int64, c_double, POINTER(c_double), F32P]),
    "sm_knn_search": (S, [F32P, c_int64, F32P, c_int64, c_int, c_int, c_int, c_int, F32P, I64P]),
    "sm_calibrate_threshold": (S, [F32P, I8P, c_int64, c_int, c_double, F32P, POINTER(c_double),
                                   POINTER(c_double)]),
    # galleries
    "sm_gallery_create": (S, [POINTER(c_void_p), c_int, c_int, c_uint32]),
    "sm_gallery_open": (S, [POINTER(c_void_p), c_char_p]),
    "sm_gallery_save": (S, [c_void_p, c_char_p]),
    "sm_gallery_free": (None, [c_void_p]),
    "sm_gallery_errmsg": (c_char_p, [c_void_p]),
    "sm_gallery_dim": (c_int, [c_void_p]),
    "sm_gallery_metric": (c_int, [c_void_p]),
    "sm_gallery_model_fingerprint": (c_uint32, [c_void_p]),
    "sm_gallery_size": (c_int64, [c_void_p]),
    "sm_gallery_num_classes": (c_int, [c_void_p]),
    "sm_gallery_add_sourced": (S, [c_void_p, F32P, c_int64, c_int, c_char_p, I64P,
                                   POINTER(c_char_p), I64P]),
    "sm_gallery_remove_class": (S, [c_void_p, c_char_p, I64P]),
    "sm_gallery_remove_item": (S, [c_void_p, c_int64]),
    "sm_gallery_compact": (S, [c_void_p]),
    "sm_gallery_class_info": (S, [c_void_p, c_int, POINTER(GalleryClass)]),
    "sm_gallery_find_class": (c_int, [c_void_p, c_char_p]),
    "sm_gallery_items": (None, [c_void_p, I64P, I32P, F32P]),
    "sm_gallery_item_sources": (None, [c_void_p, POINTER(c_char_p)]),
    "sm_gallery_calibration": (None, [c_void_p, POINTER(GalleryCalibration)]),
    "sm_gallery_threshold": (c_float, [c_void_p, POINTER(c_int)]),
    "sm_gallery_set_threshold": (S, [c_void_p, c_float, c_int]),
    "sm_gallery_search": (S, [c_void_p, F32P, c_int64, c_int, c_int, c_void_p]),
    "sm_gallery_class_distances": (S, [c_void_p, F32P, c_int64, c_int, c_int, F32P]),
    "sm_gallery_decide": (S, [c_void_p, F32P, c_int64, c_int, c_int, c_int, c_void_p]),
}
for _name, (_res, _args) in _protos.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args

# the structs mirrored above must be the library's, field for field
for _name, _cls in (("sm_train_config_size", TrainConfig), ("sm_train_progress_size", TrainProgress)):
    _f = getattr(lib, _name)
    _f.restype, _f.argtypes = ctypes.c_size_t, []
    if _f() != ctypes.sizeof(_cls):
        raise ImportError(f"simile: this package's {_cls.__name__} is {ctypes.sizeof(_cls)} bytes, the "
                          f"library's is {_f()}: the package and libsimile.so are from different versions")


_libc = ctypes.CDLL(None)
_libc.free.argtypes = [c_void_p]
_libc.free.restype = None


def libc_free(p):
    """free() of a block the library allocated for the caller (class name lists)."""
    _libc.free(ctypes.cast(p, c_void_p))


def text(b):
    return b.decode("utf-8", "replace") if b is not None else None


def error(status, message):
    """simile.Error for a status code and a message, named by sm_strerror."""
    return Error(status, message, text(lib.sm_strerror(status)))


def check(status, errmsg=None, handle=None):
    """Raise Error for a status other than SM_OK; the message is the handle's (errmsg(handle))
    when a handle was given, else the thread's sm_errmsg()."""
    if status != 0:
        msg = text(errmsg(handle)) if errmsg is not None and handle else text(lib.sm_errmsg())
        raise error(status, msg or "")


def f32(a, ndim=None, name="array"):
    """a as a C-contiguous float32 NumPy array (no copy when it is one already)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if ndim is not None and a.ndim != ndim:
        raise error(1, f"{name}: expected {ndim} dimensions, got shape {a.shape}")
    return a


def i32(a, n=None, name="labels"):
    a = np.asarray(a)
    if a.dtype.kind not in "iub":
        raise error(1, f"{name}: expected integers, got dtype {a.dtype}")
    if a.dtype != np.int32:
        if a.size and (a.max() > np.iinfo(np.int32).max or a.min() < np.iinfo(np.int32).min):
            raise error(5, f"{name}: values outside int32")
        a = a.astype(np.int32)
    a = np.ascontiguousarray(a).reshape(-1)
    if n is not None and a.shape[0] != n:
        raise error(8, f"{name}: {a.shape[0]} values for {n} rows")
    return a


def ptr(a, t):
    return a.ctypes.data_as(t)


METRICS = {"l2": 0, "ip": 1, "cosine": 2}
RULES = {"nearest": 0, "vote": 1, "centroid": 2}


def metric_code(metric):
    if metric not in METRICS:
        raise error(1, f"unknown metric '{metric}' (l2, ip or cosine)")
    return METRICS[metric]


def rule_code(rule):
    if rule not in RULES:
        raise error(1, f"unknown rule '{rule}' (nearest, vote or centroid)")
    return RULES[rule]


def options_text(opts):
    """{'margin': 0.1, 'miner': 'hard'} -> 'margin=0.1,miner=hard' (True/False as 1/0)."""
    parts = []
    for k, v in opts.items():
        if isinstance(v, bool):
            v = int(v)
        parts.append(f"{k}={v}")
    return ",".join(parts)
