#!/usr/bin/python3
"""Static checks that the Dockerfile, deploy/docker-compose.yml, deploy/nginx/nginx.conf and
deploy/k8s/*.yaml agree with each other and with what the issue asks of them: numeric non-root
user everywhere, the exposed port behind every probe and upstream, liveness on /livez and
readiness on /readyz, a grace period longer than preStop plus the drain, a security context
that drops everything, selectors that select the pods, nginx limits fitted to 512 MiB bodies and
replaying failed requests. Needs python3-yaml (a dependency of Debian's yamllint).

Usage: check_deploy.py [REPO_ROOT]. Prints "ok"/"not ok" lines, then "deploy: N passed, M failed".
"""

import json
import os
import re
import shlex
import sys

import yaml

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
if not os.path.isdir(os.path.join(ROOT, "deploy")):
    # The Docker build context leaves deploy/ out (.dockerignore): nothing to check there.
    print("deploy: SKIP, no deploy/ folder in this tree")
    sys.exit(77)
results = {"passed": 0, "failed": 0}


def check(what, cond):
    results["passed" if cond else "failed"] += 1
    print(f"{'ok' if cond else 'not ok'} - {what}")


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def seconds(text):
    """'45s', '2m', '500ms', '30' -> seconds (multiboxd's DURATION and compose's syntax)."""
    m = re.fullmatch(r"([0-9.]+)(ms|s|m|h)?", str(text).strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return float(m.group(1)) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def size_bytes(text):
    m = re.fullmatch(r"([0-9]+)([kKmMgG]?)", text)
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]


# --- Dockerfile ---------------------------------------------------------------------------
docker = {}
froms = []
lines = re.sub(r"\\\n", " ", read("Dockerfile")).splitlines()
for line in lines:
    if not line.strip() or line.lstrip().startswith("#"):
        continue
    word, _, rest = line.strip().partition(" ")
    word = word.upper()
    if word == "FROM":
        froms.append(rest.split())
    docker[word] = rest.strip()   # the last one wins, as in the final stage
check("build stage FROM debian:bookworm", froms and froms[0][0] == "debian:bookworm")
check("runtime stage FROM debian:bookworm-slim", froms and froms[-1][0] == "debian:bookworm-slim")
user = docker.get("USER", "")
check(f"USER {user!r} is numeric uid:gid and not root", re.fullmatch(r"[1-9][0-9]*:[0-9]+", user))
uid, _, gid = user.partition(":")
check("EXPOSE 8080", docker.get("EXPOSE") == "8080")
check("STOPSIGNAL SIGTERM", docker.get("STOPSIGNAL") == "SIGTERM")
entrypoint = json.loads(docker.get("ENTRYPOINT", "null") or "null")
check("ENTRYPOINT is exec form", isinstance(entrypoint, list) and entrypoint and entrypoint[0].startswith("/"))
hc = docker.get("HEALTHCHECK", "")
hc_cmd = json.loads(hc.partition(" CMD ")[2] or "null") if " CMD " in f" {hc}" else None
check("HEALTHCHECK is exec form running the server's own probe on /readyz",
      isinstance(hc_cmd, list) and entrypoint and hc_cmd[0] == entrypoint[0]
      and hc_cmd[1:] == ["--probe", "http://127.0.0.1:8080/readyz"])

# --- Kubernetes ---------------------------------------------------------------------------
k8s = {}
for name in sorted(os.listdir(os.path.join(ROOT, "deploy", "k8s"))):
    if name.endswith(".yaml"):
        for doc in yaml.safe_load_all(read(f"deploy/k8s/{name}")):
            if doc:
                k8s[doc["kind"]] = (name, doc)
for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Kustomization"):
    check(f"k8s has a {kind}", kind in k8s)
dep = k8s["Deployment"][1]
pod = dep["spec"]["template"]
labels = pod["metadata"]["labels"]
spec = pod["spec"]
(ctr,) = spec["containers"]
ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
check("Deployment selector selects its pods",
      dep["spec"]["selector"]["matchLabels"].items() <= labels.items())


def probe(name, path):
    p = ctr.get(name, {}).get("httpGet", {})
    port = ports.get(p.get("port"), p.get("port"))
    check(f"{name} GETs {path} on 8080", p.get("path") == path and port == 8080)


probe("livenessProbe", "/livez")
probe("readinessProbe", "/readyz")
check("startupProbe present", "httpGet" in ctr.get("startupProbe", {}))
res = ctr.get("resources", {})
check("CPU and memory requests and limits",
      all(k in res.get(t, {}) for t in ("requests", "limits") for k in ("cpu", "memory")))
