"""The native JSON path: POST /v1/loss with base64 tensors.

Builds the /v1/loss body (loc, conf and array anchors as {"shape","dtype":"float32","b64"},
targets as JSON lists, config as given, outputs with tensor_format b64) and turns the answer
into a LossResult, decoding any TENSOR form and scattering sparse gradients into dense
arrays. Pure functions: the Client does the I/O.
"""

import json

import numpy as np

from ._inputs import plain, scatter_rows
from ._tensors import decode_tensor, encode_b64, float32_values
from .result import LossResult

PATH = "/v1/loss"


def build_request(loc, conf, anchors, targets, config, gradients="sparse", matches=False):
    """(headers dict, body bytes) of a /v1/loss request.

    loc, conf: array-likes (any float dtype; sent as float32 values, half inputs widened
    exactly); anchors: an _inputs.Anchors; targets: list of _inputs.Target.
    """
    if anchors.preset is not None:
        anc = {"preset": anchors.preset}
    elif anchors.prior_box is not None:
        anc = {"prior_box": anchors.prior_box}
    else:
        anc = encode_b64(anchors.array)
    tgts = []
    for t in targets:
        item = {"boxes": t.boxes.astype(np.float64).tolist(), "labels": t.labels.tolist()}
        if t.difficult is not None:
            item["difficult"] = [bool(d) for d in t.difficult]
        tgts.append(item)
    body = {
        "anchors": anc,
        "loc": encode_b64(float32_values(loc)),
        "conf": encode_b64(float32_values(conf)),
        "targets": tgts,
        "config": {k: plain(v) for k, v in config.items()},
        "outputs": {"gradients": "sparse" if gradients == "sparse" else bool(gradients),
                    "per_image": True, "matches": bool(matches), "tensor_format": "b64"},
    }
    return {"Content-Type": "application/json"}, json.dumps(body, separators=(",", ":")).encode("utf-8")


def _gradient(obj, batch, anchors, width):
    if isinstance(obj, dict) and "rows" in obj:
        rows = obj["rows"]
        rows = decode_tensor(rows, np.int64) if isinstance(rows, dict) else np.asarray(rows, np.int64)
        return scatter_rows(rows, decode_tensor(obj["values"]), batch, anchors, width)
    return decode_tensor(obj).astype(np.float32, copy=False).reshape(batch, anchors, width)


def to_result(body, batch, anchors, classes):
    """LossResult from a /v1/loss answer body (bytes)."""
    doc = json.loads(body.decode("utf-8"))
    res = LossResult()
    for name in ("loss", "conf_loss", "loc_loss", "normalizer"):
        res[name] = float(doc[name])
    for name in ("num_positives", "num_negatives"):
        res[name] = int(doc[name])
    res["per_image"] = [dict(p) for p in doc.get("per_image", [])]
    res["grad_loc"] = _gradient(doc["grad_loc"], batch, anchors, 4) if "grad_loc" in doc else None
    res["grad_conf"] = _gradient(doc["grad_conf"], batch, anchors, classes) if "grad_conf" in doc else None
    if "matches" in doc:
        res["matches"] = [np.asarray(m, dtype=np.int64) for m in doc["matches"]]
    return res
