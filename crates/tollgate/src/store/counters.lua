-- tollgate's counters in Redis: one script, so every call is atomic.
-- ARGV[1] = op (reserve | settle | release | seed | view | expire), ARGV[2] = now_ms, then per op:
--   reserve: lease_ms, n, then n asks of 6 fields: key, kind, a, b, limit, amount; then the lease id
--   settle:  lease, n, then n asks of 6 fields and n used amounts
--   release: lease
--   seed:    key, kind, a, b, limit, then pairs of (second, amount); once per counter
--            (reserve answers 'unseeded' for a sum counter never seeded: Redis lost it)
--   view:    key, kind, a, b, limit
--   expire:  (nothing)
-- kinds: W = window [a, b) with limit; R = rolling over a ms with limit; T = token bucket of capacity a over b ms.
-- limit -1 = none. Numbers are integers well below 2^53 (exact in Lua's doubles).
local P = KEYS[1] or 'tg:'
local op = ARGV[1]
local now = tonumber(ARGV[2])

-- Lua prints numbers with 14 digits: every number stored goes through this (exact to 2^53).
local function s(x) return string.format('%d', x) end
local function ckey(k) return P .. 'c:' .. k end
local function skey(k) return P .. 's:' .. k end

-- Brings a counter to now; returns spent, reserved (or used units for T).
local function roll(k, kind, a, b)
  local h = ckey(k)
  if kind == 'W' then
    local ws = tonumber(redis.call('HGET', h, 'ws') or '-1')
    if ws ~= a and a >= ws then
      redis.call('HSET', h, 'ws', s(a), 'spent', 0)
    end
    return tonumber(redis.call('HGET', h, 'spent') or '0'), tonumber(redis.call('HGET', h, 'res') or '0')
  elseif kind == 'R' then
    -- Spend per second in skey(k); 'rsum' is their running total and 'rlo'
    -- the oldest second that may still be there, so a roll touches only the
    -- seconds that left the window since the last one (not the whole hash).
    local sk = skey(k)
    local keep_from = math.ceil((now - a) / 1000)
    local rsum = tonumber(redis.call('HGET', h, 'rsum') or '-1')
    local lo = tonumber(redis.call('HGET', h, 'rlo') or s(keep_from))
    if rsum < 0 or keep_from - lo > redis.call('HLEN', sk) then
      -- Not tracked yet (just seeded), or idle longer than the hash is long: one scan.
      rsum = 0
      local all = redis.call('HGETALL', sk)
      for i = 1, #all, 2 do
        if tonumber(all[i]) < keep_from then
          redis.call('HDEL', sk, all[i])
        else
          rsum = rsum + tonumber(all[i + 1])
        end
      end
      redis.call('HSET', h, 'rsum', s(rsum), 'rlo', s(keep_from))
    elseif keep_from > lo then
      for sec = lo, keep_from - 1 do
        local v = redis.call('HGET', sk, s(sec))
        if v then
          rsum = rsum - tonumber(v)
          redis.call('HDEL', sk, s(sec))
        end
      end
      redis.call('HSET', h, 'rsum', s(rsum), 'rlo', s(keep_from))
    end
    return rsum, tonumber(redis.call('HGET', h, 'res') or '0')
  else
    local cap = a * b
    local level = tonumber(redis.call('HGET', h, 'level') or s(cap))
    local at = tonumber(redis.call('HGET', h, 'at') or s(now))
    if now > at then
      level = math.min(cap, level + (now - at) * a)
      at = now
    end
    redis.call('HSET', h, 'level', s(level), 'at', s(at))
    return level, 0
  end
end

local function add_spent(k, kind, a, b, n)
  if kind == 'T' then
    local h = ckey(k)
    local level = tonumber(redis.call('HGET', h, 'level')) - n * b
    redis.call('HSET', h, 'level', s(math.min(level, a * b)))
  elseif kind == 'R' then
    redis.call('HINCRBY', skey(k), s(math.floor(now / 1000)), s(n))
    redis.call('HINCRBY', ckey(k), 'rsum', s(n))
  else
    redis.call('HINCRBY', ckey(k), 'spent', s(n))
  end
end

local function view(k, kind, a, b)
  local x, res = roll(k, kind, a, b)
  if kind == 'T' then
    return {math.floor((a * b - x) / math.max(b, 1)), 0}
  end
  return {x, res}
end

local function give_back(id)
  local l = P .. 'l:' .. id
  local asks = redis.call('LRANGE', l, 0, -1)
  for i = 1, #asks, 6 do
    local k, kind, a, b, amt = asks[i], asks[i + 1], tonumber(asks[i + 2]), tonumber(asks[i + 3]), tonumber(asks[i + 5])
    roll(k, kind, a, b)
    if kind == 'T' then add_spent(k, kind, a, b, -amt) else redis.call('HINCRBY', ckey(k), 'res', s(-amt)) end
  end
  redis.call('DEL', l)
  redis.call('ZREM', P .. 'leases', id)
end

local function expire()
  -- At most 500 per call, so one call stays short; later calls take the rest.
  local ids = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', s(now), 'LIMIT', 0, 500)
  for _, id in ipairs(ids) do give_back(id) end
  return #ids
end

if op == 'expire' then
  return expire()
elseif op == 'reserve' then
  expire()
  local lease_ms, n = tonumber(ARGV[3]), tonumber(ARGV[4])
  local remaining = {}
  for i = 0, n - 1 do
    local o = 5 + i * 6
    local k, kind, a, b, limit, amt = ARGV[o], ARGV[o + 1], tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4]), tonumber(ARGV[o + 5])
    if kind ~= 'T' and redis.call('HEXISTS', ckey(k), 'seeded') == 0 then
      return {'unseeded', i}
    end
    local x, res = roll(k, kind, a, b)
    if kind == 'T' then
      if amt > a then return {'wait', i, b} end
      local need = amt * b
      if need > x then return {'wait', i, math.ceil((need - x) / math.max(a, 1))} end
    elseif limit >= 0 then
      local left = limit - x - res
      if left < amt then
        local resets = b
        if kind == 'R' then
          local oldest = nil
          local all = redis.call('HKEYS', skey(k))
          for _, s in ipairs(all) do
            local v = tonumber(s)
            if oldest == nil or v < oldest then oldest = v end
          end
          resets = oldest and (oldest * 1000 + a) or now
        end
        return {'full', i, left, resets}
      end
    end
  end
  -- The caller's random id: unique across Redis restarts, unlike a counter here.
  local id = ARGV[5 + n * 6]
  local l = P .. 'l:' .. id
  for i = 0, n - 1 do
    local o = 5 + i * 6
    local k, kind, a, b, limit, amt = ARGV[o], ARGV[o + 1], tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4]), tonumber(ARGV[o + 5])
    if kind == 'T' then
      add_spent(k, kind, a, b, amt)
      remaining[i + 1] = 'none'
    else
      local res = redis.call('HINCRBY', ckey(k), 'res', s(amt))
      if limit >= 0 then
        local x = roll(k, kind, a, b)
        remaining[i + 1] = s(limit - x - res)
      else
        remaining[i + 1] = 'none'
      end
    end
    redis.call('RPUSH', l, k, kind, ARGV[o + 2], ARGV[o + 3], ARGV[o + 4], ARGV[o + 5])
  end
  redis.call('ZADD', P .. 'leases', s(now + lease_ms), id)
  local out = {'ok', id}
  for i = 1, n do out[#out + 1] = remaining[i] end
  return out
elseif op == 'settle' then
  local id, n = ARGV[3], tonumber(ARGV[4])
  local live = redis.call('EXISTS', P .. 'l:' .. id) == 1
  local out = {}
  for i = 0, n - 1 do
    local o = 5 + i * 6
    local k, kind, a, b, amt = ARGV[o], ARGV[o + 1], tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3]), tonumber(ARGV[o + 5])
    local used = tonumber(ARGV[5 + n * 6 + i])
    roll(k, kind, a, b)
    if kind == 'T' then
      local already = 0
      if live then already = amt end
      add_spent(k, kind, a, b, used - already)
    else
      if live then redis.call('HINCRBY', ckey(k), 'res', s(-amt)) end
      add_spent(k, kind, a, b, used)
    end
    local v = view(k, kind, a, b)
    out[#out + 1] = v[1]
    out[#out + 1] = v[2]
  end
  if live then
    redis.call('DEL', P .. 'l:' .. id)
    redis.call('ZREM', P .. 'leases', id)
  end
  return out
elseif op == 'release' then
  if redis.call('EXISTS', P .. 'l:' .. ARGV[3]) == 1 then give_back(ARGV[3]) end
  return 1
elseif op == 'seed' then
  local k, kind, a, b = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
  -- Once: a counter in use is ahead of the ledger it would be seeded from.
  if redis.call('HSETNX', ckey(k), 'seeded', 1) == 0 then return 0 end
  roll(k, kind, a, b)
  if kind == 'R' then
    redis.call('DEL', skey(k))
    for i = 8, #ARGV, 2 do redis.call('HINCRBY', skey(k), ARGV[i], ARGV[i + 1]) end
    -- The next roll sums the seeded seconds once.
    redis.call('HSET', ckey(k), 'rsum', -1)
  else
    local total = 0
    for i = 8, #ARGV, 2 do total = total + tonumber(ARGV[i + 1]) end
    redis.call('HSET', ckey(k), 'spent', s(total))
  end
  return 1
elseif op == 'view' then
  return view(ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]))
end
return redis.error_reply('unknown op ' .. tostring(op))
