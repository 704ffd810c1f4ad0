"""The Open Inference Protocol path: POST /v2/models/multibox_loss/infer with binary tensors.

Builds the request body of Triton's binary tensor data extension (a JSON header whose inputs
carry parameters.binary_data_size, then every input's little-endian bytes in order, with the
header's length in Inference-Header-Content-Length) and parses the answer, binary or JSON,
into a LossResult, scattering sparse gradients back into dense arrays. Pure functions: the
Client does the I/O.
"""

import json

import numpy as np

from ._inputs import plain, scatter_rows
from ._tensors import decode_oip, float_payload, upload_datatype_name
from .result import LossResult

PATH = "/v2/models/multibox_loss/infer"

_SCALARS = ("loss", "conf_loss", "loc_loss", "normalizer", "num_positives", "num_negatives",
            "per_image_loss")
_GRAD_DTYPES = {"FP32": "FP32", "FP16": "FP16", "BF16": "BF16"}


def parameters_from_config(config):
    """Request parameters from Client.loss keyword config (variances split into scalars).

    Raises ValueError for variances that are not 2 or 4 numbers.
    """
    params = {}
    for key, value in config.items():
        value = plain(value)
        if key == "variances":
            v = list(value) if isinstance(value, (list, tuple)) else [value]
            if len(v) == 2:
                params["variance_center"], params["variance_size"] = v
            elif len(v) == 4:
                (params["variance_cx"], params["variance_cy"],
                 params["variance_w"], params["variance_h"]) = v
            else:
                raise ValueError("variances must hold 2 or 4 numbers, got %r" % (value,))
        else:
            params[key] = value
    return params


def build_request(loc, conf, anchors, targets, config, gradients="sparse", upload="auto",
                  gradient_dtype="FP32"):
    """(headers dict, list of body chunks) for an infer request.

    anchors: an _inputs.Anchors (array or preset; generator parameters are /v1 only);
    targets: list of _inputs.Target. gradients: "sparse", True (dense) or False.
    Raises ValueError for options this path cannot carry.
    """
    params = parameters_from_config(config)
    gdt = upload_datatype_name(gradient_dtype) if gradient_dtype else "FP32"
    if gdt not in _GRAD_DTYPES:
        raise ValueError("gradient_dtype must be 'fp32', 'fp16' or 'bf16'")
    if gdt != "FP32":
        params["gradient_datatype"] = gdt
    params["binary_data_output"] = True

    # Order matters for speed only.  The server starts on an image as soon as its slices of
    # loc and conf are in, once every other input is: so anchors and targets go first, then
    # loc, then conf.  It uses FP32 tensors in place when every binary tensor before them is a
    # multiple of 4 bytes: so one-byte difficult flags go before loc only when they are (else
    # last, and the server reads the whole body before it starts).
    tensors = []  # (name, datatype, numpy array holding the wire bytes)
    if anchors.preset is not None:
        params["anchor_preset"] = anchors.preset
    elif anchors.array is not None:
        tensors.append(("anchors", "FP32", np.ascontiguousarray(anchors.array, dtype="<f4")))
    else:
        raise ValueError("prior_box anchors are only understood by the /v1 path "
                         "(Client(..., protocol='v1')); pass the generated anchors or a preset")

    boxes = np.concatenate([t.boxes for t in targets], axis=0) if targets else np.zeros((0, 4), np.float32)
    labels = np.concatenate([t.labels for t in targets]) if targets else np.zeros(0, np.int64)
    counts = np.array([t.boxes.shape[0] for t in targets], dtype="<i4")
    tensors.append(("gt_boxes", "FP32", np.ascontiguousarray(boxes, dtype="<f4").reshape(-1, 4)))
    if labels.size == 0 or (labels.min() >= -2**31 and labels.max() < 2**31):
        tensors.append(("gt_labels", "INT32", labels.astype("<i4")))
    else:
        tensors.append(("gt_labels", "INT64", labels.astype("<i8")))
    tensors.append(("gt_counts", "INT32", counts))
    difficult = None
    if any(t.difficult is not None for t in targets):
        diff = np.concatenate([t.difficult if t.difficult is not None else np.zeros(t.boxes.shape[0], bool)
                               for t in targets]).astype("u1")
        difficult = ("gt_difficult", "BOOL", diff)
        if diff.size % 4 == 0:
            tensors.append(difficult)
            difficult = None
    loc_dt, loc_arr = float_payload(loc, upload)
    conf_dt, conf_arr = float_payload(conf, upload)
    tensors.append(("loc", loc_dt, loc_arr))
    tensors.append(("conf", conf_dt, conf_arr))
    if difficult is not None:
        tensors.append(difficult)

    outputs = list(_SCALARS)
    if gradients == "sparse":
        outputs += ["grad_loc_rows", "grad_loc_values", "grad_conf_rows", "grad_conf_values"]
    elif gradients:
        outputs += ["grad_loc", "grad_conf"]

    header = {
        "parameters": params,
        "inputs": [{"name": n, "datatype": dt, "shape": list(a.shape),
                    "parameters": {"binary_data_size": int(a.nbytes)}} for n, dt, a in tensors],
        "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs],
    }
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    chunks = [head] + [memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8)) for _, _, a in tensors]
    headers = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(len(head))}
    return headers, chunks


