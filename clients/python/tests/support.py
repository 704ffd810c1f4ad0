"""Shared helpers of the client tests: environment, golden cases, tolerance checks.

MBX_URL names a running multiboxd (tests/python/run.sh starts one); MBX_GOLDEN_DIR the
golden folder (its cases/ and priors/). Tests that need either skip without it when run by
hand; run.sh always sets both. The tolerances are the golden README's: losses within a
relative 1e-5, counts exact, every gradient element within 1e-6 + 1e-4 * max|grad|.
"""

import functools
import glob
import json
import os
import sys
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # clients/python, so the source tree is importable

URL = os.environ.get("MBX_URL")
GOLDEN = os.environ.get("MBX_GOLDEN_DIR")

needs_server = unittest.skipUnless(URL, "MBX_URL not set (tests/python/run.sh starts a multiboxd)")
needs_golden = unittest.skipUnless(GOLDEN and os.path.isdir(os.path.join(GOLDEN or "", "cases")),
                                   "MBX_GOLDEN_DIR not set or has no cases/")


def oip_probe():
    """(available, reason): whether the server at URL has the Open Inference Protocol endpoint.

    Only a 404 for GET /v2 counts as "not built yet"; any other failure propagates.
    """
    if not URL:
        return False, "MBX_URL not set"
    from multibox_client import Client, MultiboxError

    with Client(URL, max_retries=2) as c:
        try:
            meta = c.server_metadata()
        except MultiboxError as e:
            if e.status == 404:
                return False, "server answers 404 for GET /v2: Open Inference Protocol endpoint not built yet"
            raise
    if "binary_tensor_data" not in meta.get("extensions", []):
        raise AssertionError("GET /v2 lists no binary_tensor_data extension: %r" % (meta,))
    return True, ""


OIP, OIP_NOTE = oip_probe()
needs_oip = unittest.skipUnless(OIP, OIP_NOTE)


def case_names():
    return sorted(os.path.splitext(os.path.basename(p))[0]
                  for p in glob.glob(os.path.join(GOLDEN, "cases", "*.json")))


@functools.lru_cache(maxsize=None)
def load_case(name):
    with open(os.path.join(GOLDEN, "cases", name + ".json")) as f:
        return json.load(f)


def tensor(obj, dtype=np.float32):
    return np.asarray(obj["data"], dtype=dtype).reshape(obj["shape"])


def case_arguments(case):
    """(loc, conf, anchors, targets, config) of a golden case's request, as numpy."""
    req = case["request"]
    anchors = req["anchors"]
    if isinstance(anchors, dict) and "data" in anchors:
        anchors = tensor(anchors)
    targets = []
    for t in req["targets"]:
        item = {"boxes": np.asarray(t["boxes"], np.float32).reshape(-1, 4),
                "labels": np.asarray(t["labels"], np.int64)}
        if "difficult" in t:
            item["difficult"] = np.asarray(t["difficult"], bool)
        targets.append(item)
    return tensor(req["loc"]), tensor(req["conf"]), anchors, targets, dict(req.get("config", {}))


def assert_rel(tc, got, want, rel, what):
    tc.assertLessEqual(abs(got - want), rel * max(abs(want), 1e-30) + 1e-12,
                       "%s: got %.9g, want %.9g" % (what, got, want))


def assert_grad(tc, got, want, what):
    """Every element within 1e-6 + 1e-4 * max|want| (the golden README's tolerance)."""
    tc.assertEqual(tuple(got.shape), tuple(want.shape), what + " shape")
    tol = 1e-6 + 1e-4 * float(np.max(np.abs(want))) if want.size else 0.0
    err = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    tc.assertLessEqual(err, tol, "%s: max |diff| %.3g > tolerance %.3g" % (what, err, tol))


def assert_matches_expected(tc, res, expected, full_per_image=True):
    """A LossResult against a golden "expected" block."""
    for key in ("loss", "conf_loss", "loc_loss", "normalizer"):
        assert_rel(tc, res[key], expected[key], 1e-5, key)
    tc.assertEqual(res.num_positives, expected["num_positives"], "num_positives")
    tc.assertEqual(res.num_negatives, expected["num_negatives"], "num_negatives")
    tc.assertEqual(len(res.per_image), len(expected["per_image"]), "per_image length")
    for i, (got, want) in enumerate(zip(res.per_image, expected["per_image"])):
        assert_rel(tc, got["loss"], want["loss"], 1e-5, "per_image[%d].loss" % i)
        if full_per_image:
            for key in ("conf_loss", "loc_loss"):
                assert_rel(tc, got[key], want[key], 1e-5, "per_image[%d].%s" % (i, key))
            for key in ("num_positives", "num_negatives"):
                tc.assertEqual(got[key], want[key], "per_image[%d].%s" % (i, key))
    tc.assertTrue(res.grad_loc.flags.writeable and res.grad_conf.flags.writeable, "gradients are writable")
    tc.assertEqual((res.grad_loc.dtype, res.grad_conf.dtype), (np.float32, np.float32))
    assert_grad(tc, res.grad_loc, tensor(expected["grad_loc"], np.float64), "grad_loc")
    assert_grad(tc, res.grad_conf, tensor(expected["grad_conf"], np.float64), "grad_conf")
