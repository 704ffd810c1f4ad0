-- wrk script of the soak (tests/soak/soak.sh): a fixed cycle of valid,
-- invalid and oversized requests.  Each answer's status must be one the
-- cycle can produce, never 5xx, and each 200 of a loss request must be
-- byte-identical to the answer taken before the soak (SOAK_DIR/expected-*).
-- done() prints one line "SOAK_RESULT key=value ..." that soak.sh parses.

local dir = os.getenv("SOAK_DIR")

local function slurp(name)
  local f = assert(io.open(dir .. "/" .. name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local json_h = { ["Content-Type"] = "application/json" }
local bodies = {
  tiny = slurp("tiny.json"), tiny_b64 = slurp("tiny_b64.json"), medium = slurp("medium.json"),
  bad_label = slurp("bad_label.json"), malformed = slurp("malformed.json"),
  oversized = slurp("oversized.json"),
}
-- The 200 bodies a loss or anchors request may give.
local valid = {}
for _, name in ipairs({ "tiny", "tiny_b64", "medium", "anchors" }) do
  valid[slurp("expected-" .. name)] = true
end

-- One cycle of 20 requests: 13 valid, 7 invalid or oversized.
local cycle = {
  { "POST", "/v1/loss", json_h, bodies.tiny },
  { "POST", "/v1/loss", json_h, bodies.tiny },
  { "POST", "/v1/loss", json_h, bodies.tiny_b64 },
  { "POST", "/v1/loss", json_h, bodies.medium },
  { "GET", "/v1/anchors/ssd300_voc?tensor_format=b64", {}, nil },
  { "POST", "/v1/loss", json_h, bodies.malformed },
  { "POST", "/v1/loss", json_h, bodies.tiny },
  { "POST", "/v1/loss", json_h, bodies.bad_label },
  { "GET", "/livez", {}, nil },
  { "POST", "/v1/loss", json_h, bodies.tiny_b64 },
  { "POST", "/v1/loss", json_h, bodies.oversized },
  { "POST", "/v1/loss", { ["Content-Type"] = "text/plain" }, bodies.tiny },
  { "POST", "/v1/loss", json_h, bodies.tiny },
  { "GET", "/no/such/path", {}, nil },
  { "POST", "/v1/loss", json_h, bodies.medium },
  { "GET", "/v1/loss", {}, nil },
  { "GET", "/metrics", {}, nil },
  { "POST", "/v1/loss", json_h, bodies.tiny },
  { "GET", "/v2/health/ready", {}, nil },
  { "POST", "/v1/loss", json_h, bodies.tiny },
}
local allowed = { [200] = true, [400] = true, [404] = true, [405] = true, [413] = true,
                  [415] = true, [422] = true }

local threads = {}
local formatted, i
-- Globals, so done() can read them from each thread with thread:get().
counts, server_errors, unexpected, mismatched = {}, 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  formatted = {}
  for k, r in ipairs(cycle) do
    formatted[k] = wrk.format(r[1], r[2], r[3], r[4])
  end
  i = id * 7 -- threads start at different places of the cycle
  counts, server_errors, unexpected, mismatched = {}, 0, 0, 0
end

function request()
  i = i + 1
  return formatted[(i % #formatted) + 1]
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status >= 500 then
    server_errors = server_errors + 1
  elseif not allowed[status] then
    unexpected = unexpected + 1
  elseif status == 200 and (body:sub(1, 8) == '{"loss":' or body:sub(1, 9) == '{"shape":')
      and not valid[body] then
    mismatched = mismatched + 1
  end
end

function done(summary, latency, requests)
  local total, s5, un, mm = 0, 0, 0, 0
  local by = {}
  for _, t in ipairs(threads) do
    s5 = s5 + t:get("server_errors")
    un = un + t:get("unexpected")
    mm = mm + t:get("mismatched")
    for code, n in pairs(t:get("counts")) do
      by[code] = (by[code] or 0) + n
      total = total + n
    end
  end
  local parts = {}
  for code, n in pairs(by) do
    table.insert(parts, string.format("%d:%d", code, n))
  end
  table.sort(parts)
  io.write(string.format(
    "SOAK_RESULT answers=%d server_errors=%d unexpected=%d mismatched=%d " ..
    "socket_errors=%d statuses=%s p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    total, s5, un, mm,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout,
    table.concat(parts, ","), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
