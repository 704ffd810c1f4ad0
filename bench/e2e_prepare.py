#!/usr/bin/python3
"""Turns a multibox-bench dump (a /v1/loss body with b64 float32 tensors) into
the request bodies bench/run-e2e.sh times, all holding the same inputs:

  v1     POST /v1/loss, base64 tensors in and out (dense gradients, per-image
         losses, no matches): the dump with its "outputs" set so.
  bin    POST /v2/models/multibox_loss/infer, every input a binary tensor
         (loc, conf, anchors, gt_boxes FP32; gt_labels, gt_counts INT32), the
         config as parameters, the default outputs (dense FP32 gradients)
         all binary.
  binusual  the bin request with its inputs in the order loc, conf, anchors,
         gt_* (the server then reads the whole body before the loss starts;
         bin's order lets it start on each image as its bytes arrive).
  fp16   the same with loc and conf as FP16 (numpy's round to nearest even)
         and only the scalar outputs, per-image losses and the sparse
         gradients (grad_*_rows INT32, grad_*_values FP32), binary.

For each form it writes OUTDIR/PREFIX_FORM.body and prints one case spec for
bench/e2e_bench: NAME=PATH,CONTENT_TYPE,HEADER_LEN,FILE.

usage: e2e_prepare.py DUMP OUTDIR PREFIX [FORM...]   (default forms: v1 bin fp16)
Run with Debian's /usr/bin/python3 (numpy).
"""
import base64
import json
import os
import sys

import numpy as np

INFER = "/v2/models/multibox_loss/infer"
SPARSE_OUTPUTS = ["loss", "conf_loss", "loc_loss", "normalizer", "num_positives",
                  "num_negatives", "per_image_loss", "grad_loc_rows", "grad_loc_values",
                  "grad_conf_rows", "grad_conf_values"]


def tensor(t):
    """A /v1 TENSOR (b64 or flat) as a float32 numpy array."""
    if "b64" in t:
        dt = {"float32": "<f4", "float64": "<f8"}[t.get("dtype", "float32")]
        return np.frombuffer(base64.b64decode(t["b64"]), dtype=dt).astype(np.float32).reshape(t["shape"])
    return np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])


def parameters(config):
    """The /v1 config as OIP request parameters (variances split into scalars)."""
    params = {}
    for key, value in config.items():
        if key == "variances":
            names = (["variance_center", "variance_size"] if len(value) == 2 else
                     ["variance_cx", "variance_cy", "variance_w", "variance_h"])
            params.update(zip(names, value))
        else:
            params[key] = value
    return params


def oip_body(req, half, outputs, targets_first=True):
    """(body bytes, header length) of the binary OIP request."""
    loc, conf, anchors = tensor(req["loc"]), tensor(req["conf"]), tensor(req["anchors"])
    if half:
        loc, conf = loc.astype("<f2"), conf.astype("<f2")
    boxes = np.asarray([b for t in req["targets"] for b in t["boxes"]], dtype="<f4").reshape(-1, 4)
    labels = np.asarray([l for t in req["targets"] for l in t["labels"]], dtype="<i4")
    counts = np.asarray([len(t["labels"]) for t in req["targets"]], dtype="<i4")
    # Anchors and targets first, then loc, then conf: multiboxd starts on an
    # image as soon as its slices of loc and conf are in (mbx_oip_request_layout).
    targets = [("anchors", "FP32", anchors.astype("<f4")),
               ("gt_boxes", "FP32", boxes), ("gt_labels", "INT32", labels),
               ("gt_counts", "INT32", counts)]
    images = [("loc", "FP16" if half else "FP32", loc.astype("<f2" if half else "<f4")),
              ("conf", "FP16" if half else "FP32", conf.astype("<f2" if half else "<f4"))]
    tensors = targets + images if targets_first else images + targets
    params = parameters(req.get("config", {}))
    params["binary_data_output"] = True
    header = {"id": "e2e", "parameters": params,
              "inputs": [{"name": n, "datatype": d, "shape": list(a.shape),
                          "parameters": {"binary_data_size": a.nbytes}} for n, d, a in tensors]}
    if outputs:
        header["outputs"] = [{"name": o} for o in outputs]
    text = json.dumps(header, separators=(",", ":")).encode()
    return text + b"".join(np.ascontiguousarray(a).tobytes() for _, _, a in tensors), len(text)


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    dump, outdir, prefix = sys.argv[1:4]
    forms = sys.argv[4:] or ["v1", "bin", "fp16"]
    with open(dump, "rb") as f:
        req = json.load(f)
    os.makedirs(outdir, exist_ok=True)
    for form in forms:
        path = os.path.join(outdir, f"{prefix}_{form}.body")
        if form == "v1":
            v1 = dict(req)
            v1["outputs"] = {"gradients": True, "per_image": True, "matches": False,
                             "tensor_format": "b64"}
            body, spec = json.dumps(v1, separators=(",", ":")).encode(), ("/v1/loss", "application/json", "-")
        elif form == "bin":
            body, hl = oip_body(req, False, None)
            spec = (INFER, "application/octet-stream", str(hl))
        elif form == "binusual":
            body, hl = oip_body(req, False, None, targets_first=False)
            spec = (INFER, "application/octet-stream", str(hl))
        elif form == "fp16":
            body, hl = oip_body(req, True, SPARSE_OUTPUTS)
            spec = (INFER, "application/octet-stream", str(hl))
        else:
            sys.exit(f"unknown form {form}")
        with open(path, "wb") as f:
            f.write(body)
        print(f"{prefix}_{form}={spec[0]},{spec[1]},{spec[2]},{path}")


if __name__ == "__main__":
    main()
