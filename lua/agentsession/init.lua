--- Sessions of AI agents for Lua 5.1 to 5.4 and LuaJIT: create, save, resume, append, fork,
-- rewind, tag, list and delete an agent's conversation, kept in memory, in a SQLite file, in
-- Redis or in a store written in Lua, with its history kept exactly as it was written.
-- @module agentsession

-- The C module (agentsession.core) holds the codec, the managers and their
-- stores; this file adds the helpers that read best in Lua.

-- The Lua running this file, as the C module names the Lua it is built for.
local function running_lua()
  if package.loaded.jit then return "LuaJIT" end
  return _VERSION
end

-- A C module built for another Lua cannot be linked (an undefined symbol): find
-- the Lua it is built for in the file, and say so, naming both.
local function load_core()
  local ok, core = pcall(require, "agentsession.core")
  if ok then return core end
  local message = tostring(core)
  local path = message:match("from file '(.-)'")
  local file = path and io.open(path, "rb")
  if file then
    local built_for = file:read("*a"):match("agentsession%.core is built for ([^%z]-)%.%z")
    file:close()
    if built_for and built_for ~= running_lua() then
      message = ("agentsession.core at %s is built for %s, but %s loads it: build it for %s"
        .. " (make LUA=…, or luarocks make with its --lua-version) or point package.cpath"
        .. " at that build (%s)"):format(path, built_for, running_lua(), running_lua(), message)
    end
  end
  error(message, 0)
end

local core = load_core()

local M = {
  VERSION = "0.1.0",
  null = core.null,
  array_mt = core.array_mt,
  array = core.array,
  json = core.json,
  uuid = core.uuid,
  now = core.now,
  is_error = core.is_error,
  memory = core.memory,
  sqlite = core.sqlite,
  redis = core.redis,
  custom = core.custom,
}

-- Raises an error object whose `where` names the function at `level`, counted
-- as error() counts: 2 names the caller of the function calling fail.
local function fail(kind, message, level)
  error(core.new_error(kind, message, nil, (level or 1) + 1), 0)
end

