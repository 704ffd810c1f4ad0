"""RemoteMultiBoxLoss against torchvision's SSD loss computed locally (needs torch).

The reference is torchvision 0.14's own SSD.compute_loss, called with the matching that
torchvision's SSD does (box_iou + SSDMatcher(0.5), BoxCoder weights (10, 10, 5, 5), i.e.
variances 0.1/0.2, neg_to_pos_ratio 3), which is the service's configuration with
"bipartite": "per_gt". The IoU for the matching is computed in float64, as the semantics
document and the golden cases do: in float32, near-equal IoUs of two anchors can swap order. Two identical copies of a tiny SSD-style model take five SGD steps,
one with each loss; the losses of every step and the final parameters must agree.

Tolerances: both sides compute the same float32 function; they differ only in rounding
(the service accumulates in float64, torch in float32 with another summation order), which
is ~1e-7 relative on the loss (checked at rel 1e-5, the golden README's bound) and ~1e-7
relative on each gradient element. SGD adds lr * grad to each parameter, so after five steps
the parameters may differ by about 5 * lr * 1e-7 * max|grad| plus the same relative rounding
of their own values. Measured over 30 seeds: loss differences <= 2.3e-7 relative, parameter
differences <= 9e-8, while the parameters moved by ~0.3. The bounds checked below (loss
1e-5 relative, parameters 1e-5 absolute + 1e-5 relative) leave a 100x margin, and a single
different matching or mining decision (seen with float32 IoU: loss off by 3e-3 relative,
parameters by 2e-2) fails them.
"""

import copy
import unittest

import numpy as np

import support
from multibox_client import Client

try:
    import torch
    import torchvision  # noqa: F401
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.ssd import SSD
    from torchvision.ops import boxes as box_ops
    HAVE_TORCH = True
except ImportError:  # pragma: no cover - depends on the machine
    HAVE_TORCH = False

needs_torch = unittest.skipUnless(HAVE_TORCH, "torch/torchvision not importable (Debian: python3-torch, "
                                               "python3-torchvision)")


class _TorchvisionSSD:
    """The attributes SSD.compute_loss reads from self, as torchvision's SSD sets them."""
    if HAVE_TORCH:
        box_coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    neg_to_pos_ratio = 3


def torchvision_loss(loc, conf, anchors, targets):
    """torchvision's SSD loss (bbox_regression + classification) for [B,A,4] / [B,A,C] outputs.

    Matching by torchvision's SSDMatcher on IoU computed in float64; the loss itself by
    SSD.compute_loss in the outputs' dtype.
    """
    matcher = det_utils.SSDMatcher(0.5)
    matched = []
    for t in targets:
        if t["boxes"].numel() == 0:
            matched.append(torch.full((anchors.size(0),), -1, dtype=torch.int64))
        else:
            # IoU in float64, as the semantics (and the golden cases) say: in float32 two
            # anchors' IoUs with a box can round to a different order (seen: 0.33984214 vs
            # 0.33984217), which flips a forced match
            matched.append(matcher(box_ops.box_iou(t["boxes"].double(), anchors.double())))
    parts = SSD.compute_loss(_TorchvisionSSD, targets, {"bbox_regression": loc, "cls_logits": conf},
                             [anchors] * loc.size(0), matched)
    return parts["bbox_regression"] + parts["classification"]


def grid_anchors(cells=8):
    """Three anchors per cell of a cells x cells grid (xyxy in [0, 1], clipped)."""
    out = []
    for i in range(cells):
        for j in range(cells):
            cx, cy = (j + 0.5) / cells, (i + 0.5) / cells
            for w, h in ((0.2, 0.2), (0.3, 0.15), (0.15, 0.3)):
                out.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return torch.tensor(np.clip(np.array(out), 0.0, 1.0), dtype=torch.float32)


class TinySSD(torch.nn.Module if HAVE_TORCH else object):
    """16x16 RGB -> 8x8 feature map -> 3 anchors per cell: loc [B,192,4], conf [B,192,C]."""

    def __init__(self, classes=3, per_cell=3):
        super().__init__()
        self.classes = classes
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU())
        self.loc = torch.nn.Conv2d(8, per_cell * 4, 3, padding=1)
        self.conf = torch.nn.Conv2d(8, per_cell * classes, 3, padding=1)

    def forward(self, x):
        f = self.body(x)
        b = x.size(0)
        loc = self.loc(f).permute(0, 2, 3, 1).reshape(b, -1, 4)
        conf = self.conf(f).permute(0, 2, 3, 1).reshape(b, -1, self.classes)
        return loc, conf


