-- wrk script: POST the file named by BENCH_IMAGE to /predict as post.lua does, counting each answer's status and
-- whether a 503 carried Retry-After (response() runs in each thread; done() adds the threads' counts up).
-- post.lua's request (BENCH_SCRIPTS: this folder); its done() is replaced below.
dofile(os.getenv("BENCH_SCRIPTS") .. "/post.lua")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  retry_after = 0
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 503 and (headers["retry-after"] or headers["Retry-After"]) then
    retry_after = retry_after + 1
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("OVERLOAD %d %d %d %d %d %d %.3f\n", summary.requests, summary.duration, e.connect,
    e.read, e.write, e.timeout, latency:percentile(99) / 1000))
  local total, retry = {}, 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
    retry = retry + thread:get("retry_after")
  end
  for status, count in pairs(total) do
    io.write(string.format("STATUS %d %d\n", status, count))
  end
  io.write(string.format("RETRY_AFTER %d\n", retry))
end
