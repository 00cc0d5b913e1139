-- wrk script of bench/ceiling.py: one GET per request, rotating over API keys.
--
-- CEILING_KEYS: comma-separated API keys; each request carries the next one as
-- "Authorization: Bearer <key>" (empty or unset: no Authorization header).
-- CEILING_CONNECTION_CLOSE=1: also send "Connection: close" (see bench/ceiling.py's docstring).
--
-- Every thread walks the same list from its own starting point, so the keys interleave.

local keys = {}
for key in string.gmatch(os.getenv("CEILING_KEYS") or "", "[^,]+") do
  keys[#keys + 1] = key
end

local threads = 0

function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

local requests = {}
local next_request = 0

function init(args)
  local base = {}
  if os.getenv("CEILING_CONNECTION_CLOSE") == "1" then
    base["Connection"] = "close"
  end
  if #keys == 0 then
    requests[1] = wrk.format(nil, nil, base)
  end
  for i, key in ipairs(keys) do
    local headers = {}
    for name, value in pairs(base) do
      headers[name] = value
    end
    headers["Authorization"] = "Bearer " .. key
    requests[i] = wrk.format(nil, nil, headers)
  end
  next_request = (offset or 0) % #requests
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end
