-- wrk script: POST pre-generated bodies in turn. Arguments: <dir> <count> <content-type>
local bodies = {}
local i = 0
local content_type = "application/json"

function init(args)
  local dir, count = args[1], tonumber(args[2])
  content_type = args[3] or content_type
  for k = 1, count do
    local f = assert(io.open(dir .. "/body" .. k, "rb"))
    bodies[k] = f:read("*all")
    f:close()
  end
end

function request()
  i = i % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = content_type}, bodies[i])
end