psc, csc = spec.get("securityContext", {}), ctr.get("securityContext", {})
merged = {**psc, **csc}
check("runAsNonRoot", merged.get("runAsNonRoot") is True)
check(f"runAsUser {merged.get('runAsUser')} is the image's uid {uid}", str(merged.get("runAsUser")) == uid)
check("readOnlyRootFilesystem", csc.get("readOnlyRootFilesystem") is True)
check("allowPrivilegeEscalation false", csc.get("allowPrivilegeEscalation") is False)
check("capabilities drop ALL", csc.get("capabilities", {}).get("drop") == ["ALL"])
args = ctr.get("args", [])
drain = 30.0   # multiboxd's default --drain-timeout (api-contract.md)
for a in args:
    if a.startswith("--drain-timeout="):
        drain = seconds(a.partition("=")[2])
pre = ctr.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
pre_sleep = seconds(pre[-1]) if pre and pre[0].endswith("sleep") else 0
grace = spec.get("terminationGracePeriodSeconds", 30)
check(f"grace period {grace} s > preStop {pre_sleep:g} s + drain {drain:g} s", grace > pre_sleep + drain)
svc = k8s["Service"][1]
check("Service selects the pods", svc["spec"]["selector"].items() <= labels.items())
check("Service targets the container port",
      all(ports.get(p["targetPort"], p["targetPort"]) == 8080 for p in svc["spec"]["ports"]))
hpa = k8s["HorizontalPodAutoscaler"][1]
check("HPA is autoscaling/v2 on the Deployment's CPU",
      hpa["apiVersion"] == "autoscaling/v2"
      and hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
      and any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"]["metrics"]))
pdb = k8s["PodDisruptionBudget"][1]
check("PDB is policy/v1 and selects the pods",
      pdb["apiVersion"] == "policy/v1" and pdb["spec"]["selector"]["matchLabels"].items() <= labels.items())
kust = k8s["Kustomization"][1]
check("kustomization lists every manifest",
      sorted(kust["resources"]) == sorted({n for n, _ in k8s.values()} - {k8s["Kustomization"][0]}))

# --- compose and nginx --------------------------------------------------------------------
compose = yaml.safe_load(read("deploy/docker-compose.yml"))
services = compose["services"]
replicas = sorted(n for n, s in services.items() if s.get("image", "").startswith("multibox:"))
check(f"compose runs several replicas ({', '.join(replicas)})", len(replicas) >= 2)
for name in replicas:
    s = services[name]
    env = s.get("environment", {})
    d = seconds(env.get("MULTIBOX_DRAIN_TIMEOUT", "30"))
    check(f"{name}: stop_grace_period {s.get('stop_grace_period')} > drain {d:g} s",
          seconds(s.get("stop_grace_period", "10s")) > d)
    check(f"{name}: user {s.get('user', user)} matches the image", s.get("user", user) == user)

conf = re.sub(r"#[^\n]*", "", read("deploy/nginx/nginx.conf"))
directives = {}
for stmt in re.split(r"[;{}]", conf):
    words = shlex.split(stmt.strip()) if stmt.strip() else []
    if words:
        directives.setdefault(words[0], []).append(words[1:])
upstreams = sorted(w[0] for w in directives.get("server", []) if w and ":" in w[0])
check("nginx upstream is exactly the compose replicas on 8080",
      upstreams == sorted(f"{n}:8080" for n in replicas))
check("every upstream server has passive health checks",
      all(any(a.startswith("max_fails=") for a in w) and any(a.startswith("fail_timeout=") for a in w)
          for w in directives.get("server", []) if w and ":" in w[0]))
compose_nginx = [s for s in services.values() if str(s.get("image", "")).startswith("nginx")]
check("compose nginx mounts deploy/nginx/nginx.conf",
      compose_nginx and any(v.startswith("./nginx/nginx.conf:/etc/nginx/nginx.conf")
                            for v in compose_nginx[0].get("volumes", [])))
body = directives.get("client_max_body_size", [["0"]])[0][0]
check(f"client_max_body_size {body} >= 512 MiB", size_bytes(body) >= 512 << 20)
nxt = set(directives.get("proxy_next_upstream", [[]])[0])
check("proxy_next_upstream replays POSTs on errors, timeouts and 503",
      {"error", "timeout", "http_503", "non_idempotent"} <= nxt)
check("proxy_request_buffering on (needed to replay a body)",
      directives.get("proxy_request_buffering", [["on"]])[0] == ["on"])
read_timeout = seconds(directives.get("proxy_read_timeout", [["60s"]])[0][0])
check(f"proxy_read_timeout {read_timeout:g} s > multiboxd's request timeout (60 s)", read_timeout > 60)
check("keepalive to the upstreams (HTTP/1.1, no Connection header)",
      "keepalive" in directives and ["1.1"] in directives.get("proxy_http_version", [])
      and ["Connection", ""] in directives.get("proxy_set_header", []))

print(f"deploy: {results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
