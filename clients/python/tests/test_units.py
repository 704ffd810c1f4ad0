"""Client pieces that need no server: encodings, framing, error parsing, argument checks.

Expected values here come from independent definitions: IEEE half rounding as numpy does it,
bfloat16 as the top 16 bits of a float32 rounded to nearest-even (checked bit by bit on
hand-picked values whose rounding is known), Triton's binary framing as its specification
describes it.
"""

import json
import unittest

import numpy as np

import support  # noqa: F401  (puts the package on sys.path)
from multibox_client import Client, MultiboxError
from multibox_client import _inputs, _oip, _tensors, _v1
from multibox_client.errors import error_from_response, parse_retry_after


class TestHalfEncodings(unittest.TestCase):
    def test_bf16_round_to_nearest_even(self):
        # 1 + 2^-8 is exactly halfway between bf16 1.0 (0x3f80) and 1 + 2^-7 (0x3f81): ties
        # go to the even mantissa 0x3f80; 1 + 3*2^-8 is halfway between 0x3f81 and 0x3f82:
        # ties go to 0x3f82; just above halfway rounds up.
        vals = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -2.0, 0.0], np.float32)
        bits = _tensors.f32_to_bf16_bits(vals)
        self.assertEqual([int(b) for b in bits], [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC000, 0x0000])
        back = _tensors.bf16_bits_to_f32(bits)
        np.testing.assert_array_equal(back, [1.0, 1.0, 1 + 2**-6, 1 + 2**-7, -2.0, 0.0])

    def test_bf16_nan_and_overflow(self):
        bits = _tensors.f32_to_bf16_bits(np.array([np.nan, np.float32(3.4e38)], np.float32))
        self.assertTrue(np.isnan(_tensors.bf16_bits_to_f32(bits[:1]))[0])
        self.assertEqual(int(bits[1]), 0x7F80)  # rounds to +inf as IEEE does
        with self.assertRaises(ValueError):
            _tensors.float_payload(np.full((1, 1, 4), 3.4e38, np.float32), "bf16")

    def test_payload_forms(self):
        x = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7
        dt, arr = _tensors.float_payload(x)
        self.assertEqual((dt, arr.dtype), ("FP32", np.dtype("<f4")))
        np.testing.assert_array_equal(arr, x.astype(np.float32))
        dt, arr = _tensors.float_payload(x.astype(np.float16))
        self.assertEqual(dt, "FP16")  # auto keeps a half input as it is
        dt, arr = _tensors.float_payload(x, "fp16")
        self.assertEqual(dt, "FP16")
        np.testing.assert_array_equal(arr, x.astype(np.float32).astype(np.float16))
        dt, arr = _tensors.float_payload(x, "bf16")
        self.assertEqual((dt, arr.dtype), ("BF16", np.dtype("<u2")))
        with self.assertRaises(ValueError):
            _tensors.float_payload(np.full((1, 1, 4), 70000.0), "fp16")
        with self.assertRaises(ValueError):
            _tensors.upload_datatype_name("int8")

    def test_decode_tensor_forms(self):
        want = np.arange(6, dtype=np.float32).reshape(2, 3)
        np.testing.assert_array_equal(_tensors.decode_tensor(want.tolist()), want)
        np.testing.assert_array_equal(_tensors.decode_tensor({"shape": [2, 3], "data": list(range(6))}), want)
        np.testing.assert_array_equal(_tensors.decode_tensor(_tensors.encode_b64(want)), want)
        np.testing.assert_array_equal(_tensors.decode_tensor(_tensors.encode_b64(want, "float64")), want)


