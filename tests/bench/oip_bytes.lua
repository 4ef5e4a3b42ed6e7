-- wrk script: Open Inference Protocol infer with the JPEG named by BENCH_IMAGE as a BYTES [1] input, in the binary
-- tensor data extension as tritonclient sends it: the JSON header (its length in Inference-Header-Content-Length),
-- then the element as a 4-byte little-endian length and the bytes; the output asked for as binary data too.
local path = os.getenv("BENCH_IMAGE")
local model = os.getenv("BENCH_MODEL") or "bench-mobilenetv2"
local f = assert(io.open(path, "rb"))
local image = f:read("*all")
f:close()

local function uint32_le(n)
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, math.floor(n / 16777216) % 256)
end

local header = string.format(
  '{"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":%d}}],'
    .. '"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}', 4 + #image)
wrk.method = "POST"
wrk.path = "/v2/models/" .. model .. "/infer"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = tostring(#header)
wrk.body = header .. uint32_le(#image) .. image

function done(summary, latency, requests)
  io.write(string.format("BENCH %d %d %.3f %.3f %d\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
