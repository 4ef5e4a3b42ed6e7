-- wrk script: POST the file named by the BENCH_IMAGE environment variable as multipart field "file".
local path = os.getenv("BENCH_IMAGE")
local f = assert(io.open(path, "rb"))
local image = f:read("*all")
f:close()
local boundary = "benchboundary7MA4YWxkTrZu0gW"
wrk.method = "POST"
wrk.path = "/predict"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = "--" .. boundary .. "\r\n"
  .. 'Content-Disposition: form-data; name="file"; filename="fish.jpg"\r\n'
  .. "Content-Type: image/jpeg\r\n\r\n" .. image .. "\r\n--" .. boundary .. "--\r\n"

function done(summary, latency, requests)
  io.write(string.format("BENCH %d %d %.3f %.3f %d\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
