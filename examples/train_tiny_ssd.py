#!/usr/bin/python3
"""Train a tiny SSD-style detector on synthetic shapes with the remote MultiBox loss.

    /usr/bin/python3 examples/train_tiny_ssd.py http://127.0.0.1:8080
    /usr/bin/python3 examples/train_tiny_ssd.py http://127.0.0.1:8080 --check

Images are 64x64 with one to three filled shapes (class 1 rectangle, 2 ellipse, 3 triangle)
on noise; the detector has two feature maps (8x8 and 4x4) with four anchors per cell
(320 anchors). The loss and its gradients come from a multibox service through
multibox_client.torch.RemoteMultiBoxLoss, configured as torchvision's SSD ("bipartite":
"per_gt", the other options at their defaults); the script prints the loss falling.

With --check it also computes torchvision's own loss (SSD.compute_loss with SSDMatcher on
float64 IoU and BoxCoder(10, 10, 5, 5)) locally at every step on the same outputs and reports the largest
difference in the loss (relative) and in the gradients (absolute, and relative to the
largest gradient element); it exits 1 when they exceed the golden tolerances (loss 1e-5
relative, gradients 1e-6 + 1e-4 * max|grad|).

Needs Debian's python3-torch and python3-torchvision (use /usr/bin/python3), and the client:
pip-installed, or from source with PYTHONPATH=clients/python (set automatically when run
from the source tree).
"""

import argparse
import math
import os
import sys
import time

import numpy as np
import torch

try:
    from multibox_client.torch import RemoteMultiBoxLoss
except ImportError:  # running from the source tree without installing the client
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))
    from multibox_client.torch import RemoteMultiBoxLoss

IMAGE = 64
CLASSES = 4  # background + rectangle, ellipse, triangle


# ---------------------------------------------------------------------------- data
def render_batch(rng, size):
    """(images float32 [B,3,64,64], targets list of {"boxes" xyxy in [0,1], "labels"})."""
    ys, xs = np.mgrid[0:IMAGE, 0:IMAGE].astype(np.float32) + 0.5
    images = rng.normal(0.0, 0.1, (size, 3, IMAGE, IMAGE)).astype(np.float32)
    targets = []
    for b in range(size):
        boxes, labels = [], []
        for _ in range(int(rng.integers(1, 4))):
            w, h = rng.uniform(10, 36, 2)
            x1, y1 = rng.uniform(0, IMAGE - w), rng.uniform(0, IMAGE - h)
            x2, y2 = x1 + w, y1 + h
            label = int(rng.integers(1, CLASSES))
            if label == 1:
                mask = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
            elif label == 2:
                mask = ((xs - (x1 + x2) / 2) / (w / 2)) ** 2 + ((ys - (y1 + y2) / 2) / (h / 2)) ** 2 <= 1
            else:
                mask = (ys >= y1) & (ys < y2) & (np.abs(xs - (x1 + x2) / 2) <= (ys - y1) / h * w / 2)
            color = rng.uniform(0.4, 1.0, 3).astype(np.float32)
            images[b][:, mask] = color[:, None]
            boxes.append([x1 / IMAGE, y1 / IMAGE, x2 / IMAGE, y2 / IMAGE])
            labels.append(label)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                        "labels": torch.tensor(labels, dtype=torch.int64)})
    return torch.from_numpy(images), targets


# ---------------------------------------------------------------------------- model
def make_anchors():
    """SSD-style default boxes, xyxy in [0, 1]: per cell (s, s), (s', s'), and ratio 2 and 1/2."""
    out = []
    for cells, s, s_next in ((8, 0.2, 0.4), (4, 0.4, 0.7)):
        big = math.sqrt(s * s_next)
        sizes = [(s, s), (big, big), (s * math.sqrt(2), s / math.sqrt(2)), (s / math.sqrt(2), s * math.sqrt(2))]
        for i in range(cells):
            for j in range(cells):
                cx, cy = (j + 0.5) / cells, (i + 0.5) / cells
                for w, h in sizes:
                    out.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return torch.tensor(np.clip(np.array(out), 0.0, 1.0), dtype=torch.float32)


def block(cin, cout):
    return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, stride=2, padding=1),
                               torch.nn.BatchNorm2d(cout), torch.nn.ReLU())


class TinySSD(torch.nn.Module):
    """64x64 -> feature maps 8x8 and 4x4, four anchors per cell: loc [B,320,4], conf [B,320,C]."""

    def __init__(self, classes=CLASSES, per_cell=4):
        super().__init__()
        self.classes = classes
        self.stem = torch.nn.Sequential(block(3, 16), block(16, 32), block(32, 64))  # 64 -> 8
        self.down = block(64, 64)                                                     # 8 -> 4
        self.loc_heads = torch.nn.ModuleList([torch.nn.Conv2d(64, per_cell * 4, 3, padding=1) for _ in range(2)])
        self.conf_heads = torch.nn.ModuleList([torch.nn.Conv2d(64, per_cell * classes, 3, padding=1)
                                               for _ in range(2)])

    def forward(self, x):
        f8 = self.stem(x)
        maps = [f8, self.down(f8)]
        b = x.size(0)
        loc = [h(f).permute(0, 2, 3, 1).reshape(b, -1, 4) for h, f in zip(self.loc_heads, maps)]
        conf = [h(f).permute(0, 2, 3, 1).reshape(b, -1, self.classes) for h, f in zip(self.conf_heads, maps)]
        return torch.cat(loc, 1), torch.cat(conf, 1)


