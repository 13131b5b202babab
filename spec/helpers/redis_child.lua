-- The child processes of spec/10-redis_spec.lua: one program, the first
-- argument names what it does, the next three say where the store is (host,
-- port, prefix). Run with the environment helpers.sqlite.lua_env gives.
-- Prints "DONE <count>" when it ends well, "FAIL <why>" when it does not.

local agentsession = require("agentsession")

io.stdout:setvbuf("line")

local role, host, port, prefix = arg[1], arg[2], tonumber(arg[3]), arg[4]
local mgr = agentsession.redis{ host = host, port = port, prefix = prefix }

local function fail(why)
  print("FAIL " .. tostring(why):gsub("\n", "\\n"))
  os.exit(1)
end

local commands = {}

-- tagger ID NAME COUNT: adds COUNT tags "NAME-i" to the session ID, one call each,
-- and saves COUNT sessions of its own named NAME-i.
function commands.tagger(id, name, count)
  for i = 1, tonumber(count) do
    mgr:tag(id, name .. "-" .. i)
    mgr:save(agentsession.session{ id = name .. "-own-" .. i, agent_name = name, tags = { name } })
  end
  print("DONE " .. count)
end

-- writer ID COUNT: saves the session ID COUNT times; save i has i messages and
-- state.n = i, name "v<i>".
function commands.writer(id, count)
  for i = 1, tonumber(count) do
    local msgs = {}
    for k = 1, i do msgs[k] = { k = k, text = string.rep("x", 50) } end
    mgr:save(agentsession.session{ id = id, name = "v" .. i, messages = msgs, state = { n = i } })
  end
  print("DONE " .. count)
end

-- reader ID COUNT: resumes ID COUNT times; each must be whole: as many
-- messages as state.n says, and the name of that very save.
function commands.reader(id, count)
  local seen = 0
  for _ = 1, tonumber(count) do
    local ok, s = pcall(mgr.resume, mgr, id)
    if ok then
      local n = s.state.n
      if #s.messages ~= n or s.metadata.name ~= "v" .. n or s.messages[n].k ~= n then
        fail("torn read: " .. #s.messages .. " messages, state.n " .. tostring(n)
          .. ", name " .. tostring(s.metadata.name))
      end
      seen = seen + 1
    elseif not agentsession.is_error(s, "not_found") then
      fail(s)
    end
  end
  print("DONE " .. seen)
end

local fn = commands[role]
if not fn then fail("no command " .. tostring(role)) end
local ok, err = pcall(fn, table.unpack(arg, 5))
if not ok then fail(err) end
mgr:close()