class TestInputs(unittest.TestCase):
    def test_targets(self):
        t = _inputs.normalize_targets([{"boxes": [], "labels": []},
                                       {"boxes": [[0, 0, 1, 1]], "labels": [2], "difficult": [True]}])
        self.assertEqual(t[0].boxes.shape, (0, 4))
        self.assertIsNone(t[0].difficult)
        self.assertEqual(t[1].labels.dtype, np.int64)
        for bad in ([{"boxes": [[0, 0, 1, 1]], "labels": [1, 2]}],
                    [{"boxes": [[0, 0, 1]], "labels": [1]}],
                    [{"boxes": [[0, 0, 1, 1]]}],
                    {"boxes": [], "labels": []},
                    [{"boxes": [[0, 0, 1, 1]], "labels": [1.5]}]):
            with self.assertRaises(ValueError):
                _inputs.normalize_targets(bad)

    def test_anchors(self):
        self.assertEqual(_inputs.normalize_anchors("ssd300_voc").preset, "ssd300_voc")
        self.assertEqual(_inputs.normalize_anchors({"preset": "x"}).preset, "x")
        self.assertEqual(_inputs.normalize_anchors({"prior_box": {"image_size": 300}}).prior_box,
                         {"image_size": 300})
        self.assertEqual(_inputs.normalize_anchors(np.zeros((5, 4))).array.dtype, np.float32)
        with self.assertRaises(ValueError):
            _inputs.normalize_anchors(np.zeros((5, 3)))

    def test_scatter(self):
        dense = _inputs.scatter_rows([1, 4], [[1, 2], [3, 4]], 2, 3, 2)
        want = np.zeros((6, 2), np.float32)
        want[1] = [1, 2]
        want[4] = [3, 4]
        np.testing.assert_array_equal(dense, want.reshape(2, 3, 2))
        self.assertEqual(_inputs.scatter_rows([], np.zeros((0, 2)), 1, 2, 2).sum(), 0)
        with self.assertRaises(ValueError):
            _inputs.scatter_rows([6], [[1, 2]], 2, 3, 2)

    def test_client_rejects_before_sending(self):
        c = Client("http://127.0.0.1:9")  # nothing listens there: these must fail earlier
        loc, conf = np.zeros((1, 2, 4)), np.zeros((1, 2, 3))
        tg = [{"boxes": [[0, 0, 1, 1]], "labels": [1]}]
        with self.assertRaises(ValueError):
            c.loss(np.zeros((2, 4)), conf, np.zeros((2, 4)), tg)
        with self.assertRaises(ValueError):
            c.loss(loc, conf, {"prior_box": {}}, tg)  # generator parameters are /v1 only
        with self.assertRaises(ValueError):
            c.loss(loc, conf, np.zeros((2, 4)), tg, protocol="v1", upload="fp16")
        with self.assertRaises(ValueError):
            c.loss(loc, conf, np.zeros((2, 4)), tg, matches=True)
        with self.assertRaises(ValueError):
            c.loss(loc, conf, np.zeros((2, 4)), tg, variances=[0.1, 0.2, 0.3])
        with self.assertRaises(ValueError):
            Client("ftp://x")
        with self.assertRaises(ValueError):
            Client("http://x:1", protocol="grpc")


