-- The helper that runs real redis-server processes for the Redis specs.
local rs = require("helpers.redis_server")

local function sh_ok(cmd)
  return rs.succeeds(cmd .. " </dev/null >/dev/null 2>&1")
end

-- An integer: math.type says so where Lua has integers, elsewhere an integral number.
local function is_integer(v)
  if math.type then return math.type(v) == "integer" end
  return type(v) == "number" and v == math.floor(v)
end

describe("helpers.redis_server", function()
  local srv

  setup(function()
    srv = rs.start()
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  it("starts a server that answers on its port", function()
    assert.equals("127.0.0.1", srv.host)
    assert.is_true(is_integer(srv.port) and srv.port >= 20000 and srv.port <= 59999)
    assert.is_nil(srv.password)
    assert.is_number(srv.pid)
    local out, code = srv:cli("PING")
    assert.equals("PONG", out)
    assert.equals(0, code)
  end)

  it("runs a shell command, giving its output and exit status", function()
    assert.are.same({ "out\n", 3 }, { rs.run("(echo out; echo err >&2; exit 3) 2>/dev/null") })
    assert.are.same({ "no newline", 0 }, { rs.run("printf 'no newline'") })
    assert.are.same({ "", 137 }, { rs.run("(sh -c 'kill -9 $$'; exit $?) 2>/dev/null") })
    assert.is_true(rs.succeeds("true"))
    assert.is_false(rs.succeeds("exit 1"))
  end)

  it("passes arguments through the shell unchanged", function()
    local value = "it's a \"value\" with $HOME, `x`, \\n and \n a newline"
    assert.equals("OK", (srv:cli("SET", "odd key", value)))
    assert.equals(value, (srv:cli("GET", "odd key")))
  end)

  it("lists keys sorted", function()
    srv:cli("FLUSHALL")
    srv:cli("SET", "b:2", "x")
    srv:cli("SET", "a:1", "x")
    srv:cli("SET", "b:1", "x")
    assert.same({ "a:1", "b:1", "b:2" }, srv:keys())
    assert.same({ "b:1", "b:2" }, srv:keys("b:*"))
    assert.same({}, srv:keys("none:*"))
  end)

  it("pauses the server without closing it", function()
    local t0 = os.time()
    srv:pause(1)
    assert.is_false(sh_ok("timeout 0.3 " .. srv:cli_prefix() .. " PING"))
    -- Answers again once the sleep is over (cli blocks until then).
    assert.equals("PONG", (srv:cli("PING")))
    assert.is_true(os.time() - t0 <= 3)
  end)

  it("stops, and restarts on the same port", function()
    local port, pid = srv.port, srv.pid
    srv:stop()
    srv:stop() -- idempotent
    local _, code = srv:cli("PING")
    assert.is_not.equals(0, code)
    srv:restart()
    assert.equals(port, srv.port)
    assert.is_not.equals(pid, srv.pid)
    assert.equals("PONG", (srv:cli("PING")))
  end)

  it("survives a kill -9 and restarts", function()
    srv:kill()
    local _, code = srv:cli("PING")
    assert.is_not.equals(0, code)
    srv:restart()
    assert.equals("PONG", (srv:cli("PING")))
  end)

  it("builds URLs", function()
    assert.equals("redis://127.0.0.1:" .. srv.port .. "/0", srv:url())
    assert.equals("redis://127.0.0.1:" .. srv.port .. "/3?prefix=app%3As%20x", srv:url(3, "app:s x"))
  end)

  describe("with a password", function()
    local secure

    setup(function()
      secure = rs.start({ password = "p@ss w:rd/'x", databases = 4 })
    end)

    teardown(function()
      if secure then secure:stop() end
    end)

    it("refuses commands without it and accepts them with it", function()
      local out = rs.run("redis-cli -h 127.0.0.1 -p " .. secure.port .. " --raw PING </dev/null 2>&1")
      assert.matches("NOAUTH", out)
      assert.equals("PONG", (secure:cli("PING")))
      assert.equals("4", (secure:cli("CONFIG", "GET", "databases")):match("\n(%d+)$"))
    end)

    it("puts the encoded password in its URL", function()
      assert.equals("redis://:p%40ss%20w%3Ard%2F%27x@127.0.0.1:" .. secure.port .. "/1?prefix=s",
        secure:url(1, "s"))
    end)
  end)
end)
