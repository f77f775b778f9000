package cluster

import "github.com/redis/go-redis/v9"

// The scripts keep one session's lease in three keys under one hash tag
// (the session's name), so that a Redis Cluster would keep them in one
// slot:
//
//	<prefix>{<name>}    HASH  holder (ticket), until (ms, Redis time), chan (the holder's channel), fence
//	<prefix>{<name>}:q  LIST  waiting tickets, in arrival order
//	<prefix>{<name>}:w  HASH  ticket -> "<deadline ms>|<channel>" of each waiting ticket
//
// and <prefix>{<name>}:r, the name of the session a regenerated ID was
// linked to. <prefix>boot is the Redis time (ms) at which this Redis first
// served the protocol, which every node remembers from its replies: a
// node that finds another value has met a Redis that lost its data
// (restarted without persistence, failed over to a replica that missed
// writes), and is granted no new lease until a grace after the new boot
// (Coordinator.grace), so that holders from before the loss reclaim
// theirs first. A
// node keeps sending the boot it knew until that grace has passed (see
// Coordinator.sawReply), whatever the replies it gets meanwhile.
//
// Time is Redis's own (TIME): the nodes' clocks do not matter. Fences are
// max(fence+1, TIME in µs), so they keep increasing across expiries of the
// hash and restarts of Redis, unless Redis's clock steps back.

// prelude is shared by the scripts that grant: it reads the time, drops an
// expired holder, and defines grant and promote.
const prelude = `
local h, q, w = KEYS[1], KEYS[2], KEYS[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nowus = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[2])
local keep = tonumber(ARGV[3])

-- current_boot returns the Redis time at which this Redis first ran one of
-- these scripts (stored at key), setting it on the first call.
local function current_boot(key)
  local b = redis.call('GET', key)
  if not b then
    b = tostring(now)
    redis.call('SET', key, b)
  end
  return b
end

local function grant(tk, ch)
  local f = tonumber(redis.call('HGET', h, 'fence') or '0') + 1
  if f < nowus then f = nowus end
  f = string.format('%d', f)
  redis.call('HSET', h, 'holder', tk, 'until', now + ttl, 'chan', ch, 'fence', f)
  return f
end

-- promote grants the lease to the first waiter still alive and tells its
-- node, unless it is self, the caller; it returns the ticket's channel, or nil when nobody waits.
local function promote(name, self)
  while true do
    local tk = redis.call('LPOP', q)
    if not tk then return nil end
    local wv = redis.call('HGET', w, tk)
    redis.call('HDEL', w, tk)
    if wv then
      local sep = string.find(wv, '|', 1, true)
      if tonumber(string.sub(wv, 1, sep - 1)) > now then
        local ch = string.sub(wv, sep + 1)
        local f = grant(tk, ch)
        if tk ~= self then
          redis.call('PUBLISH', ch, 'g ' .. name .. ' ' .. tk .. ' ' .. f .. ' ' .. now)
        end
        return ch, tk, f
      end
    end
  end
end

local takeover = 0
local holder = redis.call('HGET', h, 'holder')
if holder and tonumber(redis.call('HGET', h, 'until')) <= now then
  redis.call('HDEL', h, 'holder', 'until', 'chan')
  holder = false
  takeover = 1
end

local function expire()
  redis.call('PEXPIRE', h, keep)
  redis.call('PEXPIRE', q, keep)
  redis.call('PEXPIRE', w, keep)
end
`

