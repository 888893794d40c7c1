-- wrk -t2 -c16 -d10s -s bench/pop.lua http://127.0.0.1:8080/q/bench-wrk
-- Pops until the time is up; counts the pops that found a message (200) apart from empty ones (204).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  popped, empty = 0, 0
end

function response(status, headers, body)
  if status == 200 then
    popped = popped + 1
  elseif status == 204 then
    empty = empty + 1
  end
end

function done(summary, latency, requests)
  local p, e = 0, 0
  for _, t in ipairs(threads) do
    p = p + t:get("popped")
    e = e + t:get("empty")
  end
  io.write(string.format("popped %d, empty %d: %.0f pops/s\n", p, e, p / (summary.duration / 1e6)))
end
