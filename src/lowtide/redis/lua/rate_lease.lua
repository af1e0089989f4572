-- Rate leases over one token bucket: mirrors lowtide.limiter.rates (see its docs for why the
-- fleet never exceeds cap + rate x elapsed). KEYS[1] holds "v1;tokens;at;hub,rate,burst,until;..."
-- (server seconds). ARGV: now, hub, want_rate, want_burst, lease_for, want, fair_rate, rate, cap.
-- Renews (or starts, or with want_rate 0 ends) the hub's lease and takes up to `want` shared
-- tokens. Returns {{rate, burst, until, fill, added, granted, retry, left}, inner}; fill is -1
-- for a renewal (the hub keeps its own tokens, plus `added` when its burst grew).
local now = tonumber(ARGV[1])
local hub = ARGV[2]
local want_rate = tonumber(ARGV[3])
local want_burst = tonumber(ARGV[4])
local lease_for = tonumber(ARGV[5])
local want = tonumber(ARGV[6])
local fair_rate = tonumber(ARGV[7])
local rate = tonumber(ARGV[8])
local cap = tonumber(ARGV[9])
local MAX_HUBS = 256
local inner = {'get'}

local function finite(x)
  return x ~= nil and x == x and x ~= math.huge and x ~= -math.huge
end

-- the state, checked: missing = a full bucket; unreadable = an empty one with no lease
local tokens, at = cap, now
local leases = {}
local raw = redis.call('GET', KEYS[1])
if raw then
  local parts = {}
  for p in string.gmatch(raw, '[^;]+') do
    parts[#parts + 1] = p
  end
  local t, a = tonumber(parts[2] or ''), tonumber(parts[3] or '')
  -- the stored time never moves backwards (a hub whose clock is behind refills nothing until
  -- its clock passes it); one further ahead than two lease periods is not one (planted)
  if parts[1] == 'v1' and finite(t) and finite(a) and a <= now + 2 * lease_for then
    tokens, at = math.max(0, math.min(t, cap)), a
    for i = 4, math.min(#parts, 3 + MAX_HUBS) do
      local id, r, b, u = string.match(parts[i], '^([^,]+),([^,]+),([^,]+),([^,]+)$')
      r, b, u = tonumber(r or ''), tonumber(b or ''), tonumber(u or '')
      if id and finite(r) and finite(b) and finite(u) and r > 0 and r <= rate
          and b >= 0 and b <= cap and b == math.floor(b) and u <= now + 2 * lease_for then
        leases[id] = {r, b, u}
      end
    end
  else
    tokens, at = 0, now
  end
end

local function leased()
  local r, b = 0, 0
  for _, l in pairs(leases) do
    r, b = r + l[1], b + l[2]
  end
  return r, b
end

local function refill(t0, t1)
  local r, b = leased()
  if t1 > t0 then
    tokens = tokens + math.max(0, rate - r) * (t1 - t0)
  end
  tokens = math.max(0, math.min(tokens, cap - b))
end

-- advance to now, returning expired leases to the shared bucket as they end
local ending = {}
for id, l in pairs(leases) do
  if l[3] <= now then
    ending[#ending + 1] = id
  end
end
table.sort(ending, function(x, y) return leases[x][3] < leases[y][3] end)
local t = at
for _, id in ipairs(ending) do
  local u = leases[id][3]
  refill(t, u)
  t = math.max(t, u)
  leases[id] = nil
end
refill(t, now)

-- this hub's lease
local old = leases[hub]
leases[hub] = nil
local others_rate, others_burst = leased()
local lease_rate = math.max(0, math.min(want_rate, fair_rate, rate - others_rate))
local burst, untl = 0, now
if lease_rate > 0 then
  burst = math.max(0, math.min(want_burst, math.floor(cap) - others_burst))
  untl = now + lease_for
  leases[hub] = {lease_rate, burst, untl}
end
local added = 0
if old ~= nil and lease_rate > 0 and burst > old[2] then -- moved, not lost to the cap
  added = math.min(burst - old[2], math.floor(tokens + 1e-9))
  tokens = tokens - added
end
local _, all_burst = leased()
tokens = math.max(0, math.min(tokens, cap - all_burst))
local fill = -1
if old == nil or lease_rate == 0 then
  fill = math.min(burst, math.floor(tokens + 1e-9))
  tokens = tokens - fill
end
local granted = math.min(math.max(0, want), math.floor(tokens + 1e-9))
tokens = tokens - granted
local retry = 0
if granted < want then
  local room = rate - leased()
  if room > 0 then
    retry = (1 - tokens) / room
  else -- every token is leased: until the first lease ends
    retry = lease_for
    for _, l in pairs(leases) do
      retry = math.min(retry, l[3] - now)
    end
  end
end

-- store it: alive as long as a lease, plus the time to refill
local stored_at = math.max(at, now)
local out = {'v1', string.format('%.9f', tokens), string.format('%.6f', stored_at)}
local last = stored_at
for id, l in pairs(leases) do
  out[#out + 1] = id .. ',' .. string.format('%.9g', l[1]) .. ',' .. l[2] .. ',' .. string.format('%.6f', l[3])
  last = math.max(last, l[3])
end
local px = math.ceil((last - now + cap / rate + 1) * 1000)
redis.call('SET', KEYS[1], table.concat(out, ';'), 'PX', px)
inner[#inner + 1] = 'set'
return {{string.format('%.9g', lease_rate), burst, string.format('%.6f', untl), fill, added, granted,
  string.format('%.6f', math.max(0, math.min(retry, lease_for))), math.floor(tokens + 1e-9)}, inner}
