"""Normalization of Client.loss arguments into one protocol-neutral form.

Checks the shapes the client itself depends on (loc [B,A,4], conf [B,A,C], per-image boxes
[G,4] with as many labels), turns targets given as torchvision-style dicts of numpy arrays,
torch tensors or lists into numpy arrays, and classifies the anchors argument (a tensor, a
preset name, {"preset": name} or {"prior_box": {...}}). Value checks (label ranges, degenerate
boxes, NaN, config ranges) are left to the server, whose error names the offending element.
Pure functions: inputs are never modified.
"""

import numpy as np

from ._tensors import as_array, float32_values, is_torch_tensor


class Target:
    """One image's ground truth: boxes float32 [G,4], labels int64 [G], difficult bool [G] or None."""

    __slots__ = ("boxes", "labels", "difficult")

    def __init__(self, boxes, labels, difficult):
        self.boxes = boxes
        self.labels = labels
        self.difficult = difficult


class Anchors:
    """The anchors argument: exactly one of array (float32 [A,4]), preset (str), prior_box (dict)."""

    __slots__ = ("array", "preset", "prior_box")

    def __init__(self, array=None, preset=None, prior_box=None):
        self.array = array
        self.preset = preset
        self.prior_box = prior_box


def plain(value):
    """A config value as plain JSON-able Python (numpy/torch scalars and arrays unwrapped)."""
    if is_torch_tensor(value):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def shape3(name, x):
    """(B, A, K) of a loc or conf argument; ValueError unless it has three dimensions."""
    shape = tuple(getattr(x, "shape", None) or np.shape(x))
    if len(shape) != 3:
        raise ValueError("%s must have shape [B, A, %s], got %s" % (name, "4" if name == "loc" else "C",
                                                                   list(shape)))
    return tuple(int(s) for s in shape)


def normalize_anchors(anchors):
    """Classifies the anchors argument; ValueError for anything unusable."""
    if isinstance(anchors, str):
        return Anchors(preset=anchors)
    if isinstance(anchors, dict):
        if "preset" in anchors and len(anchors) == 1:
            return Anchors(preset=str(anchors["preset"]))
        if "prior_box" in anchors and len(anchors) == 1:
            return Anchors(prior_box=plain(anchors["prior_box"]))
        raise ValueError("anchors dict must be {'preset': name} or {'prior_box': {...}}")
    arr = float32_values(anchors)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError("anchors must have shape [A, 4], got %s" % (list(arr.shape),))
    return Anchors(array=arr)


def _get(target, key, index):
    if isinstance(target, dict):
        return target.get(key)
    try:
        return getattr(target, key)
    except AttributeError:
        raise ValueError("targets[%d] must be a dict with 'boxes' and 'labels'" % index) from None


def normalize_targets(targets):
    """List of Target from a sequence of {"boxes", "labels"(, "difficult")} per image."""
    if isinstance(targets, dict) or not hasattr(targets, "__len__"):
        raise ValueError("targets must be a list with one {'boxes', 'labels'} dict per image")
    out = []
    for i, t in enumerate(targets):
        boxes = _get(t, "boxes", i)
        labels = _get(t, "labels", i)
        if boxes is None or labels is None:
            raise ValueError("targets[%d] needs 'boxes' and 'labels'" % i)
        b = float32_values(boxes)
        if b.size == 0:
            b = b.reshape(0, 4)
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError("targets[%d].boxes must have shape [G, 4], got %s" % (i, list(b.shape)))
        lab, _ = as_array(labels)
        lab = np.asarray(lab).reshape(-1)
        if lab.size and not np.all(np.equal(np.mod(lab, 1), 0)):
            raise ValueError("targets[%d].labels must be integers" % i)
        lab = lab.astype(np.int64)
        if lab.shape[0] != b.shape[0]:
            raise ValueError("targets[%d]: %d boxes but %d labels" % (i, b.shape[0], lab.shape[0]))
        diff = _get(t, "difficult", i) if isinstance(t, dict) and "difficult" in t else None
        if diff is not None:
            d, _ = as_array(diff)
            d = np.asarray(d).reshape(-1).astype(bool)
            if d.shape[0] != b.shape[0]:
                raise ValueError("targets[%d]: %d boxes but %d difficult flags" % (i, b.shape[0], d.shape[0]))
            diff = d
        out.append(Target(b, lab, diff))
    return out


def scatter_rows(rows, values, batch, anchors, width):
    """Dense float32 [B, A, width] with values[k] at flat row rows[k] (= b*A + a), zeros elsewhere.

    Raises ValueError when a row index is out of range or counts disagree.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    values = np.asarray(values, dtype=np.float32).reshape(-1, width) if rows.size else \
        np.zeros((0, width), np.float32)
    if values.shape[0] != rows.shape[0]:
        raise ValueError("sparse gradient: %d rows but %d value rows" % (rows.shape[0], values.shape[0]))
    dense = np.zeros((batch * anchors, width), dtype=np.float32)
    if rows.size:
        if rows.min() < 0 or rows.max() >= batch * anchors:
            raise ValueError("sparse gradient row index out of range")
        dense[rows] = values
    return dense.reshape(batch, anchors, width)
