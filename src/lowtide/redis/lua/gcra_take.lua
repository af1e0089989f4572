-- GCRA: take up to ARGV[4] tokens from the bucket whose theoretical arrival time (ms) is KEYS[1].
-- ARGV: now_ms, interval_ms (time for one token to come back), burst (tokens when full), wanted.
-- Mirrors lowtide.limiter.core.gcra_take. Returns {{granted, retry_after_ms, left}, inner}
-- where left is how many tokens the bucket still holds after the grant.
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])
local inner = {'get'}
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local base = math.max(tat, now)
local room = math.floor((now + burst * interval - base) / interval + 1e-9)
local granted = math.max(0, math.min(wanted, room))
if granted > 0 then
  local new_tat = base + granted * interval
  redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
  inner[#inner + 1] = 'set'
  return {{granted, '0', math.max(0, room - granted)}, inner}
end
local retry = math.max(0, base + interval - burst * interval - now)
return {{0, string.format('%.3f', retry), 0}, inner}
