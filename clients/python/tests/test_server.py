"""Client against a real multiboxd: every golden case on both paths, options, errors.

The expected numbers come only from the golden files (torchvision in float64) or from the
service itself under an exactly equivalent request (half-precision uploads are compared with
the FP32 upload of the same, already rounded, values: the server widens them exactly, so
the answers must be identical). The OIP tests skip, with the reason, only when the server
answers 404 for GET /v2 (the endpoint not built yet).
"""

import json
import os
import subprocess
import tempfile
import threading
import time
import unittest

import numpy as np

import support
from multibox_client import Client, MultiboxError


OIP = support.OIP
needs_oip = support.needs_oip


@support.needs_server
@support.needs_golden
class TestGoldenV1(unittest.TestCase):
    """Every golden case through Client.loss on POST /v1/loss."""

    @classmethod
    def setUpClass(cls):
        cls.client = Client(support.URL, protocol="v1")

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def run_cases(self, **opts):
        names = support.case_names()
        self.assertGreaterEqual(len(names), 1)
        for name in names:
            case = support.load_case(name)
            loc, conf, anchors, targets, config = support.case_arguments(case)
            with self.subTest(case=name, **opts):
                res = self.client.loss(loc, conf, anchors, targets, matches=True, **opts, **config)
                support.assert_matches_expected(self, res, case["expected"])
                self.assertEqual([m.tolist() for m in res.matches], case["expected"]["matches"])

    def test_sparse_gradients(self):
        self.run_cases()

    def test_dense_gradients(self):
        self.run_cases(gradients="dense")


@support.needs_server
@support.needs_golden
@needs_oip
class TestGoldenOip(unittest.TestCase):
    """Every golden case through Client.loss on the OIP endpoint with binary tensors.

    The protocol's outputs carry per-image totals only (per_image_loss), so the per-image
    parts and counts are checked on the /v1 path above.
    """

    @classmethod
    def setUpClass(cls):
        cls.client = Client(support.URL)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def run_cases(self, **opts):
        for name in support.case_names():
            case = support.load_case(name)
            loc, conf, anchors, targets, config = support.case_arguments(case)
            with self.subTest(case=name, **opts):
                res = self.client.loss(loc, conf, anchors, targets, **opts, **config)
                support.assert_matches_expected(self, res, case["expected"], full_per_image=False)

    def test_sparse_gradients(self):
        self.run_cases()

    def test_dense_gradients(self):
        self.run_cases(gradients="dense")

    def test_float64_inputs(self):
        # float64 arrays holding float32 values travel as FP32 and give the same answer
        case = support.load_case("tiny")
        loc, conf, anchors, targets, config = support.case_arguments(case)
        res = self.client.loss(loc.astype(np.float64), conf.astype(np.float64), anchors.astype(np.float64),
                               targets, **config)
        support.assert_matches_expected(self, res, case["expected"], full_per_image=False)


