-- wrk script: the Cookie header of each request, by SQ_MODE:
-- unique (a new random PHPSESSID each time), many (one of 1,000),
-- hot (always the same one), none (no session cookie).
local mode = os.getenv("SQ_MODE") or "unique"
local chars = "0123456789abcdefghijklmnopqrstuv"
local function id(n)
  local t = {}
  for i = 1, 26 do
    local k = (n % 32) + 1
    n = math.floor(n / 32) + math.random(0, 1000)
    t[i] = chars:sub(k, k)
  end
  return table.concat(t)
end
local pool = {}
init = function(args)
  math.randomseed(os.time() + math.random(1, 1e6))
  for i = 1, 1000 do pool[i] = id(i * 7919) end
end
request = function()
  local cookie = "_ga=GA1.2.3"
  if mode == "unique" then
    cookie = cookie .. "; PHPSESSID=" .. id(math.random(1, 2^30))
  elseif mode == "many" then
    cookie = cookie .. "; PHPSESSID=" .. pool[math.random(1, 1000)]
  elseif mode == "hot" then
    cookie = cookie .. "; PHPSESSID=" .. pool[1]
  end
  return wrk.format("GET", "/", {["Cookie"] = cookie})
end
