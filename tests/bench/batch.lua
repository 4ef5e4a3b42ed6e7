-- wrk script: POST /predict/batch with BENCH_FILES copies of the file named by BENCH_IMAGE, each its own
-- multipart part named "file". The BENCH line reports requests; images are requests x BENCH_FILES.
local path = os.getenv("BENCH_IMAGE")
local files = tonumber(os.getenv("BENCH_FILES") or "8")
local f = assert(io.open(path, "rb"))
local image = f:read("*all")
f:close()
local boundary = "benchboundary7MA4YWxkTrZu0gW"
local parts = {}
for i = 1, files do
  parts[i] = "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="file"; filename="fish' .. i .. '.jpg"\r\n'
    .. "Content-Type: image/jpeg\r\n\r\n" .. image .. "\r\n"
end
wrk.method = "POST"
wrk.path = "/predict/batch"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = table.concat(parts) .. "--" .. boundary .. "--\r\n"

function done(summary, latency, requests)
  io.write(string.format("BENCH %d %d %.3f %.3f %d\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