@support.needs_server
@support.needs_golden
@needs_oip
class TestHalfPrecision(unittest.TestCase):
    """fp16/bf16 uploads equal the FP32 upload of the same rounded values, bit for bit."""

    @classmethod
    def setUpClass(cls):
        cls.client = Client(support.URL)
        cls.args = support.case_arguments(support.load_case("focal"))

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def check_same(self, a, b):
        for key in ("loss", "conf_loss", "loc_loss", "normalizer", "num_positives", "num_negatives"):
            self.assertEqual(a[key], b[key], key)
        self.assertEqual(a.per_image, b.per_image)
        np.testing.assert_array_equal(a.grad_loc, b.grad_loc)
        np.testing.assert_array_equal(a.grad_conf, b.grad_conf)

    def test_fp16_upload(self):
        loc, conf, anchors, targets, config = self.args
        half = self.client.loss(loc, conf, anchors, targets, upload="fp16", **config)
        ref = self.client.loss(loc.astype(np.float16).astype(np.float32),
                               conf.astype(np.float16).astype(np.float32), anchors, targets, upload="fp32", **config)
        self.check_same(half, ref)
        # the rounding matters, so this is not a vacuous comparison
        self.assertNotEqual(half.loss, self.client.loss(loc, conf, anchors, targets, **config).loss)

    def test_bf16_upload(self):
        from multibox_client._tensors import bf16_bits_to_f32, f32_to_bf16_bits
        loc, conf, anchors, targets, config = self.args
        half = self.client.loss(loc, conf, anchors, targets, upload="bf16", **config)
        ref = self.client.loss(bf16_bits_to_f32(f32_to_bf16_bits(loc)), bf16_bits_to_f32(f32_to_bf16_bits(conf)),
                               anchors, targets, upload="fp32", **config)
        self.check_same(half, ref)

    def test_half_gradients(self):
        from multibox_client._tensors import bf16_bits_to_f32, f32_to_bf16_bits
        loc, conf, anchors, targets, config = self.args
        ref = self.client.loss(loc, conf, anchors, targets, **config)
        g16 = self.client.loss(loc, conf, anchors, targets, gradient_dtype="fp16", **config)
        self.assertEqual(g16.loss, ref.loss)
        np.testing.assert_array_equal(g16.grad_conf, ref.grad_conf.astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(g16.grad_loc, ref.grad_loc.astype(np.float16).astype(np.float32))
        gb = self.client.loss(loc, conf, anchors, targets, gradient_dtype="bf16", gradients="dense", **config)
        np.testing.assert_array_equal(gb.grad_conf, bf16_bits_to_f32(f32_to_bf16_bits(ref.grad_conf)))


@support.needs_server
@support.needs_golden
class TestAnchorsAndPresets(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = Client(support.URL)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def test_presets_equal_reference_priors(self):
        for path in sorted(os.listdir(os.path.join(support.GOLDEN, "priors"))):
            name = os.path.splitext(path)[0]
            with open(os.path.join(support.GOLDEN, "priors", path)) as f:
                doc = json.load(f)
            want = doc["anchors"]
            want = support.tensor(want) if isinstance(want, dict) else np.asarray(want, np.float32)
            with self.subTest(preset=name):
                got = self.client.anchors(name)
                self.assertEqual(got.dtype, np.float32)
                np.testing.assert_array_equal(got, want.reshape(-1, 4))

    def test_unknown_preset(self):
        with self.assertRaises(MultiboxError) as cm:
            self.client.anchors("no_such_preset")
        self.assertEqual(cm.exception.status, 404)
        self.assertEqual(cm.exception.code, "not_found")  # as api/openapi.yaml documents it
        self.assertIn("no_such_preset", cm.exception.message)

    def _preset_vs_array(self, protocol):
        case = support.load_case("ssd300_voc_b2")
        loc, conf, anchors, targets, config = support.case_arguments(case)
        np.testing.assert_array_equal(anchors, self.client.anchors("ssd300_voc"))  # the case uses the preset's boxes
        res = self.client.loss(loc, conf, "ssd300_voc", targets, protocol=protocol, **config)
        support.assert_matches_expected(self, res, case["expected"], full_per_image=(protocol == "v1"))

    def test_preset_name_v1(self):
        self._preset_vs_array("v1")

    @needs_oip
    def test_preset_name_oip(self):
        self._preset_vs_array("oip")


@support.needs_server
class TestServerErrors(unittest.TestCase):
    """Invalid requests raise MultiboxError with the server's status, code and message."""

    loc = np.zeros((1, 2, 4), np.float32)
    conf = np.zeros((1, 2, 3), np.float32)
    anchors = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], np.float32)

    @classmethod
    def setUpClass(cls):
        cls.client = Client(support.URL, max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def expect(self, protocol, code, status=422, targets=None, loc=None, conf=None, **config):
        targets = targets if targets is not None else [{"boxes": [[0.0, 0.0, 0.5, 0.5]], "labels": [1]}]
        with self.assertRaises(MultiboxError) as cm:
            self.client.loss(self.loc if loc is None else loc, self.conf if conf is None else conf,
                             self.anchors, targets, protocol=protocol, **config)
        e = cm.exception
        self.assertEqual((e.status, e.code), (status, code), str(e))
        self.assertTrue(e.message, "the server says what and where")
        return e

    def both(self, *args, **kw):
        out = [self.expect("v1", *args, **kw)]
        if OIP:
            out.append(self.expect("oip", *args, **kw))
        return out

    def test_label_out_of_range(self):
        e = self.both("bad_label", targets=[{"boxes": [[0.0, 0.0, 0.5, 0.5]], "labels": [3]}])
        self.assertIn("targets[0]", e[0].message)

    def test_background_label(self):
        self.both("bad_label", targets=[{"boxes": [[0.0, 0.0, 0.5, 0.5]], "labels": [0]}])

    def test_degenerate_box(self):
        e = self.both("degenerate_box", targets=[{"boxes": [[0.5, 0.0, 0.4, 0.5]], "labels": [1]}])
        self.assertIn("targets[0]", e[0].message)

    def test_nan(self):
        loc = self.loc.copy()
        loc[0, 1, 2] = np.nan
        self.both("not_finite", loc=loc)

    def test_config_out_of_range(self):
        self.both("bad_config", overlap_threshold=1.5)

    def test_unknown_config_key(self):
        self.both("unknown_field", no_such_option=1)

    def test_shape_mismatch(self):
        self.both("shape_mismatch", conf=np.zeros((1, 3, 3), np.float32))

    def test_server_survives(self):
        self.test_label_out_of_range()
        self.assertTrue(self.client.live())
        self.assertTrue(self.client.ready())


@support.needs_server
class TestKeepAlive(unittest.TestCase):
    def test_one_connection_for_many_calls(self):
        anchors = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], np.float32)
        targets = [{"boxes": [[0.0, 0.0, 0.5, 0.5]], "labels": [1]}]
        with Client(support.URL) as client:
            for protocol in (["v1", "oip"] if OIP else ["v1"]) * 3:
                client.loss(np.zeros((1, 2, 4)), np.zeros((1, 2, 3)), anchors, targets, protocol=protocol)
            self.assertEqual(client.transport.connections_opened, 1)


