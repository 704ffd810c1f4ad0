"""Transport behaviour against a scripted stub server on loopback (no multiboxd needed).

The stub (http.server, HTTP/1.1) answers from a script of (status, headers, body) and
records every request and the client port it came from, so the tests observe what went over
the wire: 503 answers retried after Retry-After, the retry bound, the cap on waits,
connection reuse, recovery from a server closing an idle connection, the bearer token,
timeouts and refused connections.
"""

import http.server
import json
import socket
import threading
import time
import unittest

import numpy as np

import support  # noqa: F401
from multibox_client import Client, MultiboxConnectionError, MultiboxError

OK_BODY = json.dumps({
    "loss": 1.5, "conf_loss": 1.0, "loc_loss": 0.5, "normalizer": 2.0,
    "num_positives": 2, "num_negatives": 6,
    "per_image": [{"loss": 1.5, "conf_loss": 1.0, "loc_loss": 0.5, "num_positives": 2, "num_negatives": 6}],
    "grad_loc": {"shape": [1, 2, 4], "data": [0.5] * 8},
    "grad_conf": {"rows": [1], "values": {"shape": [1, 3], "data": [0.1, 0.2, -0.3]}},
}).encode()
BUSY_BODY = b'{"error":{"code":"overloaded","message":"queue full, retry later"}}'


class Stub:
    """A loopback HTTP/1.1 server answering from a script; the last entry repeats."""

    def __init__(self, script, close_after_each=False, delay=0.0):
        self.script = list(script)
        self.requests = []  # (method, path, headers dict, body, client port)
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                stub.requests.append((self.command, self.path, dict(self.headers), body, self.client_address[1]))
                if delay:
                    time.sleep(delay)
                status, headers, payload = stub.script[min(len(stub.requests), len(stub.script)) - 1]
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                if close_after_each:
                    # Close without announcing it (no Connection: close), as a server does
                    # when its keep-alive timeout expires between two requests.
                    self.close_connection = True

            do_GET = do_POST = _answer

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that gave up (timeout test) makes our write fail: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def call(client):
    return client.loss(np.zeros((1, 2, 4)), np.zeros((1, 2, 3)), np.array([[0, 0, .5, .5], [.5, .5, 1, 1]]),
                       [{"boxes": [[0, 0, .5, .5]], "labels": [1]}], protocol="v1", bipartite="per_gt")


