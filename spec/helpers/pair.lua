-- Child processes on one store, running spec/helpers/pair_child.lua with the
-- command and arguments given: two started together (released at once by a go
-- file once both have opened the store), or one run to its end.
local stores = require("helpers.stores")
local h = require("helpers.sqlite")
local interp = require("helpers.interp")

local M = {}

local function child(args)
  local words = { "env", interp.env(h.root), "AGENTSESSION_ROOT=" .. h.q(h.root), "timeout -s KILL 120",
    interp.lua, h.q(h.root .. "/spec/helpers/pair_child.lua") }
  for _, a in ipairs(args) do words[#words + 1] = h.q(a) end
  return assert(io.popen(table.concat(words, " ") .. " 2>&1", "r"))
end

local runs = 0
--- Runs two children at once on the store at `uri` (or each on its own, when
--- `uri` is a pair of them; each `args` is the command and its own arguments);
--- returns their outputs once both have ended.
function M.run(uri, args_a, args_b)
  runs = runs + 1
  local base = stores.tmpdir() .. "/pair" .. runs
  local go = base .. ".go"
  local pipes, ready = {}, {}
  for i, args in ipairs({ args_a, args_b }) do
    ready[i] = base .. ".ready" .. i
    local full = { args[1], type(uri) == "table" and uri[i] or uri, ready[i], go }
    for j = 2, #args do full[#full + 1] = args[j] end
    pipes[i] = child(full)
  end
  local ok, err = pcall(h.wait_until, function() return h.exists(ready[1]) and h.exists(ready[2]) end, 60,
    "both children to open the store")
  h.write(go, "go\n")
  local out = {}
  for i, p in ipairs(pipes) do
    out[i] = p:read("*a")
    p:close()
  end
  assert(ok, tostring(err) .. "\n" .. out[1] .. "\n" .. out[2])
  return out[1], out[2]
end

--- Runs one child on the store at `uri` to its end; returns its output.
function M.run_one(uri, args)
  runs = runs + 1
  local base = stores.tmpdir() .. "/one" .. runs
  h.write(base .. ".go", "go\n")
  local full = { args[1], uri, base .. ".ready", base .. ".go" }
  for j = 2, #args do full[#full + 1] = args[j] end
  local p = child(full)
  local out = p:read("*a")
  p:close()
  return out
end

return M
