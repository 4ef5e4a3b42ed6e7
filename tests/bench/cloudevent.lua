-- wrk script: POST / a CloudEvent in binary mode (ce-* headers, the JPEG named by BENCH_IMAGE as the body).
-- The function classifies and logs each (source, id) once and answers a repeat from the log, so every request
-- carries a fresh ce-id: BENCH_RUN (unique per wrk run), the thread's number and a per-thread counter.
local path = os.getenv("BENCH_IMAGE")
local f = assert(io.open(path, "rb"))
local image = f:read("*all")
f:close()
local run = os.getenv("BENCH_RUN") or tostring(os.time())

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local sent = 0
wrk.method = "POST"
wrk.path = "/"
wrk.body = image
wrk.headers["Content-Type"] = "image/jpeg"
wrk.headers["ce-specversion"] = "1.0"
wrk.headers["ce-type"] = "com.example.fish.image.submitted"
wrk.headers["ce-source"] = "/bench"

function request()
  sent = sent + 1
  wrk.headers["ce-id"] = string.format("%s-%d-%d", run, thread_number, sent)
  return wrk.format()
end

function done(summary, latency, requests)
  io.write(string.format("BENCH %d %d %.3f %.3f %d\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
