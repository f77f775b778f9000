-- wrk script: the Cookie header of each request, by SQ_MODE:
-- unique (a new PHPSESSID each time, never repeated), many (one of 1,000,
-- the same 1,000 in every thread), hot (always the same one), none (no
-- session cookie).
local mode = os.getenv("SQ_MODE") or "unique"
local chars = "0123456789abcdefghijklmnopqrstuv"

-- base32 writes n in width characters of chars.
local function base32(n, width)
  local t = {}
  for i = width, 1, -1 do
    local k = (n % 32) + 1
    n = math.floor(n / 32)
    t[i] = chars:sub(k, k)
  end
  return table.concat(t)
end

local function random_chars(width)
  local t = {}
  for i = 1, width do
    local k = math.random(1, 32)
    t[i] = chars:sub(k, k)
  end
  return table.concat(t)
end

-- Each thread runs in a Lua state of its own, whose math.random starts
-- from the same seed: an ID made of random draws alone would be drawn by
-- every thread at about the same time, and its requests would queue
-- behind each other. A unique ID is the thread's number, a counter and
-- random characters (26 in all, as PHP's).
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local pool = {}
local sent = 0
init = function(args)
  math.randomseed(1) -- the same pool of 1,000 in every thread
  for i = 1, 1000 do pool[i] = random_chars(26) end
  math.randomseed(os.time() * 1000 + (thread_number or 0))
end

request = function()
  local cookie = "_ga=GA1.2.3"
  if mode == "unique" then
    sent = sent + 1
    cookie = cookie .. "; PHPSESSID=" .. base32(thread_number or 0, 2) .. base32(sent, 6) .. random_chars(18)
  elseif mode == "many" then
    cookie = cookie .. "; PHPSESSID=" .. pool[math.random(1, 1000)]
  elseif mode == "hot" then
    cookie = cookie .. "; PHPSESSID=" .. pool[1]
  end
  return wrk.format("GET", "/", {["Cookie"] = cookie})
end
