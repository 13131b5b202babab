-- LÖVE embeds LuaJIT: the game of examples/love runs without a display (a
-- scripted player turns its window, graphics and sound off), and its NPC
-- remembers the first game in the second. Whatever interpreter runs this
-- spec, LÖVE loads the LuaJIT build (make LUA=luajit).
local interp = require("helpers.interp")
local stores = require("helpers.stores")
local agentsession = require("agentsession")

-- A bound on each game, so that a hang fails the spec instead of stalling it.
local LIMIT_SECONDS = 300

local function q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Runs a shell command; returns its standard output and exit status, and what
-- it printed on standard error.
local function sh(command, err_file)
  local pipe = assert(io.popen(command .. " 2>" .. q(err_file) .. "; echo \"exit $?\""))
  local output = pipe:read("*a")
  pipe:close()
  local body, status = output:match("^(.-)exit (%d+)\n$")
  local f = io.open(err_file, "rb")
  local err = f and f:read("*a") or ""
  if f then f:close() end
  return body, tonumber(status), err
end

local ROOT = assert(io.popen("pwd -P")):read("*l")

local function new_dir(name)
  local dir = stores.tmpdir() .. "/" .. name
  assert(os.execute("mkdir -p " .. q(dir)))
  return dir
end

-- Plays the game with the scripted choices `say` and the environment words
-- `env`; returns its standard output, exit status and standard error.
local function play(home, say, env)
  return sh("env XDG_DATA_HOME=" .. q(home .. "/data") .. " HOME=" .. q(home) .. " " .. (env or "") .. " "
    .. interp.env(ROOT, "luajit") .. " timeout -k 10 " .. LIMIT_SECONDS .. " love " .. q(ROOT .. "/examples/love")
    .. " --say " .. say .. " </dev/null", home .. "/stderr")
end

local FIRST = [[
npc: Hello, traveller. I am Mira, keeper of this well.
player: Is there any work?
npc: Wolves took my bucket into the forest. Bring it back?
player: I will.
npc: Thank you. The forest path starts behind the mill.
player: Farewell.
npc: Safe roads.
]]

local SECOND = [[
npc: Welcome back, traveller. This is your visit number 2. Last time you said: "I will."
player: Who are you?
npc: I draw water for the village, and I remember every face.
player: Farewell.
npc: Safe roads.
]]

local function require_luajit_build()
  local module = ROOT .. "/" .. interp.build_dir("luajit") .. "/agentsession/core.so"
  local f = io.open(module, "rb")
  assert(f, module .. " is missing: run make LUA=luajit")
  f:close()
end

describe("examples/love", function()
  before_each(require_luajit_build)

  it("plays without a display; in the second game the NPC remembers the first", function()
    local home = new_dir("love-save-dir")
    local out, status, err = play(home, "2,1,1")
    assert.are.equal(0, status, err)
    assert.are.equal(FIRST, out)
    out, status, err = play(home, "1,2")
    assert.are.equal(0, status, err)
    assert.are.equal(SECOND, out)

    -- Every line of both games is in the session, in the save directory.
    local mgr = agentsession.sqlite(home .. "/data/love/agentsession-npc/npc.db")
    local mira = mgr:resume("mira")
    mgr:close()
    local lines = {}
    for _, m in ipairs(mira.messages) do lines[#lines + 1] = m.role .. ": " .. m.content .. "\n" end
    assert.are.equal(FIRST .. SECOND, table.concat(lines))
    assert.are.same({ visits = 2 }, mira.state)
    assert.are.equal("Mira", mira.metadata.name)
  end)

  it("keeps the NPC's memory where AGENTSESSION_LOVE_STORE says", function()
    local home = new_dir("love-env")
    local db = home .. "/elsewhere.db"
    local out, status, err = play(home, "2,1,1", "AGENTSESSION_LOVE_STORE=" .. q(db))
    assert.are.equal(0, status, err)
    assert.are.equal(FIRST, out)
    local mgr = agentsession.sqlite(db)
    assert.are.equal(7, mgr:resume("mira").metadata.turn_count)
    mgr:close()
    assert.is_nil(io.open(home .. "/data/love/agentsession-npc/npc.db", "rb"))
  end)

  it("fails with the game's error and a non-zero status on a choice that is not offered", function()
    local home = new_dir("love-error")
    local out, status = play(home, "3,1")
    assert.are_not.equal(0, status)
    assert.truthy(out:find("no option 1 here", 1, true), out)
  end)
end)
