-- e2e_wrk.lua - wrk script of bench/run-e2e.sh: POSTs one prebuilt Open
-- Inference Protocol request with binary tensors (bench/e2e_prepare.py's
-- body) to /v2/models/multibox_loss/infer on every connection, as
-- tritonclient sends it (no Content-Type, Inference-Header-Content-Length),
-- and prints a machine-readable summary line at the end.
--
-- usage: E2E_BODY=FILE E2E_HEADER_LEN=N wrk -t2 -c32 -d10s --latency \
--          -s bench/e2e_wrk.lua http://127.0.0.1:PORT/v2/models/multibox_loss/infer

local path = os.getenv("E2E_BODY")
local header_len = os.getenv("E2E_HEADER_LEN")
if not path or not header_len then
  error("set E2E_BODY (request body file) and E2E_HEADER_LEN (its JSON header length)")
end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Inference-Header-Content-Length"] = header_len
wrk.headers["Content-Type"] = nil

local request_bytes = #body

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format(
    "wrk_summary requests=%d seconds=%.3f requests_per_s=%.2f " ..
    "mb_per_s_in=%.2f mb_per_s_out=%.2f mb_per_s_total=%.2f " ..
    "latency_p50_ms=%.3f latency_p99_ms=%.3f latency_max_ms=%.3f " ..
    "errors=%d connect=%d read=%d write=%d status=%d timeout=%d body_bytes=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    summary.requests * request_bytes / seconds / 1e6, summary.bytes / seconds / 1e6,
    (summary.requests * request_bytes + summary.bytes) / seconds / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    errors, e.connect, e.read, e.write, e.status, e.timeout, request_bytes))
end