class TestRetries(unittest.TestCase):
    def test_503_then_200_waits_retry_after(self):
        with Stub([(503, {"Retry-After": "1"}, BUSY_BODY), (200, {}, OK_BODY)]) as stub:
            with Client(stub.url, max_retries=3) as client:
                t0 = time.monotonic()
                res = call(client)
                elapsed = time.monotonic() - t0
        self.assertEqual(len(stub.requests), 2)
        self.assertEqual(stub.requests[0][3], stub.requests[1][3], "the same body is sent again")
        self.assertGreaterEqual(elapsed, 0.95, "waited Retry-After: 1 before retrying")
        self.assertLess(elapsed, 5.0)
        self.assertEqual(client.transport.retries_done, 1)
        self.assertEqual(res.loss, 1.5)
        self.assertEqual(res.num_negatives, 6)
        want_conf = np.zeros((1, 2, 3), np.float32)
        want_conf[0, 1] = [0.1, 0.2, -0.3]
        np.testing.assert_array_equal(res.grad_conf, want_conf)
        np.testing.assert_array_equal(res.grad_loc, np.full((1, 2, 4), 0.5, np.float32))

    def test_retries_are_bounded(self):
        with Stub([(503, {"Retry-After": "0"}, BUSY_BODY)]) as stub:
            with Client(stub.url, max_retries=2) as client, self.assertRaises(MultiboxError) as cm:
                call(client)
        self.assertEqual(len(stub.requests), 3, "one try and two retries")
        e = cm.exception
        self.assertEqual((e.status, e.code, e.message), (503, "overloaded", "queue full, retry later"))
        self.assertEqual(e.retry_after, 0.0)

    def test_wait_is_capped(self):
        with Stub([(503, {"Retry-After": "3600"}, BUSY_BODY), (200, {}, OK_BODY)]) as stub:
            with Client(stub.url, max_retries=1, max_retry_wait=0.2) as client:
                t0 = time.monotonic()
                call(client)
                elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, 0.19)
        self.assertLess(elapsed, 3.0)

    def test_no_retry_when_disabled_and_other_errors_not_retried(self):
        with Stub([(503, {"Retry-After": "0"}, BUSY_BODY)]) as stub:
            with Client(stub.url, max_retries=0) as client, self.assertRaises(MultiboxError):
                call(client)
            self.assertEqual(len(stub.requests), 1)
        body = b'{"error":{"code":"bad_label","message":"targets[0].labels[0]: 7 out of range"}}'
        with Stub([(422, {}, body)]) as stub:
            with Client(stub.url, max_retries=3) as client, self.assertRaises(MultiboxError) as cm:
                call(client)
            self.assertEqual(len(stub.requests), 1)
        self.assertEqual((cm.exception.status, cm.exception.code), (422, "bad_label"))

    def test_v2_error_string(self):
        with Stub([(404, {}, b'{"error":"not_found: no model nope"}')]) as stub:
            with Client(stub.url) as client, self.assertRaises(MultiboxError) as cm:
                client.server_metadata()
        self.assertEqual((cm.exception.status, cm.exception.code, cm.exception.message),
                         (404, "not_found", "no model nope"))


class TestConnections(unittest.TestCase):
    def test_keep_alive_reuses_one_connection(self):
        with Stub([(200, {}, OK_BODY)]) as stub:
            with Client(stub.url) as client:
                for _ in range(3):
                    call(client)
        self.assertEqual(client.transport.connections_opened, 1)
        self.assertEqual(len({r[4] for r in stub.requests}), 1, "all requests from one client port")

    def test_recovers_when_server_closed_idle_connection(self):
        with Stub([(200, {}, OK_BODY)], close_after_each=True) as stub:
            with Client(stub.url, max_retries=0) as client:
                for _ in range(3):
                    time.sleep(0.05)  # let the server's close arrive first
                    self.assertEqual(call(client).loss, 1.5)
        self.assertEqual(len(stub.requests), 3)
        self.assertEqual(client.transport.connections_opened, 3)

    def test_bearer_token_sent(self):
        with Stub([(200, {}, OK_BODY)]) as stub:
            with Client(stub.url, token="s3cret") as client:
                call(client)
        self.assertEqual(stub.requests[0][2].get("Authorization"), "Bearer s3cret")
        self.assertEqual(stub.requests[0][1], "/v1/loss")

    def test_timeout(self):
        with Stub([(200, {}, OK_BODY)], delay=1.5) as stub:
            with Client(stub.url, timeout=0.3) as client, self.assertRaises(MultiboxConnectionError) as cm:
                t0 = time.monotonic()
                call(client)
            self.assertLess(time.monotonic() - t0, 1.4)
        self.assertIsNone(cm.exception.status)
        self.assertEqual(cm.exception.code, "connection_error")

    def test_connection_refused(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens on this port now
        with Client("http://127.0.0.1:%d" % port) as client, self.assertRaises(MultiboxConnectionError):
            call(client)

    def test_ready_probe_does_not_retry(self):
        with Stub([(503, {"Retry-After": "5"}, b'{"error":{"code":"draining","message":"x"}}')]) as stub:
            t0 = time.monotonic()
            with Client(stub.url) as client:
                self.assertFalse(client.ready())
            self.assertLess(time.monotonic() - t0, 2.0)
            self.assertEqual(len(stub.requests), 1)


if __name__ == "__main__":
    unittest.main()