class TestOipFraming(unittest.TestCase):
    """The request follows Triton's binary tensor data extension, byte for byte."""

    def build(self, **kw):
        loc = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
        conf = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
        anchors = _inputs.normalize_anchors(np.ones((3, 4), np.float32))
        targets = _inputs.normalize_targets([
            {"boxes": [[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.6, 0.7]], "labels": [1, 4], "difficult": [False, True]},
            {"boxes": [], "labels": []}])
        return _oip.build_request(loc, conf, anchors, targets, {"variances": [0.1, 0.2], "use_difficult": False},
                                  **kw)

    def split(self, headers, chunks):
        body = b"".join(bytes(c) for c in chunks)
        hlen = int(headers["Inference-Header-Content-Length"])
        header = json.loads(body[:hlen])
        parts, off = {}, hlen
        for inp in header["inputs"]:
            n = inp["parameters"]["binary_data_size"]
            parts[inp["name"]] = (inp, body[off:off + n])
            off += n
        self.assertEqual(off, len(body), "no bytes beyond the declared tensors")
        return header, parts

    def test_request_layout(self):
        headers, chunks = self.build()
        self.assertEqual(headers["Content-Type"], "application/octet-stream")
        header, parts = self.split(headers, chunks)
        self.assertEqual(header["parameters"], {"variance_center": 0.1, "variance_size": 0.2,
                                                "use_difficult": False, "binary_data_output": True})
        inp, raw = parts["conf"]
        self.assertEqual((inp["datatype"], inp["shape"]), ("FP32", [2, 3, 5]))
        np.testing.assert_array_equal(np.frombuffer(raw, "<f4"), np.arange(30, dtype=np.float32))
        self.assertEqual(parts["gt_counts"][0]["datatype"], "INT32")
        self.assertEqual(np.frombuffer(parts["gt_counts"][1], "<i4").tolist(), [2, 0])
        self.assertEqual(np.frombuffer(parts["gt_labels"][1], "<i4").tolist(), [1, 4])
        self.assertEqual(parts["gt_boxes"][0]["shape"], [2, 4])
        self.assertEqual(list(parts["gt_difficult"][1]), [0, 1])
        self.assertEqual(parts["gt_difficult"][0]["datatype"], "BOOL")
        # Targets before loc and conf, so the server can start early; two one-byte flags
        # after conf, so that loc and conf stay 4-byte aligned.
        self.assertEqual([i["name"] for i in header["inputs"]],
                         ["anchors", "gt_boxes", "gt_labels", "gt_counts", "loc", "conf",
                          "gt_difficult"])
        names = [o["name"] for o in header["outputs"]]
        self.assertIn("grad_conf_rows", names)
        self.assertNotIn("grad_conf", names)
        self.assertTrue(all(o["parameters"]["binary_data"] for o in header["outputs"]))

    def test_difficult_flags_before_loc_when_aligned(self):
        loc = np.zeros((1, 3, 4), np.float32)
        conf = np.zeros((1, 3, 5), np.float32)
        anchors = _inputs.normalize_anchors(np.ones((3, 4), np.float32))
        targets = _inputs.normalize_targets([
            {"boxes": [[0.1, 0.1, 0.5, 0.5]] * 4, "labels": [1, 2, 3, 4],
             "difficult": [False, True, False, False]}])
        headers, chunks = _oip.build_request(loc, conf, anchors, targets, {})
        header, parts = self.split(headers, chunks)
        self.assertEqual([i["name"] for i in header["inputs"]],
                         ["anchors", "gt_boxes", "gt_labels", "gt_counts", "gt_difficult", "loc",
                          "conf"])
        self.assertEqual(list(parts["gt_difficult"][1]), [0, 1, 0, 0])

    def test_half_upload_and_dense(self):
        headers, chunks = self.build(gradients=True, upload="bf16", gradient_dtype="fp16")
        header, parts = self.split(headers, chunks)
        self.assertEqual(parts["loc"][0]["datatype"], "BF16")
        self.assertEqual(len(parts["loc"][1]), 2 * 3 * 4 * 2)
        self.assertEqual(header["parameters"]["gradient_datatype"], "FP16")
        names = [o["name"] for o in header["outputs"]]
        self.assertIn("grad_conf", names)
        self.assertNotIn("grad_conf_rows", names)

    def test_parse_binary_answer(self):
        outs = [("loss", "FP32", [1], np.array([2.5], "<f4")),
                ("num_positives", "INT32", [1], np.array([3], "<i4")),
                ("grad_conf_rows", "INT32", [2], np.array([0, 5], "<i4")),
                ("grad_conf_values", "BF16", [2, 2], _tensors.f32_to_bf16_bits(np.array([1, 2, 3, 4], "<f4"))),
                ("per_image_loss", "FP32", [2], None)]
        header = {"model_name": "multibox_loss", "outputs": []}
        tail = b""
        for name, dt, shape, arr in outs:
            if arr is None:
                header["outputs"].append({"name": name, "datatype": dt, "shape": shape, "data": [1.0, 1.5]})
            else:
                header["outputs"].append({"name": name, "datatype": dt, "shape": shape,
                                          "parameters": {"binary_data_size": arr.nbytes}})
                tail += arr.tobytes()
        head = json.dumps(header).encode()
        parsed = _oip.parse_outputs({"inference-header-content-length": str(len(head))}, head + tail)
        self.assertEqual(parsed["loss"].tolist(), [2.5])
        self.assertEqual(parsed["num_positives"].tolist(), [3])
        self.assertEqual(parsed["grad_conf_values"].tolist(), [[1, 2], [3, 4]])
        self.assertEqual(parsed["per_image_loss"].tolist(), [1.0, 1.5])
        with self.assertRaises(ValueError):
            _oip.parse_outputs({"inference-header-content-length": str(len(head))}, head + tail + b"x")
        with self.assertRaises(ValueError):
            _oip.parse_outputs({"inference-header-content-length": str(len(head))}, head + tail[:-1])

    def test_v1_body(self):
        anchors = _inputs.normalize_anchors("ssd300_voc")
        targets = _inputs.normalize_targets([{"boxes": [[0.1, 0.2, 0.3, 0.4]], "labels": [1]}])
        _, body = _v1.build_request(np.zeros((1, 2, 4), np.float16), np.zeros((1, 2, 3)), anchors, targets,
                                    {"bipartite": "per_gt"}, gradients="sparse")
        doc = json.loads(body)
        self.assertEqual(doc["anchors"], {"preset": "ssd300_voc"})
        self.assertEqual(doc["loc"]["dtype"], "float32")
        self.assertEqual(doc["outputs"]["gradients"], "sparse")
        self.assertEqual(doc["config"], {"bipartite": "per_gt"})
        # float32 box values survive the JSON round trip exactly
        self.assertEqual(np.float32(doc["targets"][0]["boxes"][0][1]), np.float32(0.2))


class TestErrors(unittest.TestCase):
    def test_v1_body(self):
        e = error_from_response(422, b'{"error":{"code":"bad_label","message":"targets[0].labels[2]: 9"}}')
        self.assertIsInstance(e, MultiboxError)
        self.assertEqual((e.status, e.code, e.message), (422, "bad_label", "targets[0].labels[2]: 9"))

    def test_v2_body(self):
        e = error_from_response(503, b'{"error":"overloaded: queue full"}', {"retry-after": "2"})
        self.assertEqual((e.status, e.code, e.message, e.retry_after), (503, "overloaded", "queue full", 2.0))

    def test_other_bodies(self):
        e = error_from_response(502, b"<html>bad gateway</html>")
        self.assertEqual((e.code, e.message), ("http_502", "<html>bad gateway</html>"))
        e = error_from_response(500, b'{"error":"something broke"}')
        self.assertEqual((e.code, e.message), ("http_500", "something broke"))

    def test_retry_after(self):
        self.assertEqual(parse_retry_after("3"), 3.0)
        self.assertIsNone(parse_retry_after("soon"))
        self.assertIsNone(parse_retry_after(None))
        self.assertEqual(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), 0.0)  # in the past


if __name__ == "__main__":
    unittest.main()
