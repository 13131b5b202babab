-- The C library (agentsession.h) on a real Redis server: tests/capi_test.c,
-- which `make ctest` runs on the memory and SQLite stores, runs every
-- operation here on Redis, and meets a server that does not answer.
local stores = require("helpers.stores")
local rs = require("helpers.redis_server")

-- Whether build/capi_test exited with status 0, and its output.
local function run(args)
  local output, status = rs.run("build/capi_test " .. args .. " 2>&1")
  return status == 0, output
end

describe("the C library on Redis", function()
  it("runs every operation of agentsession.h", function()
    local srv = stores.redis_server()
    local ok, output = run(("redis %s %d capi-spec:"):format(srv.host, srv.port))
    assert.is_true(ok, output)
    local checks = output:match("capi_test: (%d+) checks, 0 failed")
    assert.truthy(checks, output)
    assert.is_true(tonumber(checks) > 100, output)
  end)

  it("reports a server that does not answer as unavailable", function()
    local srv = rs.start()
    srv:stop()
    local ok, output = run(("redis-down %s %d"):format(srv.host, srv.port))
    assert.is_true(ok, output)
    assert.truthy(output:find("capi_test: %d+ checks, 0 failed"), output)
  end)
end)
