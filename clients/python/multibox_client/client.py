"""Client: the public entry point of the multibox service's Python client.

Turns Client.loss(loc, conf, anchors, targets, **config) into one request, on the Open
Inference Protocol path (binary tensors, sparse gradients: the default) or the /v1 JSON path,
and returns a LossResult with dense numpy gradients. Inputs may be numpy arrays, torch tensors
(any device; read, never modified) or nested lists. Errors come back as MultiboxError with the
server's status, code and message; argument errors the client can see by itself raise
ValueError before anything is sent. One Client keeps one connection alive; it may be shared
by threads, which then take turns.
"""

import json
import urllib.parse

from . import _oip, _v1
from ._inputs import normalize_anchors, normalize_targets, shape3
from ._tensors import decode_tensor, upload_datatype_name
from ._transport import Transport
from .errors import MultiboxError

_PROTOCOLS = {"oip": "oip", "v2": "oip", "v1": "v1", "json": "v1"}
_GRADIENTS = {"sparse": "sparse", True: True, "dense": True, False: False, None: False, "none": False}


class Client:
    """A connection to one multibox service.

    url: base URL, e.g. "http://127.0.0.1:8080".
    timeout: seconds allowed for connecting and for each read of an answer.
    token: bearer token, for a server configured with one.
    protocol: "oip" (POST /v2/models/multibox_loss/infer, binary tensors; default) or "v1"
        (POST /v1/loss, JSON with base64 tensors).
    gradients: "sparse" (default: only the rows that can be non-zero travel, then they are
        scattered into dense arrays), "dense", or False (no gradients).
    upload: "auto" (float16/bfloat16 inputs travel as such, others as FP32), "fp32", "fp16"
        or "bf16" (halves the upload; the service widens exactly to float32). OIP only.
    gradient_dtype: "fp32" (default), "fp16" or "bf16" for the gradient values on the wire
        (OIP only; the returned arrays are float32 either way).
    max_retries, max_retry_wait: a 503 answer is retried up to max_retries times, waiting
        what Retry-After says but never more than max_retry_wait seconds at once.
    """

    def __init__(self, url, timeout=60.0, token=None, protocol="oip", gradients="sparse",
                 upload="auto", gradient_dtype="fp32", max_retries=5, max_retry_wait=10.0):
        self.url = url
        self._transport = Transport(url, timeout=timeout, token=token, max_retries=max_retries,
                                    max_retry_wait=max_retry_wait)
        self.protocol = self._protocol(protocol)
        self.gradients = self._gradients(gradients)
        self.upload = upload_datatype_name(upload)
        self.gradient_dtype = upload_datatype_name(gradient_dtype)
        self._anchor_cache = {}

    @staticmethod
    def _protocol(p):
        key = p.lower() if isinstance(p, str) else p
        if key not in _PROTOCOLS:
            raise ValueError("protocol must be 'oip' or 'v1', got %r" % (p,))
        return _PROTOCOLS[key]

    @staticmethod
    def _gradients(g):
        key = g.lower() if isinstance(g, str) else g
        if key not in _GRADIENTS:
            raise ValueError("gradients must be 'sparse', 'dense' or False, got %r" % (g,))
        return _GRADIENTS[key]

    # ------------------------------------------------------------------ lifecycle
    def close(self):
        """Closes the kept-alive connection (a later call reconnects)."""
        self._transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def transport(self):
        """The underlying Transport (connections_opened and retries_done counters)."""
        return self._transport

    # ------------------------------------------------------------------ loss
    def loss(self, loc, conf, anchors, targets, *, protocol=None, gradients=None, upload=None,
             gradient_dtype=None, matches=False, **config):
        """Computes the MultiBox loss and its gradients on the service.

        loc: [B, A, 4] and conf: [B, A, C], numpy arrays or torch tensors of any float dtype.
        anchors: [A, 4] array/tensor, a preset name ("ssd300_voc"), {"preset": name}, or
            {"prior_box": {...}} (generator parameters; /v1 path only).
        targets: B items {"boxes": [G,4], "labels": [G], optional "difficult": [G]}.
        config: the keys of the semantics table (bipartite="per_gt", variances=(0.1, 0.2), ...).
        protocol, gradients, upload, gradient_dtype: override the Client's setting for this
            call; matches=True asks the /v1 path for the per-anchor matches.

        Returns a LossResult (see multibox_client.result). Raises ValueError for arguments
        the client rejects itself, MultiboxError for the server's refusals and failures.
        """
        protocol = self.protocol if protocol is None else self._protocol(protocol)
        gradients = self.gradients if gradients is None else self._gradients(gradients)
        upload = self.upload if upload is None else upload_datatype_name(upload)
        gdt = self.gradient_dtype if gradient_dtype is None else upload_datatype_name(gradient_dtype)
        batch, num_anchors, four = shape3("loc", loc)
        cb, ca, classes = shape3("conf", conf)
        if four != 4:
            raise ValueError("loc must have shape [B, A, 4], got %s" % ([batch, num_anchors, four],))
        anc = normalize_anchors(anchors)
        tgts = normalize_targets(targets)

        if protocol == "v1":
            if upload not in ("auto", "FP32"):
                raise ValueError("half-precision upload needs the OIP path (protocol='oip')")
            if gdt != "FP32":
                raise ValueError("gradient_dtype other than fp32 needs the OIP path (protocol='oip')")
            headers, body = _v1.build_request(loc, conf, anc, tgts, config, gradients, matches)
            resp = self._transport.request("POST", _v1.PATH, body, headers)
            return _v1.to_result(resp.body, batch, num_anchors, classes)

        if matches:
            raise ValueError("matches are only reported by the /v1 path (protocol='v1')")
        headers, chunks = _oip.build_request(loc, conf, anc, tgts, config, gradients, upload, gdt)
        resp = self._transport.request("POST", _oip.PATH, chunks, headers)
        try:
            outputs = _oip.parse_outputs(resp.headers, resp.body)
            return _oip.to_result(outputs, batch, num_anchors, classes)
        except (ValueError, KeyError) as exc:
            raise MultiboxError(resp.status, "bad_response",
                                "unexpected infer answer: %s: %s" % (type(exc).__name__, exc)) from None

    # ------------------------------------------------------------------ other endpoints
    def anchors(self, preset):
        """The anchors of a preset as float32 [A, 4] (xyxy), from GET /v1/anchors/{preset}.

        Cached per Client (presets never change while a server runs); each call returns a
        fresh copy. Raises MultiboxError (404, code unknown_preset or not_found) for an
        unknown preset.
        """
        if preset not in self._anchor_cache:
            path = "/v1/anchors/%s?tensor_format=b64" % urllib.parse.quote(preset, safe="")
            resp = self._transport.request("GET", path)
            arr = decode_tensor(json.loads(resp.body.decode("utf-8")))
            self._anchor_cache[preset] = arr.reshape(-1, 4)
        return self._anchor_cache[preset].copy()

    def server_metadata(self):
        """GET /v2: the server's name, version and extensions, as a dict."""
        return json.loads(self._transport.request("GET", "/v2").body.decode("utf-8"))

    def live(self):
        """True when GET /livez answers 200."""
        return self._probe("/livez")

    def ready(self):
        """True when GET /readyz answers 200 (False while starting or draining)."""
        return self._probe("/readyz")

    def _probe(self, path):
        try:
            self._transport.request("GET", path, retry_503=False)
            return True
        except MultiboxError:
            return False
