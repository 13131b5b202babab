-- The runnable examples and the benchmark stay true: each runs to the end in a
-- child process of the suite's interpreter (the benchmark in its short mode; its
-- figures are not judged here).
local interp = require("helpers.interp")

local env = "LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='" .. interp.build_dir() .. "/?.so;;' "
local lua = interp.lua

-- Runs a shell command; returns whether it exited with 0, and its output. The
-- shell reports the status, which pipe:close() does not on Lua 5.1 and LuaJIT.
local function run(command)
  local pipe = assert(io.popen(env .. command .. " 2>&1; echo \"exit $?\""))
  local output = pipe:read("*a")
  pipe:close()
  local body, status = output:match("^(.*)exit (%d+)\n$")
  return status == "0", body or output
end

describe("examples", function()
  local stores = require("helpers.stores")
  local where = {
    { "a SQLite file", function() return stores.new_file() end },
    { "Redis", function() return stores.redis_server():url(0, "quickstart:") end },
  }
  for _, w in ipairs(where) do
    it("quickstart.lua runs the whole walkthrough on " .. w[1]
      .. ", and a second run resumes the first's sessions", function()
      local command = "AGENTSESSION_STORE='" .. w[2]() .. "' " .. lua .. " examples/quickstart.lua"
      local ok, output = run(command)
      assert.is_true(ok, output)
      for _, step in ipairs({ "store", "save", "resume", "list", "fork", "rewind", "tag", "rename", "delete" }) do
        assert.truthy(output:find("\n" .. step .. " ", 1, true) or output:find("^" .. step .. " "), step)
      end
      assert.truthy(output:find("agentsession: not_found:", 1, true))
      assert.truthy(output:find("earlier  none yet", 1, true), output)
      local first_id = output:match("\nsave +(%x+%-[%x-]+) ")
      assert.truthy(first_id, output)

      ok, output = run(command)
      assert.is_true(ok, output)
      assert.truthy(output:find("earlier  1 session(s) left by earlier runs", 1, true), output)
      assert.truthy(output:find("\nresume   \"final%-delivery\" from an earlier run: 3 messages"), output)
      assert.truthy(output:find("parent=" .. first_id, 1, true), output)
    end)
  end

  it("file_store.lua, run as a script, passes the conformance suite", function()
    local ok, output = run(lua .. " examples/file_store.lua")
    assert.is_true(ok, output)
    local passed, failed = output:match("file store: (%d+) passed, (%d+) failed")
    assert.are.equal("0", failed, output)
    assert.are.equal(#require("agentsession.conformance").checks, tonumber(passed), output)
  end)

  -- A script named file_store.lua in a folder of its own that loads the example.
  local function loader_script(load_expression)
    local script = stores.new_folder() .. "/file_store.lua"
    local f = assert(io.open(script, "wb"))
    f:write(string.format([[
package.path = "examples/?.lua;" .. package.path
local file_store = %s
local mgr = file_store.open(%q)
local id = mgr:save(require("agentsession").session{ messages = { "one" } }).id
print("module " .. type(file_store.backend) .. " " .. #mgr:resume(id).messages)
]], load_expression, stores.new_folder()))
    f:close()
    return script
  end

  local cwd = assert(io.popen("pwd")):read("*l")
  for _, how in ipairs({
    { "dofile of a relative path", 'dofile("examples/file_store.lua")' },
    { "dofile of an absolute path", string.format("dofile(%q)", cwd .. "/examples/file_store.lua") },
    { "require", 'require("file_store")' },
  }) do
    it("file_store.lua loaded by " .. how[1] .. " from a script also named file_store.lua"
      .. " gives the module and runs no self-test", function()
      local ok, output = run(lua .. " '" .. loader_script(how[2]) .. "'")
      assert.is_true(ok, output)
      assert.are.equal("module function 1\n", output)
    end)
  end

  it("file_store.lua reports a damaged session file or index as storage naming the file", function()
    local agentsession = require("agentsession")
    local file_store = dofile("examples/file_store.lua")
    local dir = stores.new_folder()
    local mgr = file_store.open(dir)
    local id = mgr:save(agentsession.session{ messages = { "one" } }).id
    local index = io.open(dir .. "/index.json"):read("*a")
    local file = index:match('"file":"([^"]+)"')
    assert.truthy(file, index)
    local f = assert(io.open(dir .. "/" .. file, "ab"))
    f:write("{not json\n")
    f:close()
    for _, call in ipairs({ function() return mgr:resume(id) end, function() return mgr:tag(id, "t") end }) do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.is_true(agentsession.is_error(err, "storage"), tostring(err))
      assert.truthy(err.message:find(dir .. "/" .. file, 1, true), err.message)
    end
    mgr:close()
    f = assert(io.open(dir .. "/index.json", "wb"))
    f:write("[]")
    f:close()
    local ok, err = pcall(file_store.open, dir)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("damaged index " .. dir .. "/index.json", 1, true), tostring(err))
  end)

  it("the benchmark runs in its short mode", function()
    local ok, output = run("BENCH_QUICK=1 " .. lua .. " bench/bench.lua")
    assert.is_true(ok, output)
    assert.truthy(output:find("json.encode / cjson.encode", 1, true), output)
    assert.truthy(output:find("plain-Lua", 1, true), output)
  end)
end)
