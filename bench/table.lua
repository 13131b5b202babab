-- bench/table.lua: the main rows of the benchmark on every Lua, in one table.
--
-- From the repository root, after building the module for each Lua (`make`, `make LUA=luajit`, …):
--   lua5.4 bench/table.lua [lua5.1 lua5.2 lua5.3 lua5.4 luajit]
-- Runs `bench/bench.lua --rows main` on each interpreter in turn (one after the other, so that
-- they do not share the CPU), with LUA_CPATH on that interpreter's build, and prints the ratio
-- of each row (ours / rival) per interpreter, then our time per call. An interpreter whose build
-- is missing is reported and left out. BENCH_QUICK, BENCH_ROUNDS and BENCH_TIME are passed on.
-- Exits non-zero when a run fails.

local ALL = { "lua5.1", "lua5.2", "lua5.3", "lua5.4", "luajit" }

-- The build directory of the module for an interpreter, as the Makefile builds it.
local function build_dir(lua)
  if lua == "lua5.4" then return "build" end
  return "build/" .. lua
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local luas = { ... }
if #luas == 0 then luas = ALL end

local rows, order, results, failed, ran = {}, {}, {}, {}, {}
for _, lua in ipairs(luas) do
  local dir = build_dir(lua)
  if not exists(dir .. "/agentsession/core.so") then
    io.stderr:write("table: no ", dir, "/agentsession/core.so: ", lua, " left out (make LUA=", lua, ")\n")
  else
    ran[#ran + 1] = lua
    io.stderr:write("table: ", lua, " bench/bench.lua --rows main ...\n")
    local command = "LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='" .. dir .. "/?.so;;' "
      .. lua .. " bench/bench.lua --rows main 2>&1; echo \"<exit $?>\""
    local pipe = assert(io.popen(command))
    local out = pipe:read("*a")
    pipe:close()
    local status = tonumber(out:match("<exit (%d+)>\n$"))
    if status ~= 0 then
      failed[#failed + 1] = lua
      io.stderr:write(out)
    end
    results[lua] = {}
    local fields = "main\t[^\t]*\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\n]*)\n"
    for name, ours, rival, ratio, target in out:gmatch(fields) do
      if not rows[name] then
        rows[name] = { target = target }
        order[#order + 1] = name
      end
      results[lua][name] = { ours = tonumber(ours), rival = tonumber(rival), ratio = tonumber(ratio) }
    end
  end
end

local function time(ns)
  if ns < 1e3 then return string.format("%.0f ns", ns) end
  if ns < 1e6 then return string.format("%.1f us", ns / 1e3) end
  return string.format("%.1f ms", ns / 1e6)
end

-- One table: a line per row, a column per interpreter, cell(result) in each.
local function print_table(title, cell, with_target)
  local width = 52
  local line = { string.format("%-" .. width .. "s", title) }
  for _, lua in ipairs(ran) do line[#line + 1] = string.format("%10s", lua) end
  if with_target then line[#line + 1] = string.format("%9s", "target") end
  print(table.concat(line, " "))
  for _, name in ipairs(order) do
    line = { string.format("%-" .. width .. "s", name) }
    for _, lua in ipairs(ran) do
      local r = results[lua][name]
      line[#line + 1] = string.format("%10s", r and cell(r) or "-")
    end
    if with_target then
      line[#line + 1] = string.format("%9s", rows[name].target ~= "" and "<= " .. rows[name].target or "")
    end
    print(table.concat(line, " "))
  end
end

print_table("ratio (ours / rival)", function(r) return string.format("%.2f", r.ratio) end, true)
print()
print_table("ours, per call", function(r) return time(r.ours) end)

if #failed > 0 then
  io.stderr:write("table: the benchmark failed on ", table.concat(failed, ", "), "\n")
  os.exit(1)
end
