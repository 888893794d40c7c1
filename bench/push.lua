-- wrk -t2 -c16 -d10s -s bench/push.lua http://127.0.0.1:8080/q/bench-wrk
wrk.method = "POST"
wrk.body = string.rep("x", 100)