--- Does the metadata (or a session's metadata) carry a tag?
-- @within Sessions
-- @tparam table metadata a session's metadata, or a session
-- @string tag the tag
-- @treturn bool true when its `tags` hold `tag`
function M.has_tag(metadata, tag)
  if type(metadata) ~= "table" then
    error("bad argument #1 to 'has_tag' (table expected, got " .. type(metadata) .. ")", 2)
  end
  if type(tag) ~= "string" then
    error("bad argument #2 to 'has_tag' (string expected, got " .. type(tag) .. ")", 2)
  end
  local tags = metadata.tags
  if tags == nil and type(metadata.metadata) == "table" then
    tags = metadata.metadata.tags
  end
  if type(tags) ~= "table" then return false end
  for _, t in ipairs(tags) do
    if t == tag then return true end
  end
  return false
end

local session_fields = {
  id = "string", name = "string", agent_name = "string",
  tags = "table", messages = "table", state = true,
}

--- A new session table with defaults filled in.
-- @within Sessions
-- @tparam[opt] table fields `{ id =, name =, tags =, agent_name =, messages =, state = }`;
-- by default a new UUID v4 id, `agent_name = ""`, zero times and counts, no messages and an
-- empty-object state
-- @treturn table `{ metadata = {…}, messages = {…}, state = … }`
-- @raise `invalid` for an unknown field or a field of the wrong type
function M.session(fields)
  if fields == nil then fields = {} end
  if type(fields) ~= "table" then
    error("bad argument #1 to 'session' (table expected, got " .. type(fields) .. ")", 2)
  end
  for k, v in pairs(fields) do
    local want = session_fields[k]
    if want == nil then
      fail("invalid", tostring(k) .. ": unknown field of a session", 2)
    elseif want ~= true and type(v) ~= want then
      fail("invalid", k .. ": must be a " .. want .. " (got " .. type(v) .. ")", 2)
    end
  end
  local state_type = type(fields.state)
  if state_type == "function" or state_type == "thread"
      or (state_type == "userdata" and fields.state ~= core.null) then
    fail("invalid", "state: a " .. state_type .. " cannot be encoded as JSON", 2)
  end
  local tags = setmetatable({}, core.array_mt)
  if fields.tags then
    for i, t in ipairs(fields.tags) do
      if type(t) ~= "string" then
        fail("invalid", "tags[" .. i .. "]: must be a string (got " .. type(t) .. ")", 2)
      end
      tags[i] = t
    end
  end
  return {
    metadata = {
      id = fields.id or core.uuid(),
      name = fields.name,
      tags = tags,
      agent_name = fields.agent_name or "",
      created_at = 0,
      updated_at = 0,
      turn_count = 0,
      total_tokens = 0,
    },
    messages = fields.messages or setmetatable({}, core.array_mt),
    state = fields.state == nil and {} or fields.state,
  }
end

local function uri_decode(s, what)
  if s:gsub("%%%x%x", ""):find("%", 1, true) then
    fail("invalid", "uri: " .. what .. " has a % not followed by two hex digits", 5)
  end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- "host[:port]" or "[v6]:port" of a URI: host (nil when empty) and port.
local function host_port(hostport, bad)
  local host, port = hostport:match("^%[([^%]]+)%]:?(%d*)$")
  if host == nil then host, port = hostport:match("^([^:%[%]]*):?(%d*)$") end
  if host == nil or (port == "" and hostport:sub(-1) == ":") then
    bad("cannot read host and port in \"" .. hostport .. "\"")
  end
  return host ~= "" and uri_decode(host, "the host") or nil, port
end

-- "redis://[[user]:password@]host[:port][/db][?prefix=P&timeout_ms=N]" as
-- the options of agentsession.redis, over those in `opts` (nil or a table);
-- with `cluster`, "redis+cluster://[[user]:password@]host:port,host:port/?..."
-- as those of a cluster. Called by store_for, for open: errors name open's caller.
local function redis_options(rest, opts, cluster)
  local function bad(why) fail("invalid", "uri: " .. why, 5) end
  local form = cluster and "redis+cluster://host:port,host:port/" or "redis://host:port/db"
  if rest:sub(1, 2) ~= "//" then bad("write \"" .. form .. "\"") end
  local authority, path, query = rest:sub(3):match("^([^/?#]*)([^?#]*)(.*)$")
  if authority == nil or query:find("#", 1, true) then bad("a fragment (#) is not part of this form") end
  local o = {}
  local userinfo, hostport = authority:match("^(.*)@([^@]*)$")
  if userinfo then
    local user, password = userinfo:match("^([^:]*):(.*)$")
    if user == nil then bad("write the password as \":password@\"") end
    if user ~= "" then o.username = uri_decode(user, "the username") end
    o.password = uri_decode(password, "the password")
  else
    hostport = authority
  end
  if cluster then
    o.cluster = {}
    for node in (hostport .. ","):gmatch("([^,]*),") do
      local host, port = host_port(node, bad)
      if host == nil or port == "" then bad("write each node as host:port (got \"" .. node .. "\")") end
      o.cluster[#o.cluster + 1] = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
    end
    if path ~= "" and path ~= "/" then bad("a cluster has no db: write \"" .. form .. "\"") end
    path = ""
  else
    local host, port = host_port(hostport, bad)
    o.host = host
    if port ~= "" then o.port = tonumber(port) end
  end
  if path ~= "" and path ~= "/" then
    local db = path:match("^/(%d+)$")
    if db == nil then bad("the path must be a db number, as in \"/0\"") end
    o.db = tonumber(db)
  end
  for pair in query:sub(2):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if k == "prefix" then
      o.prefix = uri_decode(v, "prefix")
    elseif k == "timeout_ms" and v:match("^%d+$") then
      o.timeout_ms = tonumber(v)
    else
      bad("unknown or malformed parameter \"" .. pair .. "\" (prefix=, timeout_ms=)")
    end
  end
  for k, v in pairs(opts or {}) do
    if o[k] ~= nil then
      fail("invalid", "options." .. tostring(k) .. ": given both in the uri and in options", 4)
    end
    o[k] = v
  end
  return o
end

-- The constructor for a URI and its arguments. Called by open: errors name
-- open's caller.
local function store_for(uri, opts)
  if uri == "memory:" then return M.memory, opts end
  local scheme, rest = uri:match("^(%a[%w+.-]*):(.*)$")
  if scheme == nil then
    if uri == "" then fail("invalid", "uri: must not be empty", 3) end
    return M.sqlite, uri, opts
  elseif scheme == "sqlite" then
    if rest == "" then fail("invalid", "uri: \"sqlite:\" needs a path", 3) end
    if rest:sub(1, 2) == "//" then
      fail("invalid", "uri: write \"sqlite:PATH\" (\"sqlite://\" is not a form this takes)", 3)
    end
    return M.sqlite, rest, opts
  elseif scheme == "redis" or scheme == "redis+cluster" then
    return M.redis, redis_options(rest, opts, scheme == "redis+cluster")
  elseif scheme == "rediss" or scheme == "redis+unix" or scheme == "unix" then
    fail("invalid", "uri: \"" .. scheme .. ":\" is not supported: write \"redis://host:port/db\"", 3)
  end
  fail("invalid", "uri: no store for scheme \"" .. scheme .. "\"", 3)
end

--- A manager from a URI: `"memory:"`, `"sqlite:PATH"` or a bare path (no `scheme:` prefix),
-- `"redis://[[user]:password@]host[:port][/db][?prefix=P&timeout_ms=N]"`, or
-- `"redis+cluster://[[user]:password@]host:port,host:port/[?prefix=P&timeout_ms=N]"` for a
-- Redis Cluster (any of its nodes).
-- @within Managers
-- @string uri the store
-- @tparam[opt] table opts the options of the store's constructor
-- @treturn SessionManager the manager
-- @raise `invalid` for a malformed URI, an unknown scheme or an option given twice; what
-- the store's constructor raises
function M.open(uri, opts)
  if type(uri) ~= "string" then
    error("bad argument #1 to 'open' (string expected, got " .. type(uri) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'open' (table expected, got " .. type(opts) .. ")", 2)
  end
  local new, arg1, arg2 = store_for(uri, opts)
  -- an error object of the constructor names this line: raised again, open's caller
  local ok, mgr = pcall(new, arg1, arg2)
  if not ok then
    if core.is_error(mgr) then mgr = core.new_error(mgr.kind, mgr.message, mgr.id, 2) end
    error(mgr, 0)
  end
  return mgr
end

--- The values of the module.
-- @field VERSION the version of this library, `"0.1.0"`
-- @field null JSON null: the same value as lua-cjson's `cjson.null`
-- @field array_mt the metatable that marks a table as a JSON array (see `array`)
-- @table agentsession
-- @within Values
return M
