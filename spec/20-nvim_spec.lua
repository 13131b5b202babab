-- Neovim embeds LuaJIT: agentsession loads inside `nvim --headless`, passes the
-- conformance suite there on the memory and SQLite stores, reads exactly what
-- Lua 5.4 wrote, and the chat plugin of examples/nvim keeps each project's
-- history across restarts. Whatever interpreter runs this spec, Neovim loads
-- the LuaJIT build (make LUA=luajit). The scripts that run inside Neovim are
-- in spec/nvim/ (see boot.lua there for how they report).
local interp = require("helpers.interp")
local stores = require("helpers.stores")

-- A bound on each Neovim run, so that a hang fails the spec instead of stalling it.
local LIMIT_SECONDS = 300

local function q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Runs a shell command; returns its output (standard error too) and exit status.
local function sh(command)
  local pipe = assert(io.popen(command .. " 2>&1; echo \"exit $?\""))
  local output = pipe:read("*a")
  pipe:close()
  local body, status = output:match("^(.-)exit (%d+)\n$")
  return body, tonumber(status)
end

local function real_path(dir)
  local out, status = sh("cd " .. q(dir) .. " && pwd -P")
  assert(status == 0, out)
  return (out:gsub("\n$", ""))
end

local ROOT = real_path(".")
local LUAJIT_MODULE = ROOT .. "/" .. interp.build_dir("luajit") .. "/agentsession/core.so"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function new_dir(name)
  local dir = stores.tmpdir() .. "/" .. name
  assert(os.execute("mkdir -p " .. q(dir)))
  return real_path(dir)
end

