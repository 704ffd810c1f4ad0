#!/usr/bin/python3
"""Writes the request bodies of the soak mix into a folder (argument 1):
the tiny golden case as {"shape","data"} and as b64 tensors, the same with
a label out of range (422) and cut in half (400), a medium request (the
ssd300_voc anchors preset, one image, 3 classes, b64 tensors, seeded
random scores) and a body of JSON text larger than the server's limit
(argument 2, in bytes) but under 1 MiB, so the server reads and drops it
and keeps the connection.  Uses only Debian's python3 with numpy."""
import base64, json, os, sys

import numpy as np

out, limit = sys.argv[1], int(sys.argv[2])
golden = os.environ["MBX_GOLDEN_DIR"]
tiny = json.load(open(os.path.join(golden, "cases", "tiny.json")))["request"]


def b64(t, dtype="float32"):
    a = np.asarray(t["data"], dtype=np.float32).astype("<f4")
    return {"shape": t["shape"], "dtype": dtype, "b64": base64.b64encode(a.tobytes()).decode()}


def write(name, obj):
    text = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    with open(os.path.join(out, name), "w") as f:
        f.write(text)
    return len(text)


write("tiny.json", tiny)
t64 = dict(tiny)
for k in ("anchors", "loc", "conf"):
    if isinstance(t64[k], dict) and "data" in t64[k]:
        t64[k] = b64(t64[k])
t64["outputs"] = dict(t64.get("outputs", {}), tensor_format="b64")
write("tiny_b64.json", t64)
bad = json.loads(json.dumps(tiny))
bad["targets"][0]["labels"][0] = 99
write("bad_label.json", bad)
text = json.dumps(tiny, separators=(",", ":"))
write("malformed.json", text[: len(text) // 2])

rng = np.random.default_rng(6)
A, C = 8732, 3
loc = rng.normal(0, 0.5, (1, A, 4)).astype("<f4")
conf = rng.normal(0, 1, (1, A, C)).astype("<f4")
medium = {
    "anchors": {"preset": "ssd300_voc"},
    "loc": {"shape": [1, A, 4], "dtype": "float32", "b64": base64.b64encode(loc.tobytes()).decode()},
    "conf": {"shape": [1, A, C], "dtype": "float32", "b64": base64.b64encode(conf.tobytes()).decode()},
    "targets": [{"boxes": [[0.1, 0.1, 0.4, 0.5], [0.5, 0.3, 0.9, 0.8], [0.2, 0.6, 0.35, 0.95]],
                 "labels": [1, 2, 1], "difficult": [False, False, True]}],
    "outputs": {"gradients": "sparse", "per_image": True, "tensor_format": "b64"},
}
n = write("medium.json", medium)
assert n < limit, "the medium body must fit the soak's JSON limit"
big = limit + 64 * 1024
assert big < 1 << 20
write("oversized.json", '{"pad":"' + "x" * (big - 10) + '"}')
