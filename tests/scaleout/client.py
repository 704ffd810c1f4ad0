#!/usr/bin/python3
"""Load client of the nginx scale-out test (scripts/scaleout-test.sh).

Sends a bounded stream of POST /v1/loss requests (a golden case's request body) through nginx
from a few concurrent keep-alive connections, SIGTERMs one replica once a given number of
answers has come back, and checks every answer: status 200 and the golden case's loss, parts
and counts (losses within a relative 1e-5, counts exactly). Standard library only.

Usage: client.py URL CASE_JSON TOTAL CONCURRENCY KILL_AFTER KILL_PID
Prints one line per failure, then "scaleout: N passed, M failed"; exits 1 on any failure.
"""

import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.parse


def close(got, want):
    return abs(got - want) <= 1e-5 * max(abs(want), 1e-30)


def check(body, expected):
    """Returns None when the answer matches the golden case, else what differs."""
    try:
        got = json.loads(body)
    except ValueError as err:
        return f"not JSON: {err}"
    for key in ("loss", "conf_loss", "loc_loss", "normalizer"):
        if not isinstance(got.get(key), (int, float)) or not close(got[key], expected[key]):
            return f"{key} {got.get(key)!r} != {expected[key]!r}"
    for key in ("num_positives", "num_negatives"):
        if got.get(key) != expected[key]:
            return f"{key} {got.get(key)!r} != {expected[key]!r}"
    return None


def main():
    url, case_path, total, concurrency, kill_after, kill_pid = sys.argv[1:7]
    total, concurrency, kill_after, kill_pid = int(total), int(concurrency), int(kill_after), int(kill_pid)
    with open(case_path, encoding="utf-8") as f:
        case = json.load(f)
    body = json.dumps(case["request"]).encode()
    expected = case["expected"]
    target = urllib.parse.urlsplit(url)

    lock = threading.Lock()
    state = {"next": 0, "done": 0, "passed": 0, "failed": 0}
    kill_now = threading.Event()

    def worker():
        conn = None
        while True:
            with lock:
                if state["next"] >= total:
                    break
                index = state["next"]
                state["next"] += 1
            problem = None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                conn.request("POST", target.path, body=body,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    problem = f"HTTP {resp.status}: {data[:200]!r}"
                else:
                    problem = check(data, expected)
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as err:
                problem = f"{type(err).__name__}: {err}"
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                state["done"] += 1
                if problem is None:
                    state["passed"] += 1
                else:
                    state["failed"] += 1
                    print(f"request {index}: {problem}", flush=True)
                if state["done"] == kill_after:
                    kill_now.set()
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.monotonic()
    for t in threads:
        t.start()
    if kill_after < total:
        kill_now.wait()
        with lock:
            in_flight = state["next"] - state["done"]
        print(f"scaleout: SIGTERM to replica pid {kill_pid} after {kill_after} answers "
              f"({in_flight} requests in flight)", flush=True)
        os.kill(kill_pid, signal.SIGTERM)
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    print(f"scaleout: {total} requests in {elapsed:.2f} s from {concurrency} connections",
          flush=True)
    print(f"scaleout: {state['passed']} passed, {state['failed']} failed", flush=True)
    return 0 if state["failed"] == 0 and state["passed"] == total else 1


if __name__ == "__main__":
    sys.exit(main())