-- Runs o.script (a path, or a name in spec/nvim/) in a headless Neovim whose XDG directories are
-- under o.home, from directory o.cwd, with the init file o.init (default:
-- none, and no plugins) and the environment o.env. Returns the exit status,
-- the report's lines (each an array of its tab-separated words) and what
-- Neovim printed.
local function nvim(o)
  local out = o.home .. "/report"
  os.remove(out)
  local env = {
    XDG_CONFIG_HOME = o.home .. "/config", XDG_DATA_HOME = o.home .. "/data",
    XDG_STATE_HOME = o.home .. "/state", XDG_CACHE_HOME = o.home .. "/cache",
    AGENTSESSION_NVIM_BOOT = ROOT .. "/spec/nvim/boot.lua",
    AGENTSESSION_NVIM_SCRIPT = o.script:find("^/") and o.script or ROOT .. "/spec/nvim/" .. o.script,
    AGENTSESSION_NVIM_OUT = out,
  }
  for k, v in pairs(o.env or {}) do env[k] = v end
  local words = {}
  for k, v in pairs(env) do words[#words + 1] = k .. "=" .. q(v) end
  table.sort(words)
  local output, status = sh("cd " .. q(o.cwd or ROOT) .. " && env " .. table.concat(words, " ")
    .. " timeout -k 10 " .. LIMIT_SECONDS .. " nvim --headless --clean -i NONE -u " .. q(o.init or "NONE")
    .. " -c " .. q("lua dofile(os.getenv('AGENTSESSION_NVIM_BOOT'))") .. " -c 'cq 2' </dev/null")
  local lines = {}
  local f = io.open(out, "rb")
  if f then
    for line in f:lines() do
      local w = {}
      for word in (line .. "\t"):gmatch("(.-)\t") do w[#w + 1] = word end
      lines[#lines + 1] = w
    end
    f:close()
  end
  return status, lines, output
end

-- Fails unless the run ended well and reported no failure; returns the names
-- of the checks it reported as passed, in order.
local function assert_report(what, status, lines, output)
  local passed, failures = {}, {}
  for _, w in ipairs(lines) do
    if w[1] == "ok" then
      passed[#passed + 1] = w[2]
    elseif w[1] == "fail" or w[1] == "error" then
      failures[#failures + 1] = table.concat(w, " ", 2)
    end
  end
  assert(#failures == 0, what .. ": " .. #failures .. " failed:\n" .. table.concat(failures, "\n"))
  local last = lines[#lines]
  assert(status == 0 and last and last[1] == "done", what .. ": Neovim exited with status " .. tostring(status)
    .. " and the report ends with " .. tostring(last and last[1]) .. "; it printed:\n" .. output)
  return passed
end

local function require_luajit_build()
  assert(exists(LUAJIT_MODULE), LUAJIT_MODULE .. " is missing: run make LUA=luajit")
end

describe("Neovim", function()
  it("runs LuaJIT", function()
    local home = new_dir("nvim-host")
    local script = home .. "/host.lua"
    local f = assert(io.open(script, "wb"))
    f:write("return function(report) report('host', jit and jit.version or _VERSION) end\n")
    f:close()
    local status, lines, output = nvim{ script = script, home = home }
    assert_report("nvim", status, lines, output)
    assert.truthy(lines[1][2]:match("^LuaJIT 2%.1"), lines[1][2])
  end)

  for _, store in ipairs({ "memory", "sqlite" }) do
    it("passes the conformance suite on the " .. store .. " store, each check reported", function()
      require_luajit_build()
      local home = new_dir("nvim-conformance-" .. store)
      local status, lines, output = nvim{ script = "conformance.lua", home = home, env = {
        AGENTSESSION_NVIM_ROOT = ROOT, AGENTSESSION_NVIM_CPATH = ROOT .. "/" .. interp.build_dir("luajit") .. "/?.so",
        AGENTSESSION_NVIM_STORE = store, AGENTSESSION_NVIM_TMP = home,
      } }
      local passed = assert_report("conformance on " .. store .. " in Neovim", status, lines, output)
      assert.are.equal("host", lines[1][1])
      assert.truthy(lines[1][2]:match("^LuaJIT"), lines[1][2])
      -- Every check the suite has on LuaJIT (its checks differ a little between Luas).
      local out, luajit_status = sh(interp.env(ROOT, "luajit") .. " luajit -e "
        .. q("for _, c in ipairs(require('agentsession.conformance').checks) do print(c.name) end"))
      assert.are.equal(0, luajit_status, out)
      local names = {}
      for name in out:gmatch("[^\n]+") do names[#names + 1] = name end
      assert.are.same(names, passed)
    end)
  end

  it("reads exactly what Lua 5.4 wrote to a SQLite file, big integers as big_integers says", function()
    require_luajit_build()
    assert(exists(ROOT .. "/" .. interp.build_dir("lua5.4") .. "/agentsession/core.so"), "run make first")
    local home = new_dir("nvim-rich")
    local db = home .. "/rich.db"
    local out, status = sh(interp.env(ROOT, "lua5.4") .. " lua5.4 " .. q(ROOT .. "/spec/nvim/write_rich.lua")
      .. " " .. q(db))
    assert.are.equal("written\n", out)
    assert.are.equal(0, status)
    local nvim_status, lines, output = nvim{ script = "read_rich.lua", home = home, env = {
      AGENTSESSION_NVIM_ROOT = ROOT, AGENTSESSION_NVIM_CPATH = ROOT .. "/" .. interp.build_dir("luajit") .. "/?.so",
      AGENTSESSION_NVIM_DB = db, AGENTSESSION_NVIM_DIR = ROOT .. "/spec/nvim",
    } }
    local passed = assert_report("reading Lua 5.4's file in Neovim", nvim_status, lines, output)
    assert.are.equal(22, #passed)
  end)
end)

describe("examples/nvim", function()
  it("keeps each project's chats across Neovim runs: append, windows, pages, list, new, open, rename, delete",
    function()
      require_luajit_build()
      local home = new_dir("nvim-chatlog")
      local a, b = new_dir("project-a"), new_dir("project-b")
      assert(os.execute("mkdir -p " .. q(a .. "/.git") .. " " .. q(a .. "/src/deep")))
      -- The lines examples/nvim/README.md tells users to put in their init.lua.
      local init = home .. "/init.lua"
      local f = assert(io.open(init, "wb"))
      f:write(string.format([[
local agentsession = %q
vim.opt.runtimepath:append(agentsession .. "/examples/nvim")
package.path = agentsession .. "/lua/?.lua;" .. agentsession .. "/lua/?/init.lua;" .. package.path
package.cpath = agentsession .. "/build/luajit/?.so;" .. package.cpath
]], ROOT))
      f:close()
      local runs = { { "a1", a .. "/src/deep" }, { "b1", b }, { "a2", a }, { "a3", a .. "/src" } }
      local counts = {}
      for _, run in ipairs(runs) do
        local status, lines, output = nvim{ script = "chatlog_steps.lua", home = home, init = init, cwd = run[2],
          env = { AGENTSESSION_NVIM_STEP = run[1], CHATLOG_A = a, CHATLOG_B = b } }
        counts[#counts + 1] = #assert_report("run " .. run[1], status, lines, output)
      end
      assert.are.same({ 12, 6, 17, 6 }, counts)

      -- The file is where the README says, and any Lua reads it.
      local agentsession = require("agentsession")
      local db = home .. "/data/nvim/agentsession/chatlog.db"
      assert.is_true(exists(db), db)
      local mgr = agentsession.sqlite(db)
      local in_a = mgr:list{ tag = "project:" .. a }
      assert.are.equal(1, #in_a)
      assert.are.equal("second, renamed", in_a[1].name)
      assert.are.equal("chatlog", in_a[1].agent_name)
      local in_b = mgr:list{ tag = "project:" .. b }
      assert.are.equal(1, #in_b)
      assert.are.same({ role = "user", content = "in project b" }, mgr:resume(in_b[1].id).messages[1])
      assert.are.equal(2, #mgr:list())
      mgr:close()
    end)
end)
