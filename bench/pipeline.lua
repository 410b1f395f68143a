-- The pipelined hello workload (pipe16): each write carries DEPTH requests
-- back to back, as TechEmpower's plaintext test sends them. wrk counts each
-- response, so CPU per request stays comparable with the other rows.
local depth = 16

function init(args)
  depth = tonumber(args[1]) or depth
  local batch = {}
  for i = 1, depth do
    batch[i] = wrk.format()
  end
  burst = table.concat(batch)
end

function request()
  return burst
end
