-- The Redis store's own rules: options and URIs, the key layout, round trips,
-- failures of the server and of its data, processes sharing a server, and
-- appends with an op_id sent again after the server was killed under them.
-- The contract every store keeps runs on Redis in specs 03-07. Every server
-- here is a real redis-server the spec starts itself; none is ever skipped.
local agentsession = require("agentsession")
local stores = require("helpers.stores")
local rs = require("helpers.redis_server")
local h = require("helpers.sqlite")
local error_of = require("helpers.expect").error_of

local session = agentsession.session

local function sorted(t)
  table.sort(t)
  return t
end

-- Round trips to the server during fn, as the store counts them.
local function trips_during(m, fn)
  local before = m:stats().round_trips
  fn()
  return m:stats().round_trips - before
end

-- A fresh manager with a prefix of its own for each test of the enclosing
-- block: t.m, t.prefix, and t.key(id, suffix) for the keys of a session.
local function fresh_store()
  local t = {}
  before_each(function()
    t.m, t.prefix = stores.new_redis()
  end)
  after_each(function()
    t.m:close()
  end)
  function t.key(id, suffix)
    return t.prefix .. "{" .. id .. "}:" .. suffix
  end
  return t
end

-- A server written in perl on a free loopback port: PERL_LISTEN opens the
-- socket as $srv and writes its port to a file the spec reads, then `body`
-- serves. Returns the port; finally() kills the server and removes its folder.
local PERL_LISTEN = [[
use strict; use IO::Socket::INET;
my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 5, ReuseAddr => 1)
  or die "listen: $!";
open(my $f, '>', $ARGV[0]) or die; print $f $srv->sockport, "\n"; close $f;
$SIG{ALRM} = sub { exit 0 }; alarm 20;
]]

local function perl_server(body, what)
  local dir = h.tmpdir()
  local portfile = dir .. "/port"
  local script = dir .. "/server.pl"
  h.write(script, PERL_LISTEN .. body)
  local pid = h.must("perl " .. h.q(script) .. " " .. h.q(portfile) .. " >/dev/null 2>&1 & echo $!")
  finally(function()
    os.execute("kill " .. string.format("%d", tonumber(pid)) .. " 2>/dev/null")
    h.rmdir(dir)
  end)
  h.wait_until(function() return (h.read(portfile) or ""):find("\n") ~= nil end, 10, what)
  return tonumber(h.read(portfile):match("%d+"))
end

