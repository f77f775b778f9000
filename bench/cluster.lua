-- wrk script of bench/cluster.sh: the Cookie header of each request, by
-- SQ_MODE: unique (a new PHPSESSID on every request), many (one of 1,000
-- sessions, the same 1,000 in every wrk process, so that two wrk processes
-- against two instances share sessions), hot (one session for all).
-- SQ_SEED tells concurrent wrk processes apart; setup numbers the threads,
-- whose Lua states would otherwise draw the same random numbers.
local mode = os.getenv("SQ_MODE") or "unique"
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end
local seq = 0
init = function(args)
  math.randomseed(os.time() * 1000 + (tonumber(os.getenv("SQ_SEED")) or 0) * 100 + thread_number)
  prefix = string.format("u%02d%02d", tonumber(os.getenv("SQ_SEED")) or 0, thread_number)
end
request = function()
  local id
  if mode == "unique" then
    seq = seq + 1
    id = prefix .. string.format("%08x%013d", math.random(0, 2^31 - 1), seq)
  elseif mode == "many" then
    id = string.format("m%025d", math.random(1, 1000))
  else
    id = string.format("h%025d", 0)
  end
  return wrk.format("GET", "/", {["Cookie"] = "_ga=GA1.2.3; PHPSESSID=" .. id})
end
