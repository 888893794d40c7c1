-- wrk -t2 -c16 -d10s -s bench/pop.lua http://127.0.0.1:8080/q/bench-wrk
-- Counts the pops that found a message (200) apart from the empty ones (204).
local popped, empty = 0, 0
function response(status, headers, body)
  if status == 200 then popped = popped + 1 elseif status == 204 then empty = empty + 1 end
end
