-- wrk script: POST /v1/jobs with a zero-length sleep job, and count every answer that is not 202
-- so that a benchmark of errors (400/404/429/5xx) can never pass for a fast one.
-- Usage: wrk -s bench/post_job.lua http://127.0.0.1:PORT/v1/jobs

wrk.method = "POST"
wrk.body = '{"kind":"sleep","params":{"duration_ms":0}}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   ok202 = 0
   non202 = 0
   statuses = {}
end

function response(status, headers, body)
   if status == 202 then
      ok202 = ok202 + 1
   else
      non202 = non202 + 1
      local key = tostring(status)
      statuses[key] = (statuses[key] or 0) + 1
   end
end

function done(summary, latency, requests)
   local ok, bad, merged = 0, 0, {}
   for _, t in ipairs(threads) do
      ok = ok + t:get("ok202")
      bad = bad + t:get("non202")
      local s = t:get("statuses")
      for k, v in pairs(s) do
         merged[k] = (merged[k] or 0) + v
      end
   end
   local parts = {}
   for k, v in pairs(merged) do
      table.insert(parts, k .. "=" .. v)
   end
   table.sort(parts)
   -- One machine-readable line, parsed by bench/http_vs_nginx.sh.
   io.write(string.format("post_job: status_202=%d non_202=%d statuses=%s\n",
                          ok, bad, #parts > 0 and table.concat(parts, ",") or "-"))
end
