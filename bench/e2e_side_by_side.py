#!/usr/bin/python3
"""Times, side by side and interleaved, torchvision 0.14 computing the SSD loss
and its gradients locally (bench/torchvision_loss.py's own steps: matching,
SSD.compute_loss, backward, on --threads threads) and the remote loss through
multiboxd over loopback (bench/e2e_bench, from the client's first byte sent to
its last byte received), on the same inputs (a multibox-bench dump and the
bodies bench/e2e_prepare.py made from it).

Each round runs torchvision once, then every case once (in an order rotated
from round to round), so a noisy neighbour hits all sides alike.  Prints each
side's median, min, p10, p90 and max in ms, the ratios of the targets, and
checks that every answer carries the loss torchvision computes.

usage: e2e_side_by_side.py --client E2E_BENCH --port P --dump DUMP
                           [--rounds N] [--warmup W] [--threads T] CASE...
  CASE as for e2e_bench (NAME=PATH,CONTENT_TYPE,HEADER_LEN,BODY_FILE); the
  names PREFIX_v1, PREFIX_bin and PREFIX_fp16 get the target ratios.  A
  name ending in _floor is timed in the same rounds but is not multiboxd
  (bench/run-e2e.sh's loopback floor, bench/e2e_floor): no ratio, no loss.
Run with Debian's /usr/bin/python3 (torch, torchvision, numpy).
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torchvision_loss as tvl  # noqa: E402  (exits 3 when torch is missing)


def spread(v):
    v = sorted(v)
    q = statistics.quantiles(v, n=10, method="inclusive") if len(v) > 1 else [v[0]] * 9
    return statistics.median(v), v[0], q[0], q[-1], v[-1]


def answer_loss(path, header_len):
    """The loss of a saved answer: /v1 JSON, or an OIP answer (JSON or binary)."""
    with open(path, "rb") as f:
        body = f.read()
    if header_len < 0:
        doc = json.loads(body)
        if "outputs" not in doc:
            return float(doc["loss"])
        out = next(o for o in doc["outputs"] if o["name"] == "loss")
        return float(out["data"][0])
    head = json.loads(body[:header_len])
    pos = header_len
    for o in head["outputs"]:
        size = o.get("parameters", {}).get("binary_data_size")
        if o["name"] == "loss":
            if size is None:
                return float(o["data"][0])
            return struct.unpack_from("<f", body, pos)[0]
        pos += size or 0
    raise ValueError("no loss output")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--client", required=True)
    ap.add_argument("--port", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--settle", type=float, default=0.2,
                    help="seconds of pause after each torchvision run (its threads go idle)")
    ap.add_argument("cases", nargs="+")
    args = ap.parse_args()

    names = [c.split("=", 1)[0] for c in args.cases]
    client = subprocess.Popen([args.client, "--port", args.port] + args.cases,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(line):
        client.stdin.write(line + "\n")
        client.stdin.flush()
        reply = client.stdout.readline()
        if not reply:
            sys.exit(f"e2e_bench stopped (command: {line})")
        return reply.split()

    tvl.torch.set_num_threads(args.threads)
    req, anchors, loc0, conf0, targets = tvl.load_request(args.dump)
    model = tvl.LossOnly()
    anchors_list = [anchors] * loc0.shape[0]
    print(f"torchvision {tvl.torchvision.__version__} torch {tvl.torch.__version__} "
          f"threads={tvl.torch.get_num_threads()} batch={loc0.shape[0]} anchors={loc0.shape[1]} "
          f"classes={conf0.shape[2]} rounds={args.rounds} warmup={args.warmup}")

    times = {n: [] for n in ["torchvision"] + names}
    tv_loss = None
    for r in range(-args.warmup, args.rounds):
        tm, tl, outcome = tvl.forward_backward(model, anchors_list, loc0, conf0, targets)
        if tv_loss is None:
            tv_loss = outcome[0]
        time.sleep(args.settle)
        k = r % len(names)
        for name in names[k:] + names[:k]:
            reply = ask(f"run {name}")
            ms = float(reply[2].split("=")[1])
            if r >= 0:
                times[name].append(ms)
        if r >= 0:
            times["torchvision"].append((tm + tl) * 1e3)

    print(f"{'side':<24} {'median':>9} {'min':>9} {'p10':>9} {'p90':>9} {'max':>9}  (ms, "
          f"{args.rounds} runs each)")
    med = {}
    for name, v in times.items():
        m, lo, p10, p90, hi = spread(v)
        med[name] = m
        print(f"{name:<24} {m:9.3f} {lo:9.3f} {p10:9.3f} {p90:9.3f} {hi:9.3f}")
    for name in names:
        print(f"median_ms {name}={med[name]:.3f}")
    print(f"median_ms torchvision={med['torchvision']:.3f}")

    # The targets, from the medians.
    ours = [n for n in names if not n.endswith("_floor")]
    prefix = {n.rsplit("_", 1)[0] for n in ours}
    for p in sorted(prefix):
        tv = med["torchvision"]
        checks = []
        if f"{p}_bin" in med:
            checks.append((f"{p}_bin / torchvision", med[f"{p}_bin"] / tv, 0.33))
        if f"{p}_v1" in med and f"{p}_bin" in med:
            checks.append((f"{p}_v1 / {p}_bin", med[f"{p}_v1"] / med[f"{p}_bin"], 1.5))
        if f"{p}_fp16" in med:
            checks.append((f"{p}_fp16 / torchvision", med[f"{p}_fp16"] / tv, 0.15))
        if f"{p}_v1" in med:
            checks.append((f"{p}_v1 / torchvision", med[f"{p}_v1"] / tv, None))
        for label, ratio, target in checks:
            verdict = "" if target is None else (
                f"target <= {target}: {'met' if ratio <= target else 'MISSED'}")
            print(f"ratio {label} = {ratio:.3f}  {verdict}")

    # Every answer carries torchvision's loss: the float64 run on the same
    # float32 inputs (the golden cases' method; torchvision in float32 may
    # resolve IoU near-ties differently).  FP16 inputs are rounded: looser.
    f64_loss = tvl.reference_float64(model, anchors, loc0, conf0, targets)[0]
    print(f"torchvision loss: float32 {tv_loss:.9g}, float64 {f64_loss:.12g}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ours:
            path = os.path.join(tmp, name)
            reply = ask(f"save {name} {path}")
            header_len = int(reply[3].split("=")[1])
            loss = answer_loss(path, header_len)
            rel = abs(loss - f64_loss) / max(abs(f64_loss), 1e-30)
            tol = 1e-3 if name.endswith("fp16") else 1e-5
            print(f"loss {name}={loss:.9g} relative_difference_vs_torchvision_float64={rel:.2e} "
                  f"{'ok' if rel <= tol else 'DIFFERS'}")
    client.stdin.close()
    client.wait()


if __name__ == "__main__":
    main()