def batch(rng, size=4):
    """Random images and 0-3 random boxes per image (labels 1..2); image 1 has none."""
    images = torch.tensor(rng.standard_normal((size, 3, 16, 16)), dtype=torch.float32)
    targets = []
    for i in range(size):
        n = 0 if i == 1 else int(rng.integers(1, 4))
        xy = rng.uniform(0.0, 0.6, (n, 2))
        wh = rng.uniform(0.15, 0.4, (n, 2))
        boxes = torch.tensor(np.concatenate([xy, np.minimum(xy + wh, 1.0)], 1).reshape(n, 4), dtype=torch.float32)
        targets.append({"boxes": boxes, "labels": torch.tensor(rng.integers(1, 3, n), dtype=torch.int64)})
    return images, targets


@needs_torch
@support.needs_golden
class TestReference(unittest.TestCase):
    def test_reference_reproduces_golden(self):
        """The local reference itself equals the golden values (so it can judge the service)."""
        for name in ("tiny", "batch_with_empty_image"):
            case = support.load_case(name)
            loc, conf, anchors, targets, config = support.case_arguments(case)
            self.assertEqual(config["bipartite"], "per_gt")
            loc_t = torch.tensor(loc, requires_grad=True)
            conf_t = torch.tensor(conf, requires_grad=True)
            tt = [{"boxes": torch.tensor(t["boxes"]), "labels": torch.tensor(t["labels"])} for t in targets]
            loss = torchvision_loss(loc_t, conf_t, torch.tensor(anchors), tt)
            loss.backward()
            support.assert_rel(self, float(loss), case["expected"]["loss"], 1e-5, name + " loss")
            support.assert_grad(self, loc_t.grad.numpy(), support.tensor(case["expected"]["grad_loc"]), "grad_loc")
            support.assert_grad(self, conf_t.grad.numpy(), support.tensor(case["expected"]["grad_conf"]), "grad_conf")


