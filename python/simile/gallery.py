"""gallery.py - simile.Gallery: enrolled embeddings with class names for open-set
identification and verification (sm_gallery_*), with FAISS-like array shapes:
    g = simile.Gallery(dim=64)                 # or Gallery.open("g.smg")
    ids = g.add(emb, classes, names)           # emb (n, d); a class name (or label) per row
    D, I = g.search(queries, k)                # (nq, k) distances and item ids, best first
    names, dist = g.identify(queries)          # class name per query (None: unknown)
    g.save("g.smg")
Distances are 'smaller = closer' for every metric (docs/gallery.md): l2 the Euclidean
distance, cosine 1 - cosine similarity, ip minus the inner product."""
import ctypes

import numpy as np

from . import _lib
from ._lib import lib, check, text

_METRIC_NAMES = {v: k for k, v in _lib.METRICS.items()}


class Gallery:
    """A gallery (sm_gallery) held in memory; path is where open() read it (save() default)."""

    def __init__(self, dim, metric="l2", model_fingerprint=0):
        h = ctypes.c_void_p()
        check(lib.sm_gallery_create(ctypes.byref(h), int(dim), _lib.metric_code(metric),
                                    int(model_fingerprint)))
        self._h, self.path = h, None

    @classmethod
    def open(cls, path):
        """Read a gallery file (its journal replayed, if any)."""
        g = cls.__new__(cls)
        h = ctypes.c_void_p()
        check(lib.sm_gallery_open(ctypes.byref(h), str(path).encode()))
        g._h, g.path = h, str(path)
        return g

    def __del__(self):
        if getattr(self, "_h", None):
            lib.sm_gallery_free(self._h)
            self._h = None

    def _check(self, st):
        check(st, lib.sm_gallery_errmsg, self._h)

    def save(self, path=None):
        """Write the gallery atomically to path (default: the file it was opened from)."""
        path = path or self.path
        if not path:
            raise _lib.error(1, "save: no path (the gallery was created in memory)")
        self._check(lib.sm_gallery_save(self._h, str(path).encode()))
        self.path = str(path)

    # ---- what it holds -------------------------------------------------------------------
    @property
    def dim(self):
        return int(lib.sm_gallery_dim(self._h))

    @property
    def metric(self):
        return _METRIC_NAMES[int(lib.sm_gallery_metric(self._h))]

    @property
    def model_fingerprint(self):
        return int(lib.sm_gallery_model_fingerprint(self._h))

    def __len__(self):
        return int(lib.sm_gallery_size(self._h))

    @property
    def ntotal(self):  # FAISS's name
        return len(self)

    def _class_slots(self):
        out = []
        for i in range(lib.sm_gallery_num_classes(self._h)):
            info = _lib.GalleryClass()
            self._check(lib.sm_gallery_class_info(self._h, i, ctypes.byref(info)))
            out.append((text(info.name), int(info.items), bool(info.removed)))
        return out

    @property
    def classes(self):
        """{class name: live items} of the live classes."""
        return {name: n for name, n, removed in self._class_slots() if not removed}

    def items(self):
        """(ids (n) int64, class names (n) list, embeddings (n, dim) float32, sources (n) list)."""
        n = len(self)
        ids = np.empty(n, np.int64)
        cls = np.empty(n, np.int32)
        emb = np.empty((n, self.dim), np.float32)
        src = (ctypes.c_char_p * max(n, 1))()
        lib.sm_gallery_items(self._h, _lib.ptr(ids, _lib.I64P), _lib.ptr(cls, _lib.I32P),
                             _lib.ptr(emb, _lib.F32P))
        lib.sm_gallery_item_sources(self._h, src)
        slots = self._class_slots()
        return ids, [slots[c][0] for c in cls], emb, [text(src[i]) for i in range(n)]

    # ---- changes -------------------------------------------------------------------------
    def add(self, emb, classes, names=None, ids=None):
        """Enrol emb (n, d): classes is one class name for every row or a sequence of n (names,
        or integer labels, named by their decimal value as `simile gallery enrol` does); names
        (n, optional) each item's source name; ids (n, optional) the item ids (default: new
        ones).  Returns the item ids (n) int64.  All or nothing for each class's rows."""
        emb = _lib.f32(emb, 2, "emb")
        n, d = emb.shape
        if isinstance(classes, (str, bytes, int, np.integer)):
            classes = [classes] * n
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in classes]
        if len(classes) != n:
            raise _lib.error(8, f"classes: {len(classes)} names for {n} embeddings")
        if names is not None and len(names) != n:
            raise _lib.error(8, f"names: {len(names)} names for {n} embeddings")
        if ids is not None:
            ids = np.ascontiguousarray(ids, np.int64).reshape(-1)
            if ids.shape[0] != n:
                raise _lib.error(8, f"ids: {ids.shape[0]} ids for {n} embeddings")
        out = np.empty(n, np.int64)
        order = {}
        for i, c in enumerate(classes):  # the classes in order of first appearance
            order.setdefault(c, []).append(i)
        for c, rows in order.items():
            rows = np.asarray(rows)
            e = emb if len(rows) == n else np.ascontiguousarray(emb[rows])
            src = None
            if names is not None:
                src = (ctypes.c_char_p * len(rows))(*[(names[i] or "").encode() for i in rows])
            idp = None
            if ids is not None:
                sel = np.ascontiguousarray(ids[rows])
                idp = _lib.ptr(sel, _lib.I64P)
            got = np.empty(len(rows), np.int64)
            self._check(lib.sm_gallery_add_sourced(self._h, _lib.ptr(e, _lib.F32P), len(rows), d,
                                                   c.encode(), idp, src, _lib.ptr(got, _lib.I64P)))
            out[rows] = got
        return out

    def remove(self, class_name=None, item_id=None):
        """Remove a class (and its items) or one item; returns the number of items removed."""
        if (class_name is None) == (item_id is None):
            raise _lib.error(1, "remove: give class_name or item_id")
        if class_name is not None:
            n = ctypes.c_int64()
            self._check(lib.sm_gallery_remove_class(self._h, str(class_name).encode(), ctypes.byref(n)))
            return int(n.value)
        self._check(lib.sm_gallery_remove_item(self._h, int(item_id)))
        return 1

    def compact(self):
        self._check(lib.sm_gallery_compact(self._h))

    # ---- queries -------------------------------------------------------------------------
    def _queries(self, q):
        q = _lib.f32(q, None, "queries")
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.ndim != 2:
            raise _lib.error(1, f"queries: expected (nq, d), got shape {q.shape}")
        return q

    def search(self, queries, k, return_classes=False):
        """(D, I): for each query (nq, d) its k nearest live items, best first: D (nq, k)
        float32 distances, I (nq, k) int64 item ids (-1 and +inf where k exceeds the gallery).
        With return_classes, also (nq, k) class names (None for unfilled slots)."""
        q = self._queries(queries)
        m = np.empty((q.shape[0], int(k)), _lib.MATCH_DTYPE)
        self._check(lib.sm_gallery_search(self._h, _lib.ptr(q, _lib.F32P), q.shape[0], q.shape[1],
                                          int(k), m.ctypes.data_as(ctypes.c_void_p)))
        D, I = m["distance"].copy(), m["item_id"].copy()
        if not return_classes:
            return D, I
        slots = [s[0] for s in self._class_slots()]
        C = np.array([[slots[c] if c >= 0 else None for c in row] for row in m["class_index"]], object)
        return D, I, C

    def class_distances(self, queries, rule="nearest"):
        """(nq, C) distance of each query to each class slot (nearest item, or centroid), and
        the slots' class names (C)."""
        q = self._queries(queries)
        C = int(lib.sm_gallery_num_classes(self._h))
        dist = np.empty((q.shape[0], C), np.float32)
        self._check(lib.sm_gallery_class_distances(self._h, _lib.ptr(q, _lib.F32P), q.shape[0],
                                                   q.shape[1], _lib.rule_code(rule),
                                                   _lib.ptr(dist, _lib.F32P)))
        return dist, [s[0] for s in self._class_slots()]

    def identify(self, queries, rule="nearest", k=5, threshold=None, return_best=False):
        """(names, distances): each query's class name by rule ('nearest', 'vote' with k
        neighbours, 'centroid') or None when it is farther than the threshold (the gallery's
        own unless threshold is given; float('inf') for a closed set), and its distance to that
        class.  return_best adds the closest class name whatever the threshold."""
        q = self._queries(queries)
        saved = None
        if threshold is not None:
            r = ctypes.c_int()
            saved = (lib.sm_gallery_threshold(self._h, ctypes.byref(r)), r.value)
            self._check(lib.sm_gallery_set_threshold(self._h, float(threshold), _lib.rule_code(rule)))
        try:
            out = np.empty(q.shape[0], _lib.DECISION_DTYPE)
            self._check(lib.sm_gallery_decide(self._h, _lib.ptr(q, _lib.F32P), q.shape[0], q.shape[1],
                                              _lib.rule_code(rule), int(k),
                                              out.ctypes.data_as(ctypes.c_void_p)))
        finally:
            if saved is not None:  # the stored threshold (and its calibration record) as it was
                lib.sm_gallery_set_threshold(self._h, saved[0], saved[1])
        slots = [s[0] for s in self._class_slots()]
        names = [slots[c] if c >= 0 else None for c in out["class_index"]]
        if return_best:
            return names, out["distance"].copy(), [slots[c] if c >= 0 else None for c in out["best_class"]]
        return names, out["distance"].copy()

    def verify(self, queries, class_name, rule="nearest", threshold=None):
        """(accepted (nq) bool, distances (nq)): is each query the class class_name?  Accepted
        when its distance to the class (nearest item, or centroid) is <= the threshold: the one
        given, else the gallery's when it was calibrated for this rule, as `simile verify
        --class` decides; otherwise accepted is None (no threshold applies)."""
        dist, slots = self.class_distances(queries, rule)
        i = lib.sm_gallery_find_class(self._h, str(class_name).encode())
        if i < 0:
            raise _lib.error(9, f"no class '{class_name}' in the gallery")
        d = dist[:, i].copy()
        if threshold is None:
            r = ctypes.c_int()
            thr = float(lib.sm_gallery_threshold(self._h, ctypes.byref(r)))
            if np.isinf(thr) or r.value != _lib.rule_code(rule):
                return None, d
        else:
            thr = float(threshold)
        return d <= thr, d

    @property
    def threshold(self):
        return float(lib.sm_gallery_threshold(self._h, None))

    def set_threshold(self, threshold, rule="nearest"):
        self._check(lib.sm_gallery_set_threshold(self._h, float(threshold), _lib.rule_code(rule)))

    def calibrate(self, emb, classes, far=None, f1=False, rule="nearest", dry_run=False):
        """Set the open-set threshold from labelled probes emb (n, d) with their class names, as
        `simile gallery calibrate` does: every probe's distance to every live class is a pair,
        genuine when the class is its own; the threshold is the largest with FAR <= far
        (default 0.01) or, with f1, the best F1.  Returns {threshold, tar, far, genuine,
        impostor}; dry_run leaves the gallery's threshold as it was."""
        if f1 and far is not None:
            raise _lib.error(1, "calibrate: give far or f1, not both")
        q = self._queries(emb)
        if isinstance(classes, (str, bytes, int, np.integer)):
            classes = [classes] * q.shape[0]
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in classes]
        if len(classes) != q.shape[0]:
            raise _lib.error(8, f"classes: {len(classes)} names for {q.shape[0]} probes")
        dist, slots = self.class_distances(q, rule)
        own = np.array([lib.sm_gallery_find_class(self._h, c.encode()) for c in classes])
        keep = np.isfinite(dist)
        gen = (np.arange(dist.shape[1])[None, :] == own[:, None])
        pd = np.ascontiguousarray(dist[keep], np.float32)
        pg = np.ascontiguousarray(gen[keep].astype(np.int8))
        thr, tar, fa = ctypes.c_float(), ctypes.c_double(), ctypes.c_double()
        check(lib.sm_calibrate_threshold(_lib.ptr(pd, _lib.F32P), _lib.ptr(pg, _lib.I8P), pd.shape[0],
                                         1 if f1 else 0, float(np.float32(0.01 if far is None else far)),
                                         ctypes.byref(thr), ctypes.byref(tar), ctypes.byref(fa)))
        if not dry_run:
            self.set_threshold(thr.value, rule)
        return {"threshold": float(thr.value), "tar": tar.value, "far": fa.value,
                "genuine": int(pg.sum()), "impostor": int(pg.shape[0] - pg.sum())}

    def __repr__(self):
        return f"simile.Gallery(dim={self.dim}, metric={self.metric!r}, items={len(self)})"
