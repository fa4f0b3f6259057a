-- wrk script for bench/exchange.py: replay pre-built HTTP requests, each once.
--
--   wrk -c 16 -t 2 -d 10s -s bench/exchange.lua URL -- REQUESTS_FILE THREADS
--
-- REQUESTS_FILE holds complete raw requests, each as "<length>\n<bytes>" (written
-- by bench/_wrk.py). Thread i of THREADS takes requests i, i + THREADS, ..., so no
-- request (single-use token, DPoP proof) is sent twice while the file lasts. When a
-- thread has sent all of its own it starts again from its first and counts
-- `ran_out`: those requests are replays, which the servers must refuse.
--
-- With the environment variable BENCH_RATE (requests/s for the whole run) each
-- thread paces its connections through delay(): every request claims the thread's
-- next slot, THREADS / BENCH_RATE seconds after the previous one (never earlier
-- than now, so a late slot is not made up by a burst). Latency is still measured
-- from when the request is written, not from its slot (no correction for
-- coordinated omission, unlike wrk2).
--
-- done() prints one line "BENCH-RESULT {json}" for bench/_wrk.py.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

-- main state: one entry per thread, to collect their counters in done()
local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

-- thread state
local requests = {}
local position = 0
local thread_total = 1
sent = 0
ran_out = 0
statuses = {}

function init(args)
  local path, thread_count = args[1], tonumber(args[2])
  thread_total = thread_count
  local file = assert(io.open(path, "rb"))
  local number = 0
  while true do
    local length = file:read("*l")
    if not length then
      break
    end
    local raw = file:read(tonumber(length))
    if number % thread_count == thread_index then
      requests[#requests + 1] = raw
    end
    number = number + 1
  end
  file:close()
  assert(#requests > 0, "no requests for thread " .. thread_index .. " in " .. path)
end

function request()
  position = position + 1
  if position > #requests then
    position = 1
  end
  sent = sent + 1
  if sent > #requests then
    ran_out = ran_out + 1
  end
  return requests[position]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local rate = tonumber(os.getenv("BENCH_RATE") or "")
if rate and rate > 0 then
  local interval -- ms between this thread's requests
  local next_slot = nil

  function delay()
    interval = interval or 1000 * thread_total / rate
    local now = now_ms()
    next_slot = math.max((next_slot or now) + interval, now)
    return math.floor(next_slot - now + 0.5)
  end
end

local function json_object(entries)
  local parts = {}
  for key, value in pairs(entries) do
    parts[#parts + 1] = string.format('"%s": %s', tostring(key), tostring(value))
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, _)
  local all_statuses, totals = {}, { sent = 0, ran_out = 0 }
  for _, thread in ipairs(threads) do
    totals.sent = totals.sent + thread:get("sent")
    totals.ran_out = totals.ran_out + thread:get("ran_out")
    for status, count in pairs(thread:get("statuses")) do
      all_statuses[status] = (all_statuses[status] or 0) + count
    end
  end
  local percentiles = {}
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    percentiles['p' .. p] = latency:percentile(p)
  end
  percentiles.mean, percentiles.max = latency.mean, latency.max
  io.write("BENCH-RESULT ", json_object({
    responses = summary.requests,
    duration_us = summary.duration,
    sent = totals.sent,
    ran_out = totals.ran_out,
    statuses = json_object(all_statuses),
    socket_errors = json_object(summary.errors),
    latency_us = json_object(percentiles),
  }), "\n")
end
