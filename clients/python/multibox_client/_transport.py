"""HTTP transport of the multibox client: one kept-alive connection, bounded retries.

Owns a single http.client connection to the service and reuses it across requests
(HTTP/1.1 keep-alive). Retries a request answered 503 (overloaded or draining), waiting as
the Retry-After header says, capped by max_retry_wait and at most max_retries times; retries
once, on a fresh connection, a request whose reused connection turns out to have been closed
by the server while idle. Every request the client sends is a pure computation, so resending
is safe. Requests are serialized by a lock: one Transport may be shared by threads, but they
take turns. It never interprets bodies beyond turning errors into MultiboxError.
"""

import http.client
import socket
import threading
import time
import urllib.parse

from .errors import MultiboxConnectionError, error_from_response, parse_retry_after


class Response:
    """A complete HTTP answer: status (int), headers (dict, lower-case names), body (bytes)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body


# Errors that mean "the server closed the idle keep-alive connection before our request".
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
          ConnectionAbortedError, http.client.CannotSendRequest)


class Transport:
    """Sends requests to one base URL over a reused connection.

    url: "http://host:port" or "https://host:port", optionally with a path prefix.
    timeout: socket timeout in seconds for connecting and for each read (None: no limit).
    token: when set, sent as "Authorization: Bearer <token>".
    max_retries: how many times a 503 answer is retried (0 disables).
    max_retry_wait: upper bound in seconds on any single wait between retries.
    """

    def __init__(self, url, timeout=60.0, token=None, max_retries=5, max_retry_wait=10.0,
                 user_agent="multibox-client"):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must look like http://host:port, got %r" % (url,))
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.token = token
        self.max_retries = max(0, int(max_retries))
        self.max_retry_wait = max(0.0, float(max_retry_wait))
        self.user_agent = user_agent
        self.connections_opened = 0  # how many TCP connections were made (keep-alive check)
        self.retries_done = 0        # how many 503 answers were retried, over the lifetime
        self._conn = None
        self._lock = threading.Lock()

    def close(self):
        """Closes the kept-alive connection, if any; the next request opens a new one."""
        with self._lock:
            self._drop()

    def _drop(self):
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _connect(self):
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        conn.connect()
        self.connections_opened += 1
        return conn

    def _send_once(self, method, path, body, headers):
        """One exchange on the kept-alive connection (opened if needed).

        Returns the Response. On any transport error the connection is dropped and the
        exception propagates.
        """
        if self._conn is None:
            self._conn = self._connect()
        try:
            try:
                self._conn.request(method, self.prefix + path, body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError) as send_error:
                # A server may answer before reading the whole body (404, 413, 401) and
                # close; its answer can still be waiting in our receive buffer.
                try:
                    resp = self._conn.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException):
                    raise send_error from None
                self._drop()
                return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
            resp = self._conn.getresponse()
            data = resp.read()
        except BaseException:
            self._drop()
            raise
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if resp.will_close:
            self._drop()
        return Response(resp.status, hdrs, data)

    def request(self, method, path, body=None, headers=None, ok=(200,), retry_503=True):
        """Sends a request and returns the Response when its status is in ok.

        body: bytes, or a list of bytes-like chunks (sent back to back, Content-Length is
        computed). retry_503=False turns off the 503 retries (for probes). Raises
        MultiboxError for other statuses (after the 503 retries) and MultiboxConnectionError
        when no answer could be obtained.
        """
        hdrs = {"User-Agent": self.user_agent, "Accept": "application/json, application/octet-stream"}
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        if headers:
            hdrs.update(headers)
        if isinstance(body, list):
            hdrs["Content-Length"] = str(sum(memoryview(c).nbytes for c in body))
        elif body is not None:
            hdrs["Content-Length"] = str(len(body))

        attempt = 0
        with self._lock:
            while True:
                reused = self._conn is not None
                try:
                    try:
                        resp = self._send_once(method, path, body, hdrs)
                    except _STALE:
                        # The server may close an idle kept-alive connection at any time;
                        # one immediate retry on a fresh connection covers that race.
                        if not reused:
                            raise
                        resp = self._send_once(method, path, body, hdrs)
                except socket.timeout as exc:
                    raise MultiboxConnectionError(
                        "%s %s: no answer within %s s (%s)" % (method, path, self.timeout, exc)) from None
                except (OSError, http.client.HTTPException) as exc:
                    raise MultiboxConnectionError(
                        "%s %s to %s:%d failed: %s: %s" % (method, path, self.host, self.port,
                                                          type(exc).__name__, exc)) from None
                if resp.status in ok:
                    return resp
                if resp.status == 503 and retry_503 and attempt < self.max_retries:
                    wait = parse_retry_after(resp.headers.get("retry-after"))
                    if wait is None:
                        wait = min(0.05 * (2 ** attempt), 1.0)
                    time.sleep(min(wait, self.max_retry_wait))
                    attempt += 1
                    self.retries_done += 1
                    continue
                raise error_from_response(resp.status, resp.body, resp.headers)
