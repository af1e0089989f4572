-- INCRBY a counter; PEXPIRE it only when this call created it (the first reservation).
-- Returns {value, inner} in lowtide's convention: inner lists the commands this script ran.
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
local inner = {'incrby'}
if v == tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], 60000)
  inner[#inner + 1] = 'pexpire'
end
return {v, inner}