// acquireScript asks for a session's lease.
//
// KEYS: h, q, w, link, boot, check. ARGV: ticket, ttl ms, keep ms,
// channel, grace ms, waiter ttl ms, name, link ttl ms, the boot the node
// knows ("" if none), the node's secret check.
// Reply: {1, fence, takeover, boot, now} granted; {0, takeover, boot,
// now} queued (a grant "g <name> <ticket> <fence> <now>" will be
// published to the channel); {2, name} the session is linked to another
// name; {3, ms, boot, now} Redis lost its data recently: retry after ms;
// {4} other nodes use this prefix with another secret (check), so that
// their names for the same sessions differ from this node's: the check of
// the last acquire stands for a lease time, so that after every instance
// changed its secret the new one is refused that long at most.
// now is Redis's time in ms, by which the node dates pushed grants.
var acquireScript = redis.NewScript(prelude + `
local ticket, chan, name = ARGV[1], ARGV[4], ARGV[7]
local check = redis.call('GET', KEYS[6])
if check and check ~= ARGV[10] then
  return {4}
end
redis.call('SET', KEYS[6], ARGV[10], 'PX', ttl)
local link = redis.call('GET', KEYS[4])
if link then
  redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[8]))
  return {2, link}
end
if holder == ticket then
  -- Granted earlier (its push is late or lost): the lease counts from
  -- this call on, as the node dates it from when it sent the call.
  redis.call('HSET', h, 'until', now + ttl)
  expire()
  return {1, redis.call('HGET', h, 'fence'), 0, redis.call('GET', KEYS[5]) or '', now}
end
local boot = current_boot(KEYS[5])
if ARGV[9] ~= '' and ARGV[9] ~= boot and now < tonumber(boot) + tonumber(ARGV[5]) then
  return {3, tonumber(boot) + tonumber(ARGV[5]) - now, boot, now}
end
if not holder and redis.call('LLEN', q) == 0 then
  local f = grant(ticket, chan)
  redis.call('HDEL', w, ticket)
  expire()
  return {1, f, takeover, boot, now}
end
if redis.call('HEXISTS', w, ticket) == 0 then
  redis.call('RPUSH', q, ticket)
end
redis.call('HSET', w, ticket, (now + tonumber(ARGV[6])) .. '|' .. chan)
if holder then
  redis.call('PUBLISH', redis.call('HGET', h, 'chan'), 'c ' .. name)
else
  local _, tk, f = promote(name, ticket)
  if tk == ticket then
    expire()
    return {1, f, takeover, boot, now}
  end
end
expire()
return {0, takeover, boot, now}
`)

// releaseScript gives a lease back, or withdraws a waiting ticket.
//
// KEYS: h, q, w. ARGV: ticket, ttl ms, keep ms, channel (the releaser's),
// name. Reply: {0} the ticket held nothing; {1} released, nobody waits; {2}
// released to a waiter of another node; {3} released to a waiter of this
// node.
var releaseScript = redis.NewScript(prelude + `
local ticket, chan, name = ARGV[1], ARGV[4], ARGV[5]
if holder == ticket then
  redis.call('HDEL', h, 'holder', 'until', 'chan')
  local ch = promote(name, ticket)
  expire()
  if not ch then return {1} end
  if ch == chan then return {3} end
  return {2}
end
if redis.call('HDEL', w, ticket) == 1 then
  redis.call('LREM', q, 0, ticket)
end
if not holder then promote(name, ticket) end
return {0}
`)

// renewScript extends a held lease.
//
// KEYS: h, q, w, boot. ARGV: ticket, ttl ms, keep ms, channel, grace ms,
// the boot the node knows. Reply: {1, waiting} renewed, with how many
// tickets wait; {2, fence} reclaimed after Redis lost the lease (within
// the grace after a new boot), under a new fence; {0} lost.
var renewScript = redis.NewScript(prelude + `
local ticket, chan = ARGV[1], ARGV[4]
if holder == ticket then
  redis.call('HSET', h, 'until', now + ttl)
  expire()
  return {1, redis.call('LLEN', q)}
end
if holder or takeover == 1 then
  return {0}
end
local boot = current_boot(KEYS[4])
if ARGV[6] ~= '' and boot ~= ARGV[6] and now < tonumber(boot) + tonumber(ARGV[5]) then
  local f = grant(ticket, chan)
  expire()
  return {2, f}
end
return {0}
`)
