#!/usr/bin/python3
"""Times torchvision 0.14's own SSD loss on CPU on a multibox-bench dump.

Reads the /v1/loss request that `multibox-bench --dump FILE` writes (b64
float32 anchors, loc and conf; nested GT boxes; the config spelled out) and
times, per run, exactly what torchvision's SSD.forward does for the loss in
training: matching (box_iou + SSDMatcher(0.5) per image), SSD.compute_loss
(called unbound on a small object carrying box_coder and neg_to_pos_ratio),
and the autograd backward of bbox_regression + classification.  Prints the
median and spread in ms and `torchvision_ms_median=<ms>`.

With --ours-loss X (the loss multibox-bench printed) and/or --ours RESPONSE
(multibox-loss's answer to the dump), when the dumped config is the one
torchvision implements (per_gt, 0.5, softmax, ...), it also reports the
relative difference of the losses, the matches that differ and the largest
gradient differences, against torchvision in float32 (the timed run) and in
float64 (how the golden cases were made: IoU near-ties between symmetric
anchors then resolve as the semantics say, in double precision).

Run with Debian's /usr/bin/python3 (python3-torch, python3-torchvision).
"""
import argparse
import base64
import json
import statistics
import sys
import time
import types

import numpy as np

try:
    import torch
    import torchvision
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.ssd import SSD
    from torchvision.ops import boxes as box_ops
except ImportError as exc:  # pragma: no cover - reported to the caller
    print(f"torchvision_loss.py: torch/torchvision not importable: {exc}", file=sys.stderr)
    sys.exit(3)

# The one config torchvision's SSD.compute_loss implements, in the
# semantics' vocabulary (the golden README's "reference" path).
TORCHVISION_CONFIG = {
    "box_format": "xyxy", "bipartite": "per_gt", "overlap_threshold": 0.5, "neg_overlap": 0.5,
    "variances": [0.1, 0.2], "loc_loss": "smooth_l1", "smooth_l1_beta": 1.0, "alpha": 1.0,
    "conf_loss": "softmax", "background_label": 0, "mining": "hard_negative",
    "neg_pos_ratio": 3.0, "min_negatives": 0, "normalization": "positives",
}


def tensor_from_json(t):
    """A TENSOR of the API contract (b64, flat or nested) as a float32 numpy array."""
    if isinstance(t, dict) and "b64" in t:
        dtype = {"float32": "<f4", "float64": "<f8"}[t.get("dtype", "float32")]
        raw = np.frombuffer(base64.b64decode(t["b64"]), dtype=dtype)
        return raw.astype(np.float32).reshape(t["shape"])
    if isinstance(t, dict):
        return np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
    return np.asarray(t, dtype=np.float32)


def config_differences(cfg):
    """Keys where the dumped config departs from what torchvision computes."""
    diffs = []
    for key, want in TORCHVISION_CONFIG.items():
        have = cfg.get(key, want)
        if isinstance(want, list):
            if [float(v) for v in have] != want:
                diffs.append(f"{key}={have}")
        elif isinstance(want, float):
            if float(have) != want:
                diffs.append(f"{key}={have}")
        elif have != want:
            diffs.append(f"{key}={have}")
    return diffs


def load_request(path):
    with open(path, "rb") as f:
        req = json.load(f)
    anchors = torch.from_numpy(tensor_from_json(req["anchors"]).copy())
    loc = torch.from_numpy(tensor_from_json(req["loc"]).copy())
    conf = torch.from_numpy(tensor_from_json(req["conf"]).copy())
    targets = []
    for t in req["targets"]:
        boxes = torch.tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor(t["labels"], dtype=torch.int64).reshape(-1)
        targets.append({"boxes": boxes, "labels": labels})
    return req, anchors, loc, conf, targets


class LossOnly:
    """The attributes SSD.compute_loss reads from self (torchvision 0.14 ssd.py)."""

    def __init__(self):
        self.box_coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.proposal_matcher = det_utils.SSDMatcher(0.5)
        self.neg_to_pos_ratio = 3


def match(model, anchors_list, targets):
    """SSD.forward's matching step, verbatim in behaviour."""
    matched_idxs = []
    for anchors_per_image, targets_per_image in zip(anchors_list, targets):
        if targets_per_image["boxes"].numel() == 0:
            matched_idxs.append(torch.full((anchors_per_image.size(0),), -1, dtype=torch.int64))
            continue
        quality = box_ops.box_iou(targets_per_image["boxes"], anchors_per_image)
        matched_idxs.append(model.proposal_matcher(quality))
    return matched_idxs


def forward_backward(model, anchors_list, loc0, conf0, targets):
    """One training-step loss: matching, compute_loss, backward.  Returns
    (match seconds, loss+backward seconds, (loss value, matched_idxs, loc
    leaf, conf leaf))."""
    loc = loc0.detach().requires_grad_(True)
    conf = conf0.detach().requires_grad_(True)
    t0 = time.perf_counter()
    matched_idxs = match(model, anchors_list, targets)
    t1 = time.perf_counter()
    losses = SSD.compute_loss(model, targets, {"bbox_regression": loc, "cls_logits": conf},
                              anchors_list, matched_idxs)
    total = losses["bbox_regression"] + losses["classification"]
    total.backward()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, (total.item(), matched_idxs, loc, conf)