def parse_outputs(headers, body):
    """{name: numpy array} of an infer answer, binary or plain JSON.

    Raises ValueError when the framing is inconsistent (header length beyond the body, sizes
    that disagree with shapes, bytes left over).
    """
    hlen = headers.get("inference-header-content-length")
    if hlen is not None:
        hlen = int(hlen)
        if hlen < 0 or hlen > len(body):
            raise ValueError("Inference-Header-Content-Length %d beyond a body of %d bytes" % (hlen, len(body)))
        doc = json.loads(bytes(body[:hlen]).decode("utf-8"))
        offset = hlen
    else:
        doc = json.loads(bytes(body).decode("utf-8"))
        offset = len(body)
    view = memoryview(body)
    out = {}
    for o in doc.get("outputs", []):
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            size = int(size)
            if offset + size > len(body):
                raise ValueError("output %r runs past the end of the body" % o.get("name"))
            raw = view[offset:offset + size]
            offset += size
            out[o["name"]] = decode_oip(o["datatype"], o["shape"], raw=bytes(raw))
        else:
            out[o["name"]] = decode_oip(o["datatype"], o["shape"], data=o.get("data"))
    if offset != len(body):
        raise ValueError("%d bytes after the last binary output" % (len(body) - offset))
    return out


def to_result(outputs, batch, anchors, classes):
    """LossResult from parsed outputs; sparse gradients scattered into dense [B,A,*] arrays."""
    def scalar(name, kind):
        return kind(np.asarray(outputs[name]).reshape(-1)[0])

    res = LossResult()
    for name in ("loss", "conf_loss", "loc_loss", "normalizer"):
        res[name] = scalar(name, float)
    for name in ("num_positives", "num_negatives"):
        res[name] = scalar(name, int)
    per = np.asarray(outputs.get("per_image_loss", np.zeros(0)), dtype=np.float64).reshape(-1)
    res["per_image"] = [{"loss": float(v)} for v in per]
    if "grad_loc_rows" in outputs:
        res["grad_loc"] = scatter_rows(outputs["grad_loc_rows"], outputs["grad_loc_values"], batch, anchors, 4)
        res["grad_conf"] = scatter_rows(outputs["grad_conf_rows"], outputs["grad_conf_values"], batch,
                                        anchors, classes)
    elif "grad_loc" in outputs:
        # copies: the parsed arrays are read-only views of the answer's bytes
        res["grad_loc"] = np.array(outputs["grad_loc"], dtype=np.float32).reshape(batch, anchors, 4)
        res["grad_conf"] = np.array(outputs["grad_conf"], dtype=np.float32).reshape(batch, anchors, classes)
    else:
        res["grad_loc"] = None
        res["grad_conf"] = None
    return res