def start_multiboxd(*flags, env=None):
    """(process, url, log file) of a new multiboxd on 127.0.0.1, port 0, with extra flags."""
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([os.environ["MBX_MULTIBOXD"], "--listen", "127.0.0.1:0", *flags],
                            stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ, **(env or {})))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        log.seek(0)
        for line in log.read().splitlines():
            if "listening on 127.0.0.1:" in line:
                port = int(line.rsplit(":", 1)[1])
                return proc, "http://127.0.0.1:%d" % port, log
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    log.close()
    raise AssertionError("multiboxd did not start")


def stop_multiboxd(proc, log):
    """SIGTERM, then the drain must end with exit status 0 (sanitizer reports included)."""
    proc.terminate()
    rc = proc.wait(timeout=30)
    log.seek(0)
    text = log.read()
    log.close()
    if rc != 0:
        raise AssertionError("multiboxd exited with %d after SIGTERM; log:\n%s" % (rc, text[-4000:]))


@support.needs_golden
@unittest.skipUnless(os.environ.get("MBX_MULTIBOXD"), "MBX_MULTIBOXD not set (run.sh sets it)")
class TestOverloadRetries(unittest.TestCase):
    """A server with one worker and no queue answers concurrent requests 503 + Retry-After;
    clients with retries still get every answer right, clients without see the 503."""

    @classmethod
    def setUpClass(cls):
        cls.proc, cls.url, cls.log = start_multiboxd("--workers", "1", "--queue-depth", "0")
        case = support.load_case("ssd300_voc_b2")
        loc, conf, anchors, targets, config = support.case_arguments(case)
        # four copies of the batch: each request computes long enough for the others to collide
        cls.args = (np.concatenate([loc] * 4), np.concatenate([conf] * 4), anchors, targets * 4)
        cls.config = config
        cls.expected_loss = case["expected"]["loss"]

    @classmethod
    def tearDownClass(cls):
        stop_multiboxd(cls.proc, cls.log)

    def hammer(self, threads, **client_opts):
        barrier = threading.Barrier(threads)
        out = []

        def worker():
            with Client(self.url, protocol="oip" if OIP else "v1", **client_opts) as c:
                barrier.wait()
                try:
                    r = c.loss(*self.args, **self.config)
                    out.append(("ok", r.loss, c.transport.retries_done))
                except MultiboxError as e:
                    out.append(("error", e, c.transport.retries_done))

        ts = [threading.Thread(target=worker) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return out

    def test_without_retries_503_reaches_the_caller(self):
        out = self.hammer(6, max_retries=0)
        errors = [e for kind, e, _ in out if kind == "error"]
        self.assertTrue(errors, "six simultaneous requests on one worker with no queue: some must be refused")
        for e in errors:
            self.assertEqual((e.status, e.code), (503, "overloaded"), str(e))
            self.assertIsNotNone(e.retry_after, "503 carries Retry-After")

    def test_with_retries_every_request_succeeds(self):
        out = self.hammer(6, max_retries=50, max_retry_wait=0.2)
        self.assertEqual([k for k, _, _ in out], ["ok"] * 6, out)
        for _, loss, _ in out:
            support.assert_rel(self, loss, self.expected_loss, 1e-5, "loss")
        self.assertGreater(sum(r for _, _, r in out), 0, "some requests were retried")


@unittest.skipUnless(os.environ.get("MBX_MULTIBOXD"), "MBX_MULTIBOXD not set (run.sh sets it)")
class TestToken(unittest.TestCase):
    """A server configured with a token (MULTIBOX_AUTH_TOKEN): the client's token= is sent."""

    @classmethod
    def setUpClass(cls):
        cls.proc, cls.url, cls.log = start_multiboxd("--workers", "1", env={"MULTIBOX_AUTH_TOKEN": "s3cret-token"})

    @classmethod
    def tearDownClass(cls):
        stop_multiboxd(cls.proc, cls.log)

    def call(self, protocol, token):
        anchors = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], np.float32)
        with Client(self.url, token=token, protocol=protocol, max_retries=0) as c:
            return c.loss(np.zeros((1, 2, 4)), np.zeros((1, 2, 3)), anchors,
                          [{"boxes": [[0.0, 0.0, 0.5, 0.5]], "labels": [1]}])

    def test_token(self):
        for protocol in ["v1", "oip"] if OIP else ["v1"]:
            with self.subTest(protocol=protocol):
                self.assertGreater(self.call(protocol, "s3cret-token").loss, 0.0)
                for token in (None, "wrong"):
                    with self.assertRaises(MultiboxError) as cm:
                        self.call(protocol, token)
                    self.assertEqual((cm.exception.status, cm.exception.code), (401, "unauthorized"))


if __name__ == "__main__":
    unittest.main()