class RemoteLossCases:
    """The RemoteMultiBoxLoss tests, run once per protocol by the subclasses below."""

    protocol = None

    @classmethod
    def setUpClass(cls):
        from multibox_client.torch import RemoteMultiBoxLoss
        cls.remote = RemoteMultiBoxLoss(support.URL, protocol=cls.protocol, bipartite="per_gt")
        cls.anchors = grid_anchors()

    @classmethod
    def tearDownClass(cls):
        cls.remote.client.close()

    def test_five_sgd_steps_match_torchvision(self):
        torch.manual_seed(0)
        rng = np.random.default_rng(7)
        model_remote = TinySSD()
        model_local = copy.deepcopy(model_remote)
        opt_r = torch.optim.SGD(model_remote.parameters(), lr=0.1)
        opt_l = torch.optim.SGD(model_local.parameters(), lr=0.1)
        initial = [p.detach().clone() for p in model_local.parameters()]
        for step in range(5):
            images, targets = batch(rng)
            opt_r.zero_grad()
            opt_l.zero_grad()
            loss_r = self.remote(*model_remote(images), self.anchors, targets)
            loss_l = torchvision_loss(*model_local(images), self.anchors, targets)
            loss_r.backward()
            loss_l.backward()
            self.assertEqual(loss_r.dtype, torch.float32)
            support.assert_rel(self, float(loss_r), float(loss_l), 1e-5, "step %d loss" % step)
            self.assertGreater(self.remote.last_result.num_positives, 0)
            opt_r.step()
            opt_l.step()
        moved = 0.0
        for (name, p_r), p_l, p0 in zip(model_remote.named_parameters(), model_local.parameters(), initial):
            diff = float((p_r - p_l).abs().max())
            tol = 1e-5 + 1e-5 * float(p_l.abs().max())
            self.assertLessEqual(diff, tol, "%s differs by %.3g" % (name, diff))
            moved = max(moved, float((p_l - p0).abs().max()))
        # the steps really trained: the parameters moved far more than the tolerance
        self.assertGreater(moved, 1e-2)

    def _inputs(self, dtype=torch.float32, seed=3):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        images, targets = batch(rng)
        with torch.no_grad():
            loc, conf = TinySSD()(images)
        return loc.to(dtype).requires_grad_(), conf.to(dtype).requires_grad_(), targets

    def test_backward_scales_by_incoming_gradient(self):
        loc, conf, targets = self._inputs()
        (2.5 * self.remote(loc, conf, self.anchors, targets)).backward()
        res = self.remote.last_result
        np.testing.assert_allclose(loc.grad.numpy(), 2.5 * res.grad_loc, rtol=1e-6, atol=0)
        np.testing.assert_allclose(conf.grad.numpy(), 2.5 * res.grad_conf, rtol=1e-6, atol=0)
        self.assertGreater(float(conf.grad.abs().max()), 0.0)

    def test_gradients_equal_torchvision(self):
        loc, conf, targets = self._inputs()
        self.remote(loc, conf, self.anchors, targets).backward()
        loc2 = loc.detach().clone().requires_grad_()
        conf2 = conf.detach().clone().requires_grad_()
        torchvision_loss(loc2, conf2, self.anchors, targets).backward()
        support.assert_grad(self, loc.grad.numpy(), loc2.grad.numpy().astype(np.float64), "grad_loc")
        support.assert_grad(self, conf.grad.numpy(), conf2.grad.numpy().astype(np.float64), "grad_conf")

    def test_float64_inputs(self):
        loc32, conf32, targets = self._inputs()
        loc64, conf64, _ = self._inputs(torch.float64)
        l32 = self.remote(loc32, conf32, self.anchors, targets)
        l64 = self.remote(loc64, conf64, self.anchors, targets)
        (l32 + l64).backward()
        self.assertEqual((l64.dtype, loc64.grad.dtype, conf64.grad.dtype), (torch.float64,) * 3)
        # float64 values of float32 numbers make the same request; the /v1 path reports the
        # loss as a JSON double, OIP as FP32, so compare at float32
        self.assertEqual(float(l64.float()), float(l32))
        np.testing.assert_array_equal(conf64.grad.numpy(), conf32.grad.numpy().astype(np.float64))

    def _half(self, dtype):
        loc, conf, targets = self._inputs(dtype)
        loss = self.remote(loc, conf, self.anchors, targets)
        loss.backward()
        self.assertEqual((loss.dtype, loc.grad.dtype, conf.grad.dtype), (dtype,) * 3)
        # The same values widened to float32 on the client give the same answer: the half
        # upload is exact (no second rounding of the inputs on the server).
        with Client(support.URL, protocol=self.protocol) as c:
            ref = c.loss(loc.detach().float(), conf.detach().float(), self.anchors, targets, bipartite="per_gt")
        self.assertEqual(float(loss), float(torch.tensor(ref.loss).to(dtype)))
        np.testing.assert_array_equal(conf.grad.float().numpy(),
                                      torch.from_numpy(ref.grad_conf).to(dtype).float().numpy())

    def test_float16_inputs(self):
        self._half(torch.float16)

    def test_bfloat16_inputs(self):
        self._half(torch.bfloat16)

    def test_no_grad_asks_no_gradients(self):
        loc, conf, targets = self._inputs()
        with torch.no_grad():
            loss = self.remote(loc, conf, self.anchors, targets)
        self.assertFalse(loss.requires_grad)
        self.assertIsNone(self.remote.last_result.grad_loc)
        self.assertGreater(float(loss), 0.0)

    def test_only_conf_requires_grad(self):
        loc, conf, targets = self._inputs()
        self.remote(loc.detach(), conf, self.anchors, targets).backward()
        self.assertIsNotNone(conf.grad)

    @unittest.skipUnless(HAVE_TORCH and torch.cuda.is_available(), "no CUDA device to test device moves")
    def test_cuda_tensors(self):  # pragma: no cover - no GPU on CI
        loc, conf, targets = self._inputs()
        loc_c, conf_c = loc.detach().cuda().requires_grad_(), conf.detach().cuda().requires_grad_()
        loss = self.remote(loc_c, conf_c, self.anchors.cuda(), targets)
        loss.backward()
        self.assertEqual(loss.device.type, "cuda")
        self.assertEqual(conf_c.grad.device.type, "cuda")


@needs_torch
@support.needs_server
class TestRemoteLossOip(RemoteLossCases, unittest.TestCase):
    """On the OIP path (binary tensors; half inputs travel as FP16/BF16)."""
    protocol = "oip"


TestRemoteLossOip = support.needs_oip(TestRemoteLossOip)


@needs_torch
@support.needs_server
class TestRemoteLossV1(RemoteLossCases, unittest.TestCase):
    """On the /v1 JSON path (half inputs widened to float32 by the client)."""
    protocol = "v1"


if __name__ == "__main__":
    unittest.main()