describe("redis store", function()
  local srv

  setup(function()
    srv = stores.redis_server()
  end)

  describe("options", function()
    local rows = {
      { { port = 0 }, "options.port" },
      { { port = 65536 }, "options.port" },
      { { port = 1.5 }, "options.port" },
      { { port = "6379" }, "options.port" },
      { { db = -1 }, "options.db" },
      { { timeout_ms = 0 }, "options.timeout_ms" },
      { { host = "" }, "options.host" },
      { { host = 5 }, "options.host" },
      { { host = "a\0b" }, "options.host" },
      { { prefix = "p\0" }, "options.prefix" },
      { { prefix = string.rep("p", 256) }, "options.prefix" },
      { { password = 5 }, "options.password" },
      { { username = "u" }, "options.username" },
      { { max_session_bytes = 0 }, "options.max_session_bytes" },
      { { hostname = "x" }, "hostname" },
    }
    for _, row in ipairs(rows) do
      local opts, field = row[1], row[2]
      it("refuses " .. field .. " = " .. tostring(select(2, next(opts))):gsub("%z", "\\0"), function()
        opts.port = opts.port or srv.port
        local err = error_of("invalid", agentsession.redis, opts)
        assert.truthy(tostring(err):find(field, 1, true), tostring(err))
      end)
    end

    it("takes a prefix of up to 255 bytes, and an empty one", function()
      for _, prefix in ipairs({ string.rep("p", 255), "" }) do
        local m = agentsession.redis{ port = srv.port, prefix = prefix }
        local id = m:save(session{ id = "prefix-" .. #prefix }).id
        assert.are.same({ id }, stores.ids(m:list()))
        m:delete(id)
        m:close()
      end
    end)

    it("is an argument error when the options are not a table", function()
      assert.has_error(function() agentsession.redis("localhost") end)
    end)
  end)

  describe("URIs", function()
    it("open a store on the db and prefix they name", function()
      local m = agentsession.open(srv:url(3, "uri test:"))
      local id = m:save(session{ name = "in db 3" }).id
      local keys = srv:cli("-n", "3", "KEYS", "uri test:*")
      assert.truthy(keys:find("uri test:{" .. id .. "}:meta", 1, true), keys)
      assert.are.equal("", srv:cli("-n", "0", "KEYS", "uri test:*"))
      m:delete(id)
      m:close()
    end)

    it("take host, port and timeout_ms, and options beside them", function()
      local m = agentsession.open("redis://127.0.0.1:" .. srv.port .. "?timeout_ms=500",
        { prefix = "uri-opts:" })
      local id = m:save(session{}).id
      -- no messages: no list
      assert.are.same(sorted({ "uri-opts:agent:", "uri-opts:all", "uri-opts:seq",
        "uri-opts:{" .. id .. "}:meta", "uri-opts:{" .. id .. "}:state" }),
        srv:keys("uri-opts:*"))
      m:delete(id)
      m:close()
    end)

    local bad = {
      "redis:/host",
      "redis://host:port",
      "redis://host:",
      "redis://user@host",
      "redis://:pw@host/db",
      "redis://host/0?foo=1",
      "redis://host/0?timeout_ms=x",
      "redis://host/0#frag",
      "redis://:%zz@host",
      "rediss://host",
      "unix:///tmp/redis.sock",
    }
    for _, uri in ipairs(bad) do
      it("refuse " .. uri, function()
        local err = error_of("invalid", agentsession.open, uri)
        assert.truthy(tostring(err):find("uri", 1, true), tostring(err))
      end)
    end

    it("refuse an option given both in the URI and in options", function()
      local err = error_of("invalid", agentsession.open, srv:url(0, "x:"), { prefix = "y:" })
      assert.truthy(tostring(err):find("options.prefix", 1, true), tostring(err))
    end)
  end)

  describe("key layout", function()
    local t = fresh_store()

    it("keeps a session in keys sharing the hash tag {id}, and indexes it", function()
      local id = t.m:save(session{ id = "s1", name = "n", tags = { "a", "b" }, agent_name = "bot",
        messages = { { role = "user", content = "hi" }, 2 }, state = { cwd = "/" } }).id
      assert.are.same(sorted({ t.key(id, "meta"), t.key(id, "msgs"), t.key(id, "state"), t.key(id, "mw"),
        t.key(id, "words"), t.prefix .. "all", t.prefix .. "agent:bot", t.prefix .. "tag:a", t.prefix .. "tag:b",
        t.prefix .. "seq", t.prefix .. "w:n", t.prefix .. "w:a", t.prefix .. "w:b", t.prefix .. "w:user",
        t.prefix .. "w:hi" }), srv:keys(t.prefix .. "*"))
      -- the search index: each message's keys, the keys the session is filed under, each key's sessions
      local first = srv:cli("LINDEX", t.key(id, "mw"), "0")
      assert.truthy(first == " user hi " or first == " hi user ", first)
      assert.are.equal("", srv:cli("LINDEX", t.key(id, "mw"), "1"))
      assert.are.equal("2", srv:cli("LLEN", t.key(id, "mw")))
      for _, k in ipairs({ "n", "a", "b", "user", "hi" }) do
        assert.are.equal("1", srv:cli("SISMEMBER", t.key(id, "words"), k))
        assert.are.equal("s1", srv:cli("SMEMBERS", t.prefix .. "w:" .. k))
      end
      assert.are.equal("5", srv:cli("SCARD", t.key(id, "words")))
      assert.are.equal("hash", srv:cli("TYPE", t.key(id, "meta")))
      assert.are.equal("list", srv:cli("TYPE", t.key(id, "msgs")))
      assert.are.equal("string", srv:cli("TYPE", t.key(id, "state")))
      assert.are.equal("2", srv:cli("LLEN", t.key(id, "msgs")))
      assert.are.same({ role = "user", content = "hi" },
        agentsession.json.decode((srv:cli("LINDEX", t.key(id, "msgs"), "0"))))
      assert.are.same({ cwd = "/" }, agentsession.json.decode((srv:cli("GET", t.key(id, "state")))))
      assert.are.equal("a\nb", srv:cli("HGET", t.key(id, "meta"), "tags"))
      assert.are.equal("bot", srv:cli("HGET", t.key(id, "meta"), "agent_name"))
      for _, index in ipairs({ "all", "agent:bot", "tag:a", "tag:b" }) do
        assert.are.equal("1", srv:cli("ZCARD", t.prefix .. index))
      end
    end)

    it("orders the indexes by updated_at, then by write", function()
      for i = 1, 5 do t.m:save(session{ id = "o" .. i, tags = { "t" } }) end
      t.m:rename("o2", "latest")
      local members = {}
      for line in srv:cli("ZREVRANGE", t.prefix .. "tag:t", "0", "-1"):gmatch("[^\n]+") do
        members[#members + 1] = line:sub(17)
      end
      assert.are.same({ "o2", "o5", "o4", "o3", "o1" }, members)
      assert.are.same(members, stores.ids(t.m:list{ tag = "t" }))
    end)

    it("files forks under their parent", function()
      local id = t.m:save(session{ id = "p" }).id
      local fork = t.m:fork(id)
      assert.are.equal("1", srv:cli("ZCARD", t.prefix .. "parent:p"))
      assert.are.same({ fork.id }, stores.ids(t.m:list{ parent_id = id }))
    end)

    it("trims the list on rewind and moves index entries on tag and untag", function()
      local id = t.m:save(session{ id = "r", tags = { "old" }, messages = { 1, 2, 3, 4 } }).id
      t.m:rewind(id, 1)
      assert.are.equal("1", srv:cli("LLEN", t.key(id, "msgs")))
      t.m:tag(id, "new")
      t.m:untag(id, "old")
      assert.are.equal("0", srv:cli("EXISTS", t.prefix .. "tag:old"))
      assert.are.equal("1", srv:cli("ZCARD", t.prefix .. "tag:new"))
      t.m:rewind(id, 0)
      assert.are.equal("0", srv:cli("EXISTS", t.key(id, "msgs")))
    end)

    it("leaves no key of a deleted session, and only the counter once all are gone", function()
      local a = t.m:save(session{ tags = { "x" }, agent_name = "a", messages = { 1 } }).id
      local b = t.m:fork(a).id
      t.m:tag(b, "y")
      t.m:delete(a)
      -- the fork still names its parent, and so is filed under it
      assert.are.same(sorted({ t.prefix .. "all", t.prefix .. "seq", t.prefix .. "agent:a",
        t.prefix .. "tag:x", t.prefix .. "tag:y", t.prefix .. "parent:" .. a, t.key(b, "meta"),
        t.key(b, "msgs"), t.key(b, "state"), t.key(b, "mw"), t.key(b, "words"), t.prefix .. "w:x",
        t.prefix .. "w:y" }), srv:keys(t.prefix .. "*"))
      t.m:delete(b)
      assert.are.same({ t.prefix .. "seq" }, srv:keys(t.prefix .. "*"))
    end)
  end)

  describe("ids and prefixes", function()
    it("keep ids with braces, quotes, spaces and any UTF-8 apart, and leave no key behind", function()
      local m, prefix = stores.new_redis()
      local ids = { "a}b", "{x}", "}", "{", "with space", "quote\"'", "日本語", "x}:meta", "all" }
      for i, id in ipairs(ids) do
        m:save(session{ id = id, tags = { "t" .. i, "}" }, agent_name = id, messages = { i } })
      end
      for i, id in ipairs(ids) do
        local s = m:resume(id)
        assert.are.same({ i }, s.messages)
        assert.are.same({ "t" .. i, "}" }, s.metadata.tags)
        assert.are.same({ id }, stores.ids(m:list{ agent_name = id }))
      end
      assert.are.equal(#ids, #m:list{ tag = "}" })
      for _, id in ipairs(ids) do m:delete(id) end
      assert.are.same({ prefix .. "seq" }, srv:keys(prefix .. "*"))
      m:close()
    end)

    it("work with a prefix that carries a hash tag, as on Redis Cluster", function()
      local m = agentsession.redis{ port = srv.port, prefix = "{tenant-a}:" }
      local id = m:save(session{ tags = { "t" }, messages = { 1, 2 } }).id
      local fork = m:fork(id, "f", { at = 1 })
      m:rewind(id, 1)
      assert.are.same({ id, fork.id }, stores.ids(m:list())) -- the rewind came last
      for _, k in ipairs(srv:keys("*tenant-a*")) do
        assert.are.equal("{tenant-a}:", k:sub(1, 11), k)
      end
      m:delete(fork.id)
      m:delete(id)
      assert.are.same({ "{tenant-a}:seq" }, srv:keys("*tenant-a*"))
      m:close()
    end)

    it("keep stores with different prefixes or dbs apart", function()
      local a = agentsession.redis{ port = srv.port, prefix = "apart-a:" }
      local b = agentsession.redis{ port = srv.port, prefix = "apart-b:" }
      local c = agentsession.redis{ port = srv.port, prefix = "apart-a:", db = 1 }
      a:save(session{ id = "same" })
      assert.are.same({}, b:list())
      assert.are.same({}, c:list())
      error_of("not_found", b.resume, b, "same")
      a:delete("same")
      for _, m in ipairs({ a, b, c }) do m:close() end
    end)
  end)

  describe("round trips", function()
    local m

    before_each(function()
      m = stores.new_redis()
      m:list() -- connected and warm
    end)

    after_each(function()
      m:close()
    end)

    it("are one for resume and list, two for save and each other write", function()
      local s = session{ tags = { "t" }, messages = { 1, 2, 3 } }
      assert.are.equal(2, trips_during(m, function() m:save(s) end))
      local id = s.metadata.id
      assert.are.equal(1, trips_during(m, function() m:resume(id) end))
      assert.are.equal(1, trips_during(m, function() m:resume(id, { last = 1 }) end))
      assert.are.equal(1, trips_during(m, function() m:list() end))
      assert.are.equal(1, trips_during(m, function() m:list{ tags = { "t", "u" }, limit = 5 } end))
      assert.are.equal(2, trips_during(m, function() m:save(s) end))
      local fork
      assert.are.equal(2, trips_during(m, function() fork = m:fork(id) end))
      assert.are.equal(2, trips_during(m, function() m:rewind(id, 1) end))
      assert.are.equal(2, trips_during(m, function() m:tag(id, "u") end))
      assert.are.equal(2, trips_during(m, function() m:untag(id, "u") end))
      assert.are.equal(2, trips_during(m, function() m:rename(id, "n") end))
      assert.are.equal(2, trips_during(m, function() m:delete(fork.id) end))
    end)

    it("are counted by stats(), with connections and retries", function()
      local st = m:stats()
      assert.are.equal("redis", st.kind)
      assert.are.equal("redis at 127.0.0.1:" .. srv.port, st.location)
      assert.are.equal(1, st.connects)
      assert.are.equal(0, st.retries)
      assert.is_true(st.round_trips >= 2) -- the handshake and the list
      srv:cli("CLIENT", "KILL", "USER", "default", "SKIPME", "yes")
      m:list()
      assert.are.equal(2, m:stats().connects)
    end)

    it("do not grow with the number of messages", function()
      local msgs = {}
      for i = 1, 500 do msgs[i] = { i = i } end
      local s = session{ messages = msgs }
      m:save(s)
      assert.are.equal(1, trips_during(m, function() m:resume(s.metadata.id, { last = 10 }) end))
      assert.are.equal(2, trips_during(m, function() m:rewind(s.metadata.id, 100) end))
    end)
  end)

  describe("a server that fails", function()
    local own

    setup(function()
      own = rs.start()
    end)

    after_each(function()
      if not own.running then own:restart() end
    end)

    local function where()
      return "127.0.0.1:" .. own.port
    end

    -- a manager on the failing server, with a prefix of its own
    local made = 0
    local function open(opts)
      made = made + 1
      opts.port, opts.prefix = own.port, "fail" .. made .. ":"
      return agentsession.redis(opts)
    end

    it("gives unavailable naming host and port when nothing listens", function()
      own:stop()
      local err = error_of("unavailable", agentsession.redis, { port = own.port, timeout_ms = 500 })
      assert.truthy(err.message:find(where(), 1, true), err.message)
    end)

    it("gives unavailable when stopped mid-run, and the next call reconnects", function()
      local m = open{ timeout_ms = 1000 }
      local id = m:save(session{ name = "before" }).id
      own:stop()
      for _, call in ipairs({
        function() return m:resume(id) end,
        function() return m:save(session{ name = "lost" }) end,
        function() return m:list() end,
        function() return m:rename(id, "x") end,
      }) do
        local err = error_of("unavailable", call)
        assert.truthy(err.message:find(where(), 1, true), err.message)
      end
      own:restart() -- persistence is off: the server comes back empty
      local again = m:save(session{ name = "after" }).id
      assert.are.same({ again }, stores.ids(m:list()))
      m:close()
    end)

    it("gives unavailable when killed mid-run, and the next call reconnects", function()
      local m = open{}
      m:save(session{})
      own:kill()
      error_of("unavailable", m.list, m)
      own:restart()
      assert.are.same({}, m:list())
      m:close()
    end)

    it("gives unavailable within timeout_ms when the server does not answer, and writes nothing", function()
      local m = open{ timeout_ms = 300 }
      local id = m:save(session{ name = "kept" }).id
      own:pause(3)
      local t0 = h.monotime()
      local err = error_of("unavailable", m.save, m, session{ id = id, name = "changed" })
      local took = h.monotime() - t0
      assert.truthy(err.message:find("300 ms", 1, true), err.message)
      assert.truthy(err.message:find(where(), 1, true), err.message)
      -- the server sleeps 3 s: the call returned long before it woke
      assert.is_true(took < 2.5, "the call took " .. took .. " s")
      -- once the server answers again, the next call reconnects
      local deadline = h.monotime() + 10
      local ok, s
      repeat
        ok, s = pcall(m.resume, m, id)
        if not ok then h.sleep(0.1) end
      until ok or h.monotime() > deadline
      assert.is_true(ok, tostring(s))
      assert.are.equal("kept", s.metadata.name)
      m:close()
    end)

    it("ends a call within timeout_ms when the server answers a byte at a time", function()
      -- a server that answers the constructor's requests, then sends list's reply
      -- one byte every 100 ms: 60 bytes, 6 s in all
      local port = perl_server([[
my $c = $srv->accept or die "accept: $!";
my $in = '';
while (1) {
  my $n = sysread($c, my $buf, 65536) or exit 0;
  $in .= $buf;
  my $loads = () = $in =~ /\$4\r\nLOAD\r\n/g;
  last if $loads >= 3;
}
syswrite($c, "+OK\r\n" . ("\$40\r\n" . ('a' x 40) . "\r\n") x 3);
sysread($c, my $buf, 65536) or exit 0;
for my $byte (split //, '-ERR ' . ('x' x 53) . "\r\n") { syswrite($c, $byte); select(undef, undef, undef, 0.1); }
sleep 5;
]], "the drip server")
      local m
      finally(function()
        if m then m:close() end
      end)
      m = agentsession.redis{ port = port, timeout_ms = 300 }
      local t0 = h.monotime()
      local err = error_of("unavailable", m.list, m)
      local took = h.monotime() - t0
      assert.truthy(err.message:find("300 ms", 1, true), err.message)
      assert.truthy(err.message:find("127.0.0.1:" .. port, 1, true), err.message)
      -- the whole reply would take 6 s: the call ended long before it
      assert.is_true(took < 3, "the call took " .. took .. " s")
    end)

    it("says a server that is not Redis did not answer as Redis does", function()
      -- an HTTP server on the port: it answers whatever it is sent with a 400
      local port = perl_server([[
while (my $c = $srv->accept) {
  sysread($c, my $buf, 65536);
  syswrite($c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  close $c;
}
]], "the HTTP server")
      local err = error_of("unavailable", agentsession.redis, { port = port, timeout_ms = 5000 })
      assert.truthy(err.message:find("127.0.0.1:" .. port .. ": the server did not answer as Redis does",
                                     1, true), err.message)
      err = error_of("unavailable", agentsession.open, "redis://127.0.0.1:" .. port .. "/0")
      assert.truthy(err.message:find("did not answer as Redis does", 1, true), err.message)
    end)

    it("reconnects by itself when the server dropped an idle connection", function()
      local m = open{}
      local id = m:save(session{ name = "idle" }).id
      own:cli("CLIENT", "KILL", "TYPE", "normal")
      assert.are.equal("idle", m:resume(id).metadata.name)
      own:cli("CLIENT", "KILL", "TYPE", "normal")
      assert.are.equal(2, m:save(m:resume(id)).version)
      own:cli("CLIENT", "KILL", "TYPE", "normal")
      assert.are.equal(1, #m:list())
      m:close()
    end)

    it("sends a script's text when the server lost its scripts", function()
      local m = open{}
      local id = m:save(session{ tags = { "t" } }).id
      own:cli("SCRIPT", "FLUSH")
      assert.are.equal(id, m:resume(id).metadata.id)
      assert.are.same({ id }, stores.ids(m:list{ tag = "t" }))
      m:tag(id, "u")
      assert.are.same({ "t", "u" }, m:resume(id).metadata.tags)
      m:close()
    end)
  end)

  describe("passwords and databases", function()
    local locked

    setup(function()
      locked = rs.start{ password = "s3cret:/@?" }
    end)

    it("connects with the right password, in options and in a URI", function()
      local m = agentsession.redis{ port = locked.port, password = "s3cret:/@?" }
      local id = m:save(session{}).id
      m:close()
      m = agentsession.open(locked:url(0))
      assert.are.equal(id, m:resume(id).metadata.id)
      m:close()
    end)

    it("gives invalid naming the password when it is wrong or missing", function()
      for _, pw in ipairs({ "wrong", false }) do
        local err = error_of("invalid", agentsession.redis, { port = locked.port, password = pw or nil })
        assert.truthy(tostring(err):find("invalid: password: ", 1, true), tostring(err))
        assert.truthy(tostring(err):find("127.0.0.1:" .. locked.port, 1, true), tostring(err))
      end
    end)

    it("gives invalid naming the db when the server has no such db", function()
      local err = error_of("invalid", agentsession.redis, { port = srv.port, db = 16 })
      assert.truthy(tostring(err):find("db", 1, true), tostring(err))
      assert.truthy(tostring(err):find("16", 1, true), tostring(err))
    end)
  end)

  describe("damaged data", function()
    local t = fresh_store()

    local function damage_is_storage(fn)
      local err = error_of("storage", fn)
      assert.truthy(err.message:find("127.0.0.1:" .. srv.port, 1, true), err.message)
      return err
    end

    local cases = {
      { "a field of the metadata that is not a number", function(id)
        srv:cli("HSET", t.key(id, "meta"), "turn_count", "many")
      end },
      { "a field of the metadata out of range", function(id)
        srv:cli("HSET", t.key(id, "meta"), "turn_count", "4294967296")
      end },
      { "a missing field of the metadata", function(id)
        srv:cli("HDEL", t.key(id, "meta"), "version")
      end },
      { "metadata naming another id", function(id)
        srv:cli("HSET", t.key(id, "meta"), "id", "other")
      end },
      { "a tag with a control character", function(id)
        srv:cli("HSET", t.key(id, "meta"), "tags", "a\tb")
      end },
      { "a repeated tag", function(id)
        srv:cli("HSET", t.key(id, "meta"), "tags", "a\na")
      end },
      { "messages that are not a list", function(id)
        srv:cli("DEL", t.key(id, "msgs"))
        srv:cli("SET", t.key(id, "msgs"), "x")
      end },
      { "a missing state", function(id)
        srv:cli("DEL", t.key(id, "state"))
      end },
    }
    for _, case in ipairs(cases) do
      it("reports " .. case[1] .. " as storage, and changes nothing", function()
        local s = session{ id = "d", tags = { "a" }, messages = { 1, 2 } }
        t.m:save(s)
        case[2]("d")
        local before = srv:cli("DUMP", t.key("d", "meta"))
        damage_is_storage(function() return t.m:resume("d") end)
        damage_is_storage(function() return t.m:fork("d") end)
        damage_is_storage(function() return t.m:rewind("d", 1) end)
        assert.are.equal(before, srv:cli("DUMP", t.key("d", "meta")))
        assert.are.equal("1", (srv:cli("ZCARD", t.prefix .. "all")))
      end)
    end

    it("reports a message that is not JSON when it is read, forked or rewound over", function()
      t.m:save(session{ id = "j", messages = { 1, 2, 3 } })
      srv:cli("LSET", t.key("j", "msgs"), "1", "{not json")
      damage_is_storage(function() return t.m:resume("j") end)
      damage_is_storage(function() return t.m:fork("j") end)
      damage_is_storage(function() return t.m:rewind("j", 3) end)
      assert.are.equal("3", srv:cli("LLEN", t.key("j", "msgs")))
      assert.are.equal("1", srv:cli("HGET", t.key("j", "meta"), "version"))
      assert.are.equal(1, #t.m:list())
      -- what comes before the damage can still be kept
      assert.are.same({ 1 }, t.m:rewind("j", 1).messages)
    end)

    it("refuses an append over keys of another kind before writing anything", function()
      t.m:save(session{ id = "k", tags = { "x" }, messages = { 1 } })
      for _, damage in ipairs({
        function() srv:cli("DEL", t.key("k", "msgs")); srv:cli("SET", t.key("k", "msgs"), "x") end,
        function() -- the list is sound again (absent), the tag index is not
          srv:cli("DEL", t.key("k", "msgs"))
          srv:cli("DEL", t.prefix .. "tag:x")
          srv:cli("SET", t.prefix .. "tag:x", "x")
        end,
      }) do
        damage()
        local before = srv:cli("HGETALL", t.key("k", "meta"))
        damage_is_storage(function() return t.m:append("k", { 2 }, { tokens = 5 }) end)
        assert.are.equal(before, srv:cli("HGETALL", t.key("k", "meta")))
      end
    end)

    it("reports an append to a session whose metadata lost its version as storage, not not_found", function()
      t.m:save(session{ id = "v", messages = { 1 } })
      srv:cli("HDEL", t.key("v", "meta"), "version")
      local before = srv:cli("HGETALL", t.key("v", "meta"))
      local err = damage_is_storage(function() return t.m:append("v", { 2 }) end)
      assert.truthy(err.message:find("no version", 1, true), err.message)
      assert.are.equal(before, srv:cli("HGETALL", t.key("v", "meta")))
      assert.are.equal("1", srv:cli("LLEN", t.key("v", "msgs")))
    end)

    it("reports an index naming a session that does not exist", function()
      t.m:save(session{ id = "real" })
      srv:cli("ZADD", t.prefix .. "all", "99999999999999", "0000000000000001ghost")
      local err = damage_is_storage(function() return t.m:list() end)
      assert.truthy(err.message:find("ghost", 1, true), err.message)
    end)

    it("reports damaged metadata in a list, naming the session", function()
      t.m:save(session{ id = "sound", name = "n", agent_name = "a" })
      t.m:save(session{ id = "bad", name = "n", agent_name = "a", tags = { "x" } })
      local fork = t.m:fork("sound", "f")
      local meta = t.key("bad", "meta")
      local damages = {
        { "turn_count is not an integer", function() srv:cli("HSET", meta, "turn_count", "many") end },
        { "has no created_at", function() srv:cli("HDEL", meta, "created_at") end },
        { "has no seq", function() srv:cli("HDEL", meta, "seq") end },
        -- a NUL in a field, which no sound value holds
        { "not what this store writes", function()
          srv:cli("EVAL", "return redis.call('HSET', KEYS[1], 'name', 'a' .. string.char(0) .. 'b')", "1", meta)
        end },
        { "not what this store writes", function()
          srv:cli("EVAL", "return redis.call('HSET', KEYS[1], 'version', '1' .. string.char(0) .. 'b')", "1", meta)
        end },
        { "tags[2]", function() srv:cli("HSET", meta, "tags", "x\ny\tz") end },
      }
      local fields = srv:cli("HGETALL", meta)
      for _, d in ipairs(damages) do
        d[2]()
        local err = damage_is_storage(function() return t.m:list() end)
        assert.truthy(err.message:find(d[1], 1, true), err.message)
        assert.truthy(err.message:find('"bad"', 1, true), err.message)
        srv:cli("DEL", meta)
        local args = { "HSET", meta }
        for f in fields:gmatch("[^\n]+") do args[#args + 1] = f end
        srv:cli((table.unpack or rawget(_G, "unpack"))(args))
        assert.are.equal(3, #t.m:list())
      end
      -- names and parents, present or not, come back as stored
      t.m:save(session{ id = "plain" })
      local got = {}
      for _, m in ipairs(t.m:list()) do got[m.id] = m end
      assert.are.same({ "f", "sound", "n", "n" }, { got[fork.id].name, got[fork.id].parent_id,
        got.sound.name, got.bad.name })
      assert.is_nil(got.sound.parent_id)
      assert.is_nil(got.plain.name)
      assert.is_nil(got.plain.parent_id)
      local unnamed = t.m:fork("plain")
      local listed = t.m:list{ parent_id = "plain" }
      assert.are.same({ unnamed.id, "plain" }, { listed[1].id, listed[1].parent_id })
      assert.is_nil(listed[1].name)
      assert.are.same({ "x" }, t.m:list{ tag = "x" }[1].tags)
    end)

    it("refuses an append to metadata missing a field before writing anything", function()
      t.m:save(session{ id = "m", messages = { 1 } })
      for _, field in ipairs({ "created_at", "id", "seq", "agent_name" }) do
        local value = srv:cli("HGET", t.key("m", "meta"), field)
        srv:cli("HDEL", t.key("m", "meta"), field)
        local before = srv:cli("HGETALL", t.key("m", "meta"))
        damage_is_storage(function() return t.m:append("m", { 2 }, { tokens = 3 }) end)
        assert.are.equal(before, srv:cli("HGETALL", t.key("m", "meta")))
        assert.are.equal("1", srv:cli("LLEN", t.key("m", "msgs")))
        srv:cli("HSET", t.key("m", "meta"), field, value)
      end
      -- total_tokens, which an append without tokens does not add to
      for _, bad in ipairs({ "many", "-1", "007", "9223372036854775808" }) do
        srv:cli("HSET", t.key("m", "meta"), "total_tokens", bad)
        local before = srv:cli("HGETALL", t.key("m", "meta"))
        damage_is_storage(function() return t.m:append("m", { 2 }) end)
        assert.are.equal(before, srv:cli("HGETALL", t.key("m", "meta")))
        assert.are.equal("1", srv:cli("LLEN", t.key("m", "msgs")))
      end
      srv:cli("HSET", t.key("m", "meta"), "total_tokens", "0")
      local after = t.m:append("m", { 2 }, { tokens = 3 })
      assert.are.same({ 2, 3 }, { after.version, after.total_tokens })
    end)
  end)

  describe("processes sharing a server", function()
    local function child(args) return h.popen_helper("redis_child.lua", args, 120) end
    local finish = h.finish

    it("lose no tag and no session when two write at once", function()
      local m, prefix = stores.new_redis()
      m:save(session{ id = "shared" })
      local n = 150
      local a = child({ "tagger", srv.host, srv.port, prefix, "shared", "a", n })
      local b = child({ "tagger", srv.host, srv.port, prefix, "shared", "b", n })
      local out_a, out_b = finish(a), finish(b)
      assert.truthy(out_a:find("DONE " .. n, 1, true), out_a)
      assert.truthy(out_b:find("DONE " .. n, 1, true), out_b)
      local tags = m:resume("shared").metadata.tags
      assert.are.equal(2 * n, #tags)
      local seen = {}
      for _, t in ipairs(tags) do seen[t] = true end
      for i = 1, n do
        assert.is_true(seen["a-" .. i] and seen["b-" .. i], "tag " .. i .. " lost")
      end
      -- the tags of each process stay in the order it added them
      local last = { a = 0, b = 0 }
      for _, t in ipairs(tags) do
        local who, i = t:match("^(%a)%-(%d+)$")
        assert.are.equal(last[who] + 1, tonumber(i))
        last[who] = tonumber(i)
      end
      assert.are.equal(2 * n + 1, #m:list())
      assert.are.equal(n, #m:list{ agent_name = "a" })
      assert.are.equal(n, #m:list{ tag = "b" })
      assert.are.equal(tostring(2 * n + 1), srv:cli("ZCARD", prefix .. "all"))
      m:close()
    end)

    -- Runs a writer and a reader child on one session at once; returns a
    -- manager and prefix for the store. The two meet at two files (see
    -- redis_child.lua), so the reads overlap the writes; the reader's output
    -- must show it: it saw two versions or more.
    local runs = 0
    local function write_and_read(writer, writes, reader, reads, id)
      local m, prefix = stores.new_redis()
      runs = runs + 1
      local base = stores.tmpdir() .. "/overlap" .. runs
      local started, finished = base .. ".started", base .. ".finished"
      local w = child({ writer, srv.host, srv.port, prefix, id, writes, started, finished })
      local r = child({ reader, srv.host, srv.port, prefix, id, reads, started, finished })
      local out_w, out_r = finish(w), finish(r)
      assert.truthy(out_w:find("DONE " .. writes, 1, true), out_w)
      local versions = tonumber(out_r:match("DONE %d+ (%d+)"))
      assert.truthy(versions, out_r)
      assert.is_true(versions >= 2, "the reads did not overlap the writes: " .. out_r)
      return m
    end

    it("never show a reader half of a save", function()
      local m = write_and_read("writer", 200, "reader", 2000, "torn")
      assert.are.equal(200, #m:resume("torn").messages)
      m:close()
    end)

    -- Whether a session read back is whole: as redis_child.lua's writes keep it.
    local function assert_whole(s, context)
      assert.are.equal(s.metadata.turn_count, #s.messages, context .. ": turn_count and messages")
      for k, msg in ipairs(s.messages) do
        assert.are.equal(k, msg.k, context .. ": messages[" .. k .. "]")
      end
    end

    it("never show a reader half of a save, append, rewind, tag or fork", function()
      local m = write_and_read("mixer", 300, "checker", 1500, "mixed")
      local sessions = m:list{ tag = "mix" }
      assert.are.equal(61, #sessions) -- the session and its 60 forks
      for _, meta in ipairs(sessions) do assert_whole(m:resume(meta.id), meta.id) end
      m:close()
    end)

    it("keep every acknowledged write, and every session whole, when the server is killed mid-write", function()
      -- a server with an append-only file fsync'd before each reply: what it
      -- acknowledged survives a kill -9, and what it had not finished must not
      -- show at all
      local durable = rs.start{ durable = true }
      local prefix = "crash:"
      local acknowledged = {}
      for round = 1, 3 do
        local pipe = child({ "crasher", durable.host, durable.port, prefix, 4 })
        local lines = {}
        repeat
          local line = pipe:read("*l")
          lines[#lines + 1] = line
        until line == nil or #lines >= 150 + 50 * round
        durable:kill() -- while the child is in the middle of its next call
        local rest = finish(pipe)
        local out = table.concat(lines, "\n") .. "\n" .. rest
        assert.truthy(out:find("\nGONE ", 1, true),
          "round " .. round .. ": the child did not see the server go:\n" .. out)
        assert.is_nil(out:find("FAIL", 1, true), out)
        for id, v in out:gmatch("\nC (%S+) (%d+)") do
          acknowledged[id] = math.max(acknowledged[id] or 0, tonumber(v))
        end
        durable:restart() -- reads its append-only file back
        local m = agentsession.redis{ port = durable.port, prefix = prefix }
        local listed = m:list()
        local ids = {}
        for _, meta in ipairs(listed) do
          ids[meta.id] = true
          local s = m:resume(meta.id)
          assert.are.same(meta, s.metadata)
          assert_whole(s, "round " .. round .. ", " .. meta.id)
        end
        for id, v in pairs(acknowledged) do
          assert.is_true(ids[id], "round " .. round .. ": " .. id .. " is lost")
          assert.is_true(m:resume(id).metadata.version >= v,
            "round " .. round .. ": " .. id .. " lost an acknowledged write")
        end
        assert.are.equal(#listed, #m:list{ tag = "mix" })
        assert.are.equal(tostring(#listed), durable:cli("ZCARD", prefix .. "all"))
        -- no key of a session that is not listed, and every listed one has its metadata
        local metas = 0
        for _, key in ipairs(durable:keys(prefix .. "{*")) do
          local id, suffix = key:match("^crash:{(.*)}:(%a+)$")
          assert.is_true(ids[id], "round " .. round .. ": a key of no listed session: " .. key)
          if suffix == "meta" then metas = metas + 1 end
        end
        assert.are.equal(#listed, metas)
        m:close()
      end
      durable:stop()
    end)
  end)
end)

---------------------------------------------------------------------------

describe("redis: appends with an op_id", function()
  local function child(args) return h.popen_helper("redis_child.lua", args, 300) end

  it("apply each append once when the server is killed mid-append and every failed one is sent again", function()
    -- a server with an append-only file fsync'd before each reply: an append
    -- it ran survives the kill, though its reply may never have left
    local durable = rs.start{ durable = true }
    local prefix, n = "retry:", 500
    local pipe = child({ "retrier", durable.host, durable.port, prefix, "r", n })
    local lines = {}
    local function read_until(done)
      repeat
        local line = pipe:read("*l")
        lines[#lines + 1] = line
      until line == nil or done(line)
    end
    for round = 1, 3 do
      -- kill it while the child appends, then wait until an append of the
      -- child failed, and start the server again on its file
      read_until(function(line) return tonumber(line:match("^[AR] (%d+)$") or "0") >= 120 * round end)
      durable:kill()
      read_until(function(line) return line:find("^F ") ~= nil end)
      durable:restart()
    end
    local rest = pipe:read("*a")
    pipe:close()
    local out = "\n" .. table.concat(lines, "\n") .. "\n" .. rest
    local failures, repeats = out:match("\nDONE " .. n .. " (%d+) (%d+)")
    assert.truthy(failures, out:sub(-3000))
    assert.is_true(tonumber(failures) >= 3, out:sub(-3000))
    local outcome = {}
    for tag, k in out:gmatch("\n([AR]) (%d+)") do
      assert.is_nil(outcome[tonumber(k)], "append " .. k .. " succeeded twice")
      outcome[tonumber(k)] = tag
    end
    local m = agentsession.redis{ port = durable.port, prefix = prefix }
    local r = m:resume("r")
    -- none stored twice, none lost, in order
    assert.are.equal(n, #r.messages)
    for k, msg in ipairs(r.messages) do assert.are.equal(k, msg.k, "message " .. k) end
    assert.are.equal(n, r.metadata.turn_count)
    assert.are.equal(n + 1, r.metadata.version)
    for k = 1, n do assert.truthy(outcome[k], "append " .. k .. " never succeeded") end
    -- the child saw `repeats` appends fail though the server had applied them
    assert.is_true(tonumber(repeats) <= tonumber(failures))
    m:close()
    durable:stop()
  end)
end)
