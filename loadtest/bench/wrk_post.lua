-- wrk script: POST the same JSON body on every request and print one parseable summary line.
-- The body is read from the file named by H2H_WRK_BODY (written by loadtest/bench/wrk_runner.py), e.g.
--   H2H_WRK_BODY=body.json wrk -t2 -c8 -d10s -s loadtest/bench/wrk_post.lua http://127.0.0.1:8000/v1/models/mha-small/predict
local path = os.getenv("H2H_WRK_BODY")
if path == nil then
  io.stderr:write("set H2H_WRK_BODY to a JSON request body file\n")
  os.exit(2)
end
local fh = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = fh:read("*a")
fh:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format("H2H_WRK requests=%d seconds=%.3f rps=%.2f p50_ms=%.3f p99_ms=%.3f non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, secs, summary.requests / secs, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.status, e.connect, e.read, e.write, e.timeout))
end
