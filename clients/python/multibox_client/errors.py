"""Exceptions of the multibox client and the parsing of the server's error bodies.

Every failure the server reports becomes a MultiboxError carrying the HTTP status and the
server's stable error code and message; failures below HTTP (refused connection, timeout,
connection dropped mid-answer) become MultiboxConnectionError, a subclass, with status None.
This module never performs I/O.
"""

import json

__all__ = ["MultiboxError", "MultiboxConnectionError", "error_from_response"]


class MultiboxError(Exception):
    """An error answer from the multibox service (or a failure to reach it).

    Attributes:
        status: HTTP status code (int), or None when no HTTP answer was received.
        code: the server's stable snake_case error code (e.g. "bad_label", "overloaded"),
            or "http_<status>" when the body carried none, or "connection_error".
        message: the server's message (what and where), or a description.
        retry_after: seconds from the Retry-After header of a 503, else None.
    """

    def __init__(self, status, code, message, retry_after=None):
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        where = "HTTP %d" % status if status is not None else "no answer"
        super().__init__("%s %s: %s" % (where, code, message))


class MultiboxConnectionError(MultiboxError):
    """The service could not be reached or dropped the connection (no HTTP status)."""

    def __init__(self, message):
        super().__init__(None, "connection_error", message)


def parse_retry_after(value):
    """Seconds to wait from a Retry-After header value (delta-seconds or HTTP-date).

    Returns None when the value is absent or unparseable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import email.utils
        import time

        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def error_from_response(status, body, headers=None):
    """Build the MultiboxError for a non-2xx answer.

    Understands both error bodies of the contract: {"error": {"code": .., "message": ..}}
    outside /v2 and {"error": "<code>: <message>"} on /v2. Anything else keeps the raw text
    (truncated) as the message and "http_<status>" as the code.
    """
    headers = headers or {}
    retry_after = parse_retry_after(headers.get("retry-after"))
    code = "http_%d" % status
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body or "")
    message = text.strip()[:2000] or "(empty body)"
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):
            code = str(err.get("code") or code)
            message = str(err.get("message") or "")
        elif isinstance(err, str):
            head, sep, tail = err.partition(": ")
            if sep and head and " " not in head:
                code, message = head, tail
            else:
                message = err
    return MultiboxError(status, code, message, retry_after)