# ---------------------------------------------------------------------------- reference
def torchvision_loss(loc, conf, anchors, targets):
    """torchvision 0.14's SSD loss: its SSD.compute_loss with its own matching."""
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.ssd import SSD
    from torchvision.ops import boxes as box_ops

    class Attrs:  # what compute_loss reads from an SSD instance, as torchvision sets it
        box_coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        neg_to_pos_ratio = 3

    matcher = det_utils.SSDMatcher(0.5)
    # IoU in float64 as the service (and the golden cases) compute it: in float32, near-equal
    # IoUs of two anchors with one box can swap order and flip a forced match.
    matched = [matcher(box_ops.box_iou(t["boxes"].double(), anchors.double())) if t["boxes"].numel()
               else torch.full((anchors.size(0),), -1, dtype=torch.int64) for t in targets]
    parts = SSD.compute_loss(Attrs, targets, {"bbox_regression": loc, "cls_logits": conf},
                             [anchors] * loc.size(0), matched)
    return parts["bbox_regression"] + parts["classification"]


# ---------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", nargs="?", default=os.environ.get("MBX_URL", "http://127.0.0.1:8080"),
                    help="multibox service base URL (default $MBX_URL or http://127.0.0.1:8080)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--protocol", choices=["oip", "v1"], default="oip")
    ap.add_argument("--upload", choices=["auto", "fp32", "fp16", "bf16"], default="auto")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--check", action="store_true",
                    help="also compute torchvision's loss locally and report the largest differences")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    anchors = make_anchors()
    model = TinySSD()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    criterion = RemoteMultiBoxLoss(args.url, protocol=args.protocol, upload=args.upload, bipartite="per_gt")

    worst = {"loss_rel": 0.0, "grad_abs": 0.0, "grad_rel": 0.0, "step": -1}
    window, history = [], []
    t0 = time.monotonic()
    print("training TinySSD (%d anchors, %d classes) for %d steps on %s, batch %d"
          % (anchors.size(0), CLASSES, args.steps, args.url, args.batch), flush=True)
    for step in range(1, args.steps + 1):
        images, targets = render_batch(rng, args.batch)
        loc, conf = model(images)
        if args.check:
            loc.retain_grad()
            conf.retain_grad()
        loss = criterion(loc, conf, anchors, targets)
        opt.zero_grad()
        loss.backward()
        if args.check:
            loc_d = loc.detach().clone().requires_grad_()
            conf_d = conf.detach().clone().requires_grad_()
            ref = torchvision_loss(loc_d, conf_d, anchors, targets)
            g_loc, g_conf = torch.autograd.grad(ref, [loc_d, conf_d])
            loss_rel = abs(float(loss) - float(ref)) / max(abs(float(ref)), 1e-30)
            gmax = max(float(g_loc.abs().max()), float(g_conf.abs().max()))
            gdiff = max(float((loc.grad - g_loc).abs().max()), float((conf.grad - g_conf).abs().max()))
            if loss_rel > worst["loss_rel"]:
                worst["loss_rel"] = loss_rel
            if gdiff > worst["grad_abs"]:
                worst.update(grad_abs=gdiff, grad_rel=gdiff / max(gmax, 1e-30), step=step,
                             grad_tol=1e-6 + 1e-4 * gmax)
        opt.step()
        window.append(float(loss))
        history.append(float(loss))
        if step % args.log_every == 0 or step == args.steps:
            r = criterion.last_result
            line = "step %4d  loss %.4f (mean of last %d)  conf %.4f  loc %.4f  positives %d" % (
                step, sum(window) / len(window), len(window), r.conf_loss, r.loc_loss, r.num_positives)
            if args.check:
                line += "  | max diff: loss %.2e rel, grad %.2e" % (worst["loss_rel"], worst["grad_abs"])
            print(line, flush=True)
            window = []
    span = max(1, min(args.log_every, len(history) // 4))
    first, last = sum(history[:span]) / span, sum(history[-span:]) / span
    print("loss fell from %.4f (first %d steps) to %.4f (last %d steps) in %.1f s"
          % (first, span, last, span, time.monotonic() - t0))
    if args.check:
        ok = worst["loss_rel"] <= 1e-5 and (worst["step"] < 0 or worst["grad_abs"] <= worst["grad_tol"])
        print("check against torchvision: largest loss difference %.3g relative; largest gradient difference "
              "%.3g (%.3g of the largest gradient element, step %d): %s"
              % (worst["loss_rel"], worst["grad_abs"], worst["grad_rel"], worst["step"],
                 "within the golden tolerances" if ok else "EXCEEDS the golden tolerances"))
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