def spread(name, ms):
    v = sorted(ms)
    q = statistics.quantiles(v, n=10, method="inclusive") if len(v) > 1 else [v[0]] * 9
    print(f"{name:<28} median {statistics.median(v):8.3f}  min {v[0]:8.3f}  "
          f"p10 {q[0]:8.3f}  p90 {q[-1]:8.3f}  max {v[-1]:8.3f}")


def reference_float64(model, anchors, loc0, conf0, targets):
    """The golden cases' method: the same torchvision code on the float32
    inputs widened to float64 (IoU ties and near-ties then resolve as the
    semantics say).  Returns (loss, matched_idxs, loc leaf, conf leaf)."""
    anchors = anchors.double()
    targets = [{"boxes": t["boxes"].double(), "labels": t["labels"]} for t in targets]
    loc = loc0.double().requires_grad_(True)
    conf = conf0.double().requires_grad_(True)
    anchors_list = [anchors] * loc.shape[0]
    matched = match(model, anchors_list, targets)
    losses = SSD.compute_loss(model, targets, {"bbox_regression": loc, "cls_logits": conf},
                              anchors_list, matched)
    total = losses["bbox_regression"] + losses["classification"]
    total.backward()
    return total.item(), matched, loc, conf


def compare(args, req, model, anchors, loc0, conf0, targets, f32):
    """Reports how our loss (and, with --ours, matches and gradients) agree
    with torchvision in float32 (the timed run) and in float64 (the golden
    cases' method)."""
    diffs = config_differences(req.get("config", {}))
    if diffs:
        print("loss comparison skipped: the dumped config is not torchvision's (" +
              ", ".join(diffs) + ")")
        return
    f32_loss, f32_matched, f32_loc, f32_conf = f32
    f64_loss, f64_matched, f64_loc, f64_conf = reference_float64(model, anchors, loc0, conf0,
                                                                 targets)
    print(f"torchvision loss: float32 {f32_loss:.9g}, float64 {f64_loss:.12g}")
    ours = []
    if args.ours_loss is not None:
        ours.append(("multibox-bench", args.ours_loss))
    resp = None
    if args.ours:
        with open(args.ours, "rb") as f:
            resp = json.load(f)
        if "error" in resp:
            print(f"--ours {args.ours}: error response {resp['error']}")
            resp = None
        else:
            ours.append(("multibox-loss", resp["loss"]))
    for name, value in ours:
        print(f"{name} loss {value:.12g}: relative_difference vs float64 "
              f"{abs(value - f64_loss) / max(abs(f64_loss), 1e-30):.3g}, vs float32 "
              f"{abs(value - f32_loss) / max(abs(f32_loss), 1e-30):.3g}")
    if resp is None:
        return
    if "matches" in resp:
        ours_m = np.asarray(resp["matches"], dtype=np.int64)
        for name, matched in (("float64", f64_matched), ("float32", f32_matched)):
            tv_m = torch.stack(matched).numpy()
            print(f"matches differing from torchvision {name}: {int((tv_m != ours_m).sum())} "
                  f"of {tv_m.size}")
    for name, leaves in (("grad_loc", (f64_loc, f32_loc)), ("grad_conf", (f64_conf, f32_conf))):
        if name not in resp:
            continue
        ours_g = tensor_from_json(resp[name]).astype(np.float64).reshape(leaves[0].shape)
        for label, leaf in zip(("float64", "float32"), leaves):
            ref = leaf.grad.double().numpy()
            scale = float(np.abs(ref).max())
            err = float(np.abs(ours_g - ref).max())
            tol = 1e-6 + 1e-4 * scale
            print(f"{name} vs torchvision {label}: max|diff| {err:.3g} (max|grad| {scale:.3g}, "
                  f"golden tolerance {tol:.3g}: {'within' if err <= tol else 'OUTSIDE'})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump", help="request written by multibox-bench --dump")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ours-loss", type=float, default=None,
                    help="the loss multibox-bench printed, to compare")
    ap.add_argument("--ours", default=None, help="multibox-loss response JSON for the dump")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    req, anchors, loc0, conf0, targets = load_request(args.dump)
    model = LossOnly()
    anchors_list = [anchors] * loc0.shape[0]
    print(f"torchvision {torchvision.__version__} torch {torch.__version__} "
          f"threads={torch.get_num_threads()} batch={loc0.shape[0]} anchors={loc0.shape[1]} "
          f"classes={conf0.shape[2]} runs={args.runs} warmup={args.warmup}")

    first = None
    match_ms, loss_ms, total_ms = [], [], []
    for r in range(-args.warmup, args.runs):
        tm, tl, outcome = forward_backward(model, anchors_list, loc0, conf0, targets)
        if first is None:
            first = outcome
        if r >= 0:
            match_ms.append(tm * 1e3)
            loss_ms.append(tl * 1e3)
            total_ms.append((tm + tl) * 1e3)
    print(f"torchvision loss={first[0]:.9g}")
    spread("match_ms:", match_ms)
    spread("compute_loss+backward_ms:", loss_ms)
    spread("torchvision_ms:", total_ms)
    print(f"torchvision_compute_loss_backward_ms_median={statistics.median(loss_ms):.3f}")
    print(f"torchvision_ms_median={statistics.median(total_ms):.3f}")
    compare(args, req, model, anchors, loc0, conf0, targets, first)


if __name__ == "__main__":
    main()
