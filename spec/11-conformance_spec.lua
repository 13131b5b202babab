-- agentsession.conformance: it passes our stores, it fails stores broken on
-- purpose (one rule at a time), and run() keeps its own contract.
local agentsession = require("agentsession")
local conformance = require("agentsession.conformance")
local stores = require("helpers.stores")

local array_mt = agentsession.array_mt
local is_error = agentsession.is_error

local copy = require("helpers.deep").copy
local interp = require("helpers.interp")

local unpack = table.unpack or rawget(_G, "unpack")

-- table.pack, which Lua 5.1 and LuaJIT lack.
local function pack(...)
  return { n = select("#", ...), ... }
end

-- An integer: math.type says so where Lua has integers, elsewhere an integral number.
local function is_integer(v)
  if math.type then return math.type(v) == "integer" end
  return type(v) == "number" and v == math.floor(v)
end

-- A deep copy of v with every value passed through leaf(v) and every table
-- through node(t) (after its children).
local function map(v, leaf, node)
  if type(v) ~= "table" then return leaf(v) end
  local out = {}
  for k, x in pairs(v) do out[k] = map(x, leaf, node) end
  setmetatable(out, getmetatable(v))
  return node and node(out) or out
end

local METHODS = { "save", "resume", "list", "fork", "rewind", "tag", "untag", "rename", "delete", "append",
  "export", "import", "search", "prune", "close" }
local WRITES = { "save", "fork", "rewind", "tag", "untag", "rename", "delete", "append", "import" }

-- A factory of managers that are plain Lua tables calling through to a real
-- memory manager, except for the methods that `make(real)` returns.
local function proxy(make, opts)
  return function()
    local real = agentsession.memory(opts)
    local over = make and make(real) or {}
    local p = {}
    for _, name in ipairs(METHODS) do
      local f = over[name]
      if f then
        p[name] = function(_, ...) return f(...) end
      else
        p[name] = function(_, ...) return real[name](real, ...) end
      end
    end
    return p
  end
end

-- Overrides passing every metadata table the manager returns through fix.
local function patch_metadata(real, fix)
  local function fix_session(s)
    if type(s) == "table" and type(s.metadata) == "table" then fix(s.metadata) end
    return s
  end
  return {
    save = function(...) return fix(real:save(...)) end,
    resume = function(...) return fix_session(real:resume(...)) end,
    list = function(...)
      local l = real:list(...)
      for _, m in ipairs(l) do fix(m) end
      return l
    end,
    fork = function(...) return fix(real:fork(...)) end,
    rewind = function(...) return fix_session(real:rewind(...)) end,
    append = function(...) return fix(real:append(...)) end,
    import = function(...) return fix(real:import(...)) end,
  }
end

local json = agentsession.json

-- An export whose text goes through edit(text) first.
local function edit_export(real, edit)
  return { export = function(id) return (edit(real:export(id))) end }
end

-- An import whose document, when it is an object with metadata, goes through
-- edit(doc) first.
local function edit_import(real, edit)
  return { import = function(text, ...)
    local ok, doc = pcall(json.decode, text)
    if ok and type(doc) == "table" and type(doc.metadata) == "table" then
      edit(doc)
      text = json.encode(doc)
    end
    return real:import(text, ...)
  end }
end

-- Options without the key named.
local function without(opts, key)
  if type(opts) ~= "table" then return opts end
  local c = copy(opts)
  c[key] = nil
  return c
end

local MISSING_ID = "0b9f6a2e-1c3d-4e5f-8a7b-9c0d1e2f3a4b"

local function exists(real, id)
  return (pcall(real.resume, real, id))
end

-- Each: a name, the substrings of which at least one failure line must
-- contain (the rule family that should catch it), the overrides, and the
-- options of the memory manager underneath.
local broken = {
  { "drops the last message on save", { "save:" }, function(real)
    return { save = function(s)
      local c = copy(s)
      if type(c) == "table" and type(c.messages) == "table" and #c.messages > 0 then table.remove(c.messages) end
      return real:save(c)
    end }
  end },
  { "drops the last message on resume", { "save:", "resume:" }, function(real)
    return { resume = function(...)
      local r = real:resume(...)
      table.remove(r.messages)
      return r
    end }
  end },
  { "loses the state", { "save: keeps the state", "values:" }, function(real)
    return { resume = function(...)
      local r = real:resume(...)
      r.state = {}
      return r
    end }
  end },
  { "ignores a second save of an id", { "save: saving again" }, function(real)
    return { save = function(s)
      local ok, r = pcall(real.resume, real, s.metadata.id)
      if ok then return r.metadata end
      return real:save(s)
    end }
  end },
  { "keeps a reference to the caller's table", { "resume: changing the caller's table" }, function(real)
    local saved = {}
    return {
      save = function(s)
        local m = real:save(s)
        saved[m.id] = s
        return m
      end,
      resume = function(id, ...)
        local r = real:resume(id, ...)
        local s = saved[id]
        if s and select("#", ...) == 0 then r.messages, r.state = s.messages, s.state end
        return r
      end,
    }
  end },
  { "writes the times into the caller's table", { "save: does not modify" }, function(real)
    return { save = function(s)
      local m = real:save(s)
      s.metadata.created_at, s.metadata.updated_at = m.created_at, m.updated_at
      return m
    end }
  end },
  { "rename does nothing", { "rename:" }, function()
    return { rename = function() end }
  end },
  { "claims to delete what is not there", { "delete" }, function(real)
    return { delete = function(id)
      local ok, err = pcall(real.delete, real, id)
      if not ok and not is_error(err, "not_found") then error(err, 0) end
    end }
  end },
  { "lists oldest first", { "list:" }, function(real)
    return { list = function(...)
      local l, r = real:list(...), setmetatable({}, array_mt)
      for i = #l, 1, -1 do r[#r + 1] = l[i] end
      return r
    end }
  end },
  { "breaks ties on updated_at by the oldest write", { "list: ties" }, function(real)
    return { list = function(...)
      local l, r = real:list(...), setmetatable({}, array_mt)
      local i = 1
      while i <= #l do
        local j = i
        while j < #l and l[j + 1].updated_at == l[i].updated_at do j = j + 1 end
        for k = j, i, -1 do r[#r + 1] = l[k] end
        i = j + 1
      end
      return r
    end }
  end },
  { "lists nothing", { "list:" }, function()
    return { list = function() return setmetatable({}, array_mt) end }
  end },
  { "misses the last session a search finds", { "search:" }, function(real)
    return { search = function(...)
      local r = real:search(...)
      table.remove(r)
      return r
    end }
  end },
  { "searches without the filters", { "search: the filters of list" }, function(real)
    return { search = function(query, o)
      return real:search(query, without(without(without(without(o, "tag"), "tags"), "agent_name"), "parent_id"))
    end }
  end },
  { "gives the first message that matched", { "search: gives the last message" }, function(real)
    return { search = function(...)
      local r = real:search(...)
      for _, hit in ipairs(r) do
        if hit.index > 1 then hit.index = 1 end
      end
      return r
    end }
  end },
  { "prunes what keep_tag protects", { "prune: keep_tag" }, function(real)
    return { prune = function(o) return real:prune(without(o, "keep_tag")) end }
  end },
  { "prunes with dry_run", { "prune: dry_run" }, function(real)
    return { prune = function(o) return real:prune(without(o, "dry_run")) end }
  end },
  { "ignores the tag filter of list", { "list: filter tag" }, function(real)
    return { list = function(filter)
      local f = copy(filter)
      if type(f) == "table" then f.tag = nil end
      return real:list(f)
    end }
  end },
  { "forks without the messages", { "fork:" }, function(real)
    return { fork = function(id, name) return real:fork(id, name, { at = 0 }) end }
  end },
  { "names a fork '<name> fork'", { "fork: names" }, function(real)
    return { fork = function(id, name, o)
      if name == nil then
        local ok, src = pcall(real.resume, real, id)
        if ok and src.metadata.name then name = src.metadata.name .. " fork" end
      end
      if o == nil then return real:fork(id, name) end
      return real:fork(id, name, o)
    end }
  end },
  { "touches the source of a fork", { "fork: leaves the source" }, function(real)
    return { fork = function(id, ...)
      local m = real:fork(id, ...)
      real:tag(id, {})
      return m
    end }
  end },
  { "rewinds one message short", { "rewind:" }, function(real)
    return { rewind = function(id, k)
      if is_integer(k) and k > 0 then k = k - 1 end
      return real:rewind(id, k)
    end }
  end },
  { "takes a negative rewind index as 0", { "rewind: a negative" }, function(real)
    return { rewind = function(id, k) return real:rewind(id, math.max(k, 0)) end }
  end },
  { "returns repeated tags from tag", { "tag:" }, function(real)
    return { tag = function(id, tags)
      local r = real:tag(id, tags)
      for _, t in ipairs(type(tags) == "table" and tags or { tags }) do r[#r + 1] = t end
      return r
    end }
  end },
  { "accepts an empty tag", { "tag: an empty tag" }, function(real)
    return { tag = function(id, tags)
      if tags == "" then return real:resume(id).metadata.tags end
      return real:tag(id, tags)
    end }
  end },
  { "untag removes nothing", { "untag:" }, function(real)
    return { untag = function(id) return real:resume(id).metadata.tags end }
  end },
  { "never moves version past 1", { "version:" }, function(real)
    return patch_metadata(real, function(m) m.version = 1 return m end)
  end },
  { "never moves updated_at", { "timestamps:" }, function(real)
    local first = {}
    return patch_metadata(real, function(m)
      first[m.id] = first[m.id] or m.updated_at
      m.updated_at = first[m.id]
      return m
    end)
  end },
  { "overwrites created_at on a re-save", { "timestamps: re-saving" }, function(real)
    return { save = function(s)
      local c = copy(s)
      if type(c) == "table" and type(c.metadata) == "table" and exists(real, c.metadata.id) then
        c.metadata.created_at = agentsession.now()
      end
      return real:save(c)
    end }
  end },
  { "returns the same table from every resume", { "resume:" }, function(real)
    local cache = {}
    local over = {
      resume = function(id, ...)
        if select("#", ...) > 0 then return real:resume(id, ...) end
        cache[id] = cache[id] or real:resume(id)
        return cache[id]
      end,
    }
    for _, name in ipairs(WRITES) do
      over[name] = function(...)
        cache = {}
        return real[name](real, ...)
      end
    end
    return over
  end },
  interp.has_integers and { "turns integers into floats", { "values: integers" }, function(real)
    local function floats(v) return math.type(v) == "integer" and v + 0.0 or v end
    return { resume = function(...)
      local r = real:resume(...)
      r.messages, r.state = map(r.messages, floats), map(r.state, floats)
      return r
    end }
  end } or { "keeps numbers to 14 significant digits, as lua-cjson 2.1.0 does", { "values: integers" },
    function(real)
      -- where numbers are doubles, integers up to 2^53 must come back exactly
      local function rounded(v) return type(v) == "number" and tonumber(string.format("%.14g", v)) or v end
      return { resume = function(...)
        local r = real:resume(...)
        r.messages, r.state = map(r.messages, rounded), map(r.state, rounded)
        return r
      end }
    end },
  { "gives {} for []", { "values: [] and {}" }, function(real)
    local function same(v) return v end
    local function unmark(t)
      if next(t) == nil then setmetatable(t, nil) end
      return t
    end
    return { resume = function(...)
      local r = real:resume(...)
      r.messages, r.state = map(r.messages, same, unmark), map(r.state, same, unmark)
      return r
    end }
  end },
  { "ignores {last = n}", { "resume last:" }, function(real)
    return { resume = function(id) return real:resume(id) end }
  end },
  { "saves a window as a whole session", { "window:" }, function(real)
    return { save = function(s, ...)
      local c = copy(s)
      if type(c) == "table" then c.window = nil end
      return real:save(c, ...)
    end }
  end },
  { "gives no window field", { "window:" }, function(real)
    return { resume = function(...)
      local r = real:resume(...)
      r.window = nil
      return r
    end }
  end },
  { "saves a window that stops before the end", { "window: one that stops" }, function(real)
    return { save = function(s, ...)
      local c = copy(s)
      if type(c) == "table" and type(c.window) == "table" and c.window.total and c.window.first then
        c.window.count = c.window.total - c.window.first + 1
      end
      return real:save(c, ...)
    end }
  end },
  { "saves a window over writes made since it was read", { "window: saving after another write",
      "window: saving a window of a deleted" }, function(real)
    return { save = function(s, ...)
      local c = copy(s)
      if type(c) == "table" and type(c.window) == "table" then
        local ok, cur = pcall(real.resume, real, c.metadata.id, { last = 0 })
        if not ok then c.window = nil
        else c.window.version, c.window.total = cur.window.version, cur.window.total end
      end
      return real:save(c, ...)
    end }
  end },
  { "ignores the state of an append", { "append: state" }, function(real)
    return { append = function(id, msgs, o) return real:append(id, msgs, without(o, "state")) end }
  end },
  { "raises strings for not_found", { "errors:" }, function(real)
    local over = {}
    for _, name in ipairs(METHODS) do
      over[name] = function(...)
        local res = pack(pcall(real[name], real, ...))
        if not res[1] then
          local err = res[2]
          if is_error(err, "not_found") then error("no such session: " .. tostring(err.id), 0) end
          error(err, 0)
        end
        return unpack(res, 2, res.n)
      end
    end
    return over
  end },
  { "leaves a session behind after a failed save", { "errors: invalid" }, function(real)
    return { save = function(s)
      local ok, res = pcall(real.save, real, s)
      if ok then return res end
      if type(s) == "table" and type(s.metadata) == "table" and type(s.metadata.id) == "string" then
        pcall(real.save, real, { metadata = { id = s.metadata.id, agent_name = "" } })
      end
      error(res, 0)
    end }
  end },
  { "drops the last appended message", { "append:" }, function(real)
    return { append = function(id, msgs, ...)
      local c = copy(msgs)
      if type(c) == "table" and #c > 0 then table.remove(c) end
      return real:append(id, c, ...)
    end }
  end },
  { "ignores tokens on append", { "append: total_tokens" }, function(real)
    return { append = function(id, msgs, o) return real:append(id, msgs, without(o, "tokens")) end }
  end },
  { "appends through resume and save, forgetting the counters", { "append:" }, function(real)
    return { append = function(id, msgs, o)
      local s = real:resume(id)
      for _, m in ipairs(msgs) do s.messages[#s.messages + 1] = m end
      return real:save(s, without(o, "tokens"))
    end }
  end },
  { "ignores expect_version", { "expect_version:" }, function(real)
    return {
      save = function(s, o) return real:save(s, without(o, "expect_version")) end,
      append = function(id, msgs, o) return real:append(id, msgs, without(o, "expect_version")) end,
    }
  end },
  { "exports version too", { "export:" }, function(real)
    return { export = function(id)
      local m = real:resume(id).metadata
      return (real:export(id):gsub('("total_tokens":%d+)', "%1" .. ',"version":' .. m.version, 1))
    end }
  end },
  { "exports no parent_id", { "export: a fork's document", "import: a fork keeps its parent_id" }, function(real)
    return edit_export(real, function(text) return text:gsub(',"parent_id":"[^"]*"', "", 1) end)
  end },
  { "exports parent_id null for a session that has none", { "export:" }, function(real)
    return edit_export(real, function(text)
      if text:find('"parent_id":', 1, true) then return text end
      return text:gsub('("total_tokens":%d+)', '%1,"parent_id":null', 1)
    end)
  end },
  { "imports without parent_id", { "import: a fork keeps its parent_id" }, function(real)
    return edit_import(real, function(doc) doc.metadata.parent_id = nil end)
  end },
  { "exports camelCase field names", { "export:" }, function(real)
    return edit_export(real, function(text)
      return text:gsub('"agent_name":', '"agentName":', 1):gsub('"created_at":', '"createdAt":', 1)
    end)
  end },
  { "exports {} for []", { "export:" }, function(real)
    return edit_export(real, function(text) return text:gsub("%[%]", "{}") end)
  end },
  { "imports with the timestamps reset to now", { "import:" }, function(real)
    return edit_import(real, function(doc)
      doc.metadata.created_at, doc.metadata.updated_at = agentsession.now(), agentsession.now()
    end)
  end },
  { "ignores replace on import", { "import: replace" }, function(real)
    return { import = function(text) return real:import(text) end }
  end },
  { "lists the forks of a session oldest first", { "lineage: list{ parent_id }" }, function(real)
    return { list = function(filter)
      local l = real:list(filter)
      if type(filter) == "table" and filter.parent_id then
        local r = setmetatable({}, array_mt)
        for i = #l, 1, -1 do r[#r + 1] = l[i] end
        return r
      end
      return l
    end }
  end },
  { "applies a repeated op_id twice", { "op_id:" }, function(real)
    return { append = function(id, msgs, o)
      return real:append(id, msgs, without(o, "op_id")), true
    end }
  end },
  { "has no size limit", { "too_large:" }, nil, { max_session_bytes = 64 * 1024 * 1024 } },
  { "close does nothing", { "close:" }, function()
    return { close = function() end }
  end },
  { "fails a second close", { "close:" }, function(real)
    local closed = false
    return { close = function()
      if closed then error("already closed", 0) end
      closed = true
      real:close()
    end }
  end },
}


-- An append whose op_id, when this proxy saw it among a session's earlier
-- ones, is handed to `real` only while it is one of the session's last `kept`:
-- an older one is applied again. Returns `real`'s two results.
local function forgetting_op_ids(real, kept)
  local seen = {}
  return function(id, msgs, o)
    local op = type(o) == "table" and type(o.op_id) == "string" and o.op_id
    if not op then return real:append(id, msgs, o) end
    local ops = seen[id] or {}
    seen[id] = ops
    for i = #ops, 1, -1 do
      if ops[i] == op and #ops - i >= kept then table.remove(ops, i) o = without(o, "op_id") end
    end
    local meta, applied = real:append(id, msgs, o)
    if applied then ops[#ops + 1] = op end
    return meta, applied
  end
end

-- Subtler breakage, each run against one family only (opts.only) and each
-- expected to fail one named check.
local subtle = {
  { "remembers only the last 10 op ids of a session", "op_id: the op ids of the last 100", function(real)
    return { append = forgetting_op_ids(real, 10) }
  end },
  { "returns true for a repeated op_id", "op_id: sent again, the append changes nothing", function(real)
    return { append = function(...)
      return (real:append(...)), true
    end }
  end },
  { "raises conflict for a repeat with a stale expect_version", "op_id: a repeat with other messages",
    function(real)
      return { append = function(id, msgs, o)
        if type(o) == "table" and o.expect_version and o.op_id then
          local version = real:resume(id, { last = 0 }).metadata.version
          if version ~= o.expect_version then return real:append(id, msgs, without(o, "op_id")) end
        end
        return real:append(id, msgs, o)
      end }
    end },
  { "returns metadata without its version from save", "save: returns the stored metadata", function(real)
    return { save = function(...)
      local m = real:save(...)
      m.version = nil
      return m
    end }
  end },
  { "adds a field of its own to the metadata", "save: metadata has the documented fields", function(real)
    return patch_metadata(real, function(m) m.seq = 1 return m end)
  end },
  { "cuts names at 1000 bytes", "save: keeps a 255-byte id", function(real)
    return patch_metadata(real, function(m)
      if type(m.name) == "string" then m.name = m.name:sub(1, 1000) end
      return m
    end)
  end },
  { "returns the given tags, repeats included, from save", "save: drops repeated tags", function(real)
    return { save = function(s)
      local m = real:save(s)
      m.tags = copy(s.metadata.tags)
      return m
    end }
  end },
  { "leaves created_at 0 as 1", "timestamps: save sets created_at to now when it is 0", function(real)
    return { save = function(s)
      local c = copy(s)
      if c.metadata.created_at == 0 then c.metadata.created_at = 1 end
      return real:save(c)
    end }
  end },
  { "takes created_at nil as 1", "timestamps: save sets created_at to now when it is nil", function(real)
    return { save = function(s)
      local c = copy(s)
      if c.metadata.created_at == nil then c.metadata.created_at = 1 end
      return real:save(c)
    end }
  end },
  { "replaces a given created_at by now", "timestamps: save keeps a non-zero created_at", function(real)
    return { save = function(s)
      local c = copy(s)
      if exists(real, c.metadata.id) == false then c.metadata.created_at = 0 end
      return real:save(c)
    end }
  end },
  { "resets created_at on rename", "timestamps: rewind, tag, untag and rename keep created_at", function(real)
    return { rename = function(id, name)
      real:rename(id, name)
      local s = real:resume(id)
      s.metadata.created_at = agentsession.now()
      real:save(s)
    end }
  end },
  { "bumps the version on resume", "version: reads do not change it", function(real)
    local reads = {}
    return { resume = function(id, ...)
      local r = real:resume(id, ...)
      reads[id] = (reads[id] or 0) + 1
      r.metadata.version = r.metadata.version + reads[id] - 1
      return r
    end }
  end },
  { "is not empty when made", "list: an empty store lists nothing", function(real)
    real:save(agentsession.session{ name = "left over" })
    return {}
  end },
  { "takes limit 0 as no limit", "list: limit 0 gives nothing", function(real)
    return { list = function(filter)
      local f = copy(filter)
      if type(f) == "table" and f.limit == 0 then f.limit = nil end
      if f == nil then return real:list() end
      return real:list(f)
    end }
  end },
  { "gives the last session for an offset past the end", "list: an offset past the end", function(real)
    return { list = function(filter)
      local l = real:list(filter)
      if type(filter) == "table" and filter.offset and #l == 0 then return real:list{ limit = 1 } end
      return l
    end }
  end },
  { "gives forks uppercase ids", "fork: gives the copy a new UUID v4 id", function(real)
    return { fork = function(...)
      local m = real:fork(...)
      local s = real:resume(m.id)
      real:delete(m.id)
      s.metadata.id = m.id:upper()
      return real:save(s)
    end }
  end },
  { "ignores the name given to fork", "fork: uses the name given", function(real)
    return { fork = function(id) return real:fork(id) end }
  end },
  { "names a fork of an unnamed session ' (fork)'", "fork: leaves the copy unnamed", function(real)
    return { fork = function(id, name, ...)
      if name == nil and real:resume(id).metadata.name == nil then name = " (fork)" end
      return real:fork(id, name, ...)
    end }
  end },
  { "names every fork of an unnamed session ' (fork)'", "fork: uses the name given when the source is unnamed",
    function(real)
      return { fork = function(id, name, ...)
        if real:resume(id).metadata.name == nil then name = " (fork)" end
        return real:fork(id, name, ...)
      end }
    end },
  { "forgets parent_id", "fork: sets parent_id", function(real)
    return patch_metadata(real, function(m) m.parent_id = nil return m end)
  end },
  { "gives a fork the created_at of its source", "fork: sets created_at and updated_at to now", function(real)
    return { fork = function(id, ...)
      local src = real:resume(id).metadata
      local m = real:fork(id, ...)
      m.created_at = src.created_at
      return m
    end }
  end },
  { "returns the source's metadata from fork", "fork: returns the stored metadata of the copy", function(real)
    return { fork = function(id, ...)
      local m = real:fork(id, ...)
      local src = real:resume(id).metadata
      src.id = m.id
      return src
    end }
  end },
  { "rounds a fractional rewind index down", "rewind: a fractional index", function(real)
    return { rewind = function(id, k) return real:rewind(id, math.floor(k)) end }
  end },
  interp.has_integers and { "refuses an integral float rewind index", "rewind: an integral float index", function(real)
    return { rewind = function(id, k)
      if math.type(k) == "float" then return real:rewind(id, -1) end
      return real:rewind(id, k)
    end }
  end } or { "rewinds one message short", "rewind: an integral float index", function(real)
    -- where numbers are doubles 2.0 is 2: the check must still catch a wrong count
    return { rewind = function(id, k) return real:rewind(id, k > 0 and k - 1 or k) end }
  end },
  { "counts a turn on tag", "tag: changes nothing but tags", function(real)
    return { tag = function(id, tags)
      local r = real:tag(id, tags)
      local s = real:resume(id)
      s.metadata.turn_count = s.metadata.turn_count + 1
      real:save(s)
      return r
    end }
  end },
  { "drops empty tags from an array silently", "tag: an empty tag in an array", function(real)
    return { tag = function(id, tags)
      if type(tags) == "table" then
        local kept = {}
        for _, t in ipairs(tags) do if t ~= "" then kept[#kept + 1] = t end end
        tags = kept
      end
      return real:tag(id, tags)
    end }
  end },
  { "turns tags into strings", "tag: a non-string entry", function(real)
    return { tag = function(id, tags)
      if type(tags) == "table" then tags = map(tags, tostring) end
      return real:tag(id, tags)
    end }
  end },
  { "strips control characters from tags", "tag: a control character", function(real)
    return { tag = function(id, tags)
      if type(tags) == "table" then tags = map(tags, function(t) return (t:gsub("%c", "")) end) end
      return real:tag(id, tags)
    end }
  end },
  { "raises for an absent tag on untag", "untag: an absent tag is fine", function(real)
    return { untag = function(id, tags)
      if tags == "missing" then return real:untag(MISSING_ID, tags) end
      return real:untag(id, tags)
    end }
  end },
  { "returns the id from rename", "rename: returns no value", function(real)
    return { rename = function(id, name)
      real:rename(id, name)
      return id
    end }
  end },
  { "resets the state on rename", "rename: changes nothing but name", function(real)
    return { rename = function(id, name)
      real:rename(id, name)
      local s = real:resume(id)
      s.state = {}
      real:save(s)
    end }
  end },
  { "returns the metadata from before the append", "append: returns the new metadata", function(real)
    return { append = function(id, ...)
      local m = real:resume(id).metadata
      real:append(id, ...)
      return m
    end }
  end },
  { "does nothing for an empty append", "append: an empty array is a write", function(real)
    return { append = function(id, msgs, ...)
      if type(msgs) == "table" and next(msgs) == nil then return real:resume(id).metadata end
      return real:append(id, msgs, ...)
    end }
  end },
  { "takes an object for one message on append", "append: messages that are not an array", function(real)
    return { append = function(id, msgs, ...)
      if type(msgs) == "table" and msgs[1] == nil and next(msgs) ~= nil then msgs = { msgs } end
      return real:append(id, msgs, ...)
    end }
  end },
  { "appends the messages one at a time", "append: a message that cannot be encoded", function(real)
    return { append = function(id, msgs, o)
      local m = real:resume(id).metadata
      for _, msg in ipairs(msgs) do m = real:append(id, { msg }) end
      if next(msgs) == nil then m = real:append(id, msgs) end
      if type(o) == "table" and o.tokens then m = real:append(id, {}, { tokens = o.tokens }) end
      return m
    end }
  end },
  { "forgets a fork's parent_id on append", "lineage: a fork keeps its parent_id", function(real)
    return { append = function(id, msgs, ...)
      real:append(id, msgs, ...)
      local s = real:resume(id)
      if s.metadata.parent_id == nil then return s.metadata end
      s.metadata.parent_id = nil
      real:delete(id)
      return real:save(s)
    end }
  end },
  { "takes expect_version 0 as no check on save", "expect_version: save with 0 of an existing id", function(real)
    return { save = function(s, o)
      if type(o) == "table" and o.expect_version == 0 then o = nil end
      if o == nil then return real:save(s) end
      return real:save(s, o)
    end }
  end },
  { "exports the name after the tags", "export: writes the seed's serde form", function(real)
    return edit_export(real, function(text)
      return text:gsub('("name":[^,]*),("tags":%b[])', "%2,%1", 1)
    end)
  end },
  { "leaves an unset name out of the export", "export: an unset name is null", function(real)
    return edit_export(real, function(text) return text:gsub('"name":null,', "", 1) end)
  end },
  { "returns nil from the export of a missing id", "export: a missing id", function(real)
    return { export = function(id)
      local ok, text = pcall(real.export, real, id)
      if ok then return text end
      return nil
    end }
  end },
  { "imports with the timestamps reset to now, precisely", "import: keeps timestamps", function(real)
    return edit_import(real, function(doc)
      doc.metadata.created_at, doc.metadata.updated_at = agentsession.now(), agentsession.now()
    end)
  end },
  { "restarts the version at 1 on a replacing import", "import: replace = true", function(real)
    return { import = function(text, o)
      if type(o) == "table" and o.replace then
        local ok, doc = pcall(json.decode, text)
        if ok and type(doc) == "table" and type(doc.metadata) == "table" then
          pcall(real.delete, real, doc.metadata.id)
        end
        return real:import(text)
      end
      return real:import(text, o)
    end }
  end },
  { "drops unknown fields on import", "import: unknown fields", function(real)
    return edit_import(real, function(doc)
      doc.extra, doc.metadata.version, doc.metadata.bogus = nil, nil, nil
    end)
  end },
  { "stores an empty session for a malformed import", "import: malformed JSON", function(real)
    return { import = function(text, ...)
      local ok, res = pcall(real.import, real, text, ...)
      if ok then return res end
      real:save(agentsession.session{ agent_name = "left over" })
      error(res, 0)
    end }
  end },
  { "raises errors without where", "errors: where is a position or empty", function(real)
    return { resume = function(...)
      local res = pack(pcall(real.resume, real, ...))
      if res[1] then return unpack(res, 2, res.n) end
      if is_error(res[2]) then res[2].where = nil end
      error(res[2], 0)
    end }
  end },
  { "returns true from delete", "delete: returns no value", function(real)
    return { delete = function(id)
      real:delete(id)
      return true
    end }
  end },
  { "lets resume see deleted sessions", "delete: removes the session", function(real)
    local gone = {}
    return {
      delete = function(id)
        gone[id] = real:resume(id)
        real:delete(id)
      end,
      resume = function(id, ...)
        if gone[id] then return copy(gone[id]) end
        return real:resume(id, ...)
      end,
    }
  end },
}

local function mentions(failures, wanted)
  for _, line in ipairs(failures) do
    for _, w in ipairs(wanted) do
      if line:find(w, 1, true) then return true end
    end
  end
  return false
end

-- print replaced while fn runs; returns the printed lines and fn's results.
local function capture_print(fn)
  local lines, saved = {}, _G.print
  _G.print = function(...)
    local parts = pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    lines[#lines + 1] = table.concat(parts, "\t")
  end
  local res = pack(pcall(fn))
  _G.print = saved
  assert(res[1], res[2])
  return lines, unpack(res, 2, res.n)
end

local function memory() return agentsession.memory() end

describe("agentsession.conformance", function()
  it("exports VERSION 1 and the checks, each with a unique name and a function", function()
    assert.are.equal(1, conformance.VERSION)
    assert.is_true(#conformance.checks >= 80)
    local seen = {}
    for i, c in ipairs(conformance.checks) do
      assert.are.equal("string", type(c.name), "checks[" .. i .. "].name")
      assert.are.equal("function", type(c.fn), c.name)
      assert.is_truthy(c.name:match("^[%w_ ]+: "), "no family prefix: " .. c.name)
      assert.is_nil(seen[c.name], "two checks named " .. c.name)
      seen[c.name] = true
    end
  end)

  describe("passes our stores:", function()
    for _, store in ipairs(stores) do
      it(store.name, function()
        local passed, failed, failures = conformance.run(function() return store.new() end)
        assert.are.equal(0, failed,
          store.name .. " failed " .. failed .. " check(s):\n" .. table.concat(failures, "\n"))
        assert.are.equal(#conformance.checks, passed)
      end)
    end

    it("a faithful Lua-table proxy of a memory manager", function()
      local passed, failed, failures = conformance.run(proxy())
      assert.are.equal(0, failed, table.concat(failures, "\n"))
      assert.are.equal(#conformance.checks, passed)
    end)
  end)

  describe("fails a store that", function()
    for _, row in ipairs(broken) do
      local name, wanted, make, opts = row[1], row[2], row[3], row[4]
      it(name, function()
        local passed, failed, failures = conformance.run(proxy(make, opts))
        assert.is_true(failed > 0, "no check failed")
        assert.are.equal(#conformance.checks, passed + failed)
        assert.are.equal(failed, #failures)
        assert.is_true(mentions(failures, wanted), "no failure mentions " .. table.concat(wanted, " or ")
          .. "; the failures were:\n" .. table.concat(failures, "\n"))
      end)
    end
  end)

  it("fails a custom backend that gives only the messages a hint asks for without saying so", function()
    local new_backend = require("helpers.lua_backend").new
    local _, failed, failures = conformance.run(function()
      local b = new_backend()
      local load = b.load
      b.load = function(id, hint)
        local s = load(id)
        if s and hint then
          local from, n = hint.from, hint.count
          if hint.last then from, n = math.max(1, #s.messages - hint.last + 1), hint.last end
          local kept = agentsession.array()
          for i = from, math.min(#s.messages, from + (n or #s.messages) - 1) do kept[#kept + 1] = s.messages[i] end
          s.messages = kept
        end
        return s
      end
      return agentsession.custom(b)
    end, { only = "^window:" })
    assert.is_true(failed > 0, "no check failed")
    assert.are.equal(failed, #failures)
    assert.is_true(mentions(failures, { "window: saving the last 2 with one more message keeps the other 8" }),
      table.concat(failures, "\n"))
  end)

  describe("fails a custom backend that", function()
    local new_backend = require("helpers.lua_backend").new
    local rows = {
      { "stores no op_ids", "op_id: sent again, the append changes nothing", function(b)
        local store = b.store
        b.store = function(s)
          s.op_ids = nil
          return store(s)
        end
      end },
      { "loses the op_ids on update", "op_id: survives save, rewind, tag", function(b)
        local update = b.update
        b.update = function(m)
          update(m)
          b.data[m.id].op_ids = nil
        end
      end, { fast = true } },
      { "gives no op_ids with a hint", "op_id: sent again, the append changes nothing", function(b)
        local load = b.load
        b.load = function(id, hint)
          local s = load(id, hint)
          if s and hint then s.op_ids = nil end
          return s
        end
      end, { fast = true } },
    }
    for _, row in ipairs(rows) do
      local name, wanted, breakage, opts = row[1], row[2], row[3], row[4]
      it(name, function()
        local _, failed, failures = conformance.run(function()
          local b = new_backend(opts)
          breakage(b)
          return agentsession.custom(b)
        end, { only = "^op_id:" })
        assert.is_true(failed > 0, "no check failed")
        assert.is_true(mentions(failures, { wanted }), "the check \"" .. wanted
          .. "\" did not fail; the failures were:\n" .. table.concat(failures, "\n"))
      end)
    end
  end)

  describe("fails, in the family it belongs to, a store that", function()
    for _, row in ipairs(subtle) do
      local name, wanted, make = row[1], row[2], row[3]
      local family = wanted:match("^([^:]+):")
      it(name, function()
        local _, failed, failures = conformance.run(proxy(make), { only = "^" .. family .. ":" })
        assert.is_true(failed > 0, "no check of " .. family .. " failed")
        assert.is_true(mentions(failures, { wanted }), "the check \"" .. wanted
          .. "\" did not fail; the failures were:\n" .. table.concat(failures, "\n"))
      end)
    end
  end)

  describe("run", function()
    it("returns exactly three values: two counts and an array of strings", function()
      local n = select("#", conformance.run(memory, { only = "^rename:" }))
      assert.are.equal(3, n)
      local passed, failed, failures = conformance.run(proxy(function()
        return { rename = function() end }
      end), { only = "^rename:" })
      assert.is_true(is_integer(passed), tostring(passed))
      assert.is_true(is_integer(failed), tostring(failed))
      assert.is_true(passed > 0 and failed > 0)
      assert.are.equal(failed, #failures)
      for _, line in ipairs(failures) do
        assert.are.equal("string", type(line))
        assert.is_truthy(line:match("^rename: [^:]+: "), line)
        assert.is_nil(line:find("\n", 1, true), line)
        assert.is_true(#line <= 300, line)
      end
    end)

    it("prints nothing without verbose", function()
      local lines, passed, failed = capture_print(function() return conformance.run(memory) end)
      assert.are.same({}, lines)
      assert.are.equal(#conformance.checks, passed)
      assert.are.equal(0, failed)
      lines = capture_print(function() return conformance.run(proxy(function()
        return { close = function() end }
      end), { only = "^close:", verbose = false }) end)
      assert.are.same({}, lines)
    end)

    it("prints a line per check and a summary with verbose", function()
      local lines, passed, failed = capture_print(function()
        return conformance.run(proxy(function() return { rename = function() end } end),
          { verbose = true, only = "^rename:" })
      end)
      assert.are.equal(passed + failed + 1, #lines)
      local oks, fails = 0, 0
      for i = 1, #lines - 1 do
        if lines[i]:match("^ok  rename: ") then
          oks = oks + 1
        elseif lines[i]:match("^FAIL rename: .+: ") then
          fails = fails + 1
        else
          error("unexpected line: " .. lines[i])
        end
      end
      assert.are.equal(passed, oks)
      assert.are.equal(failed, fails)
      assert.is_truthy(lines[#lines]:find(passed .. " passed, " .. failed .. " failed", 1, true), lines[#lines])
    end)

    it("runs only the checks whose name matches opts.only", function()
      local expected = 0
      for _, c in ipairs(conformance.checks) do
        if c.name:find("^fork:") then expected = expected + 1 end
      end
      assert.is_true(expected > 5)
      local lines, passed, failed = capture_print(function()
        return conformance.run(memory, { only = "^fork:", verbose = true, unknown_key = true })
      end)
      assert.are.equal(expected, passed)
      assert.are.equal(0, failed)
      for i = 1, #lines - 1 do assert.is_truthy(lines[i]:match("^ok  fork: "), lines[i]) end
      local p, f = conformance.run(memory, { only = "no check is named like this" })
      assert.are.equal(0, p)
      assert.are.equal(0, f)
    end)

    it("leaves out the checks whose name matches opts.skip", function()
      local slow = 0
      for _, c in ipairs(conformance.checks) do
        if c.name:find("^too_large:") then
          slow = slow + 1
          assert.is_true(c.slow, c.name)
        end
      end
      assert.is_true(slow > 0)
      local passed, failed = conformance.run(memory, { skip = "^too_large:" })
      assert.are.equal(#conformance.checks - slow, passed)
      assert.are.equal(0, failed)
    end)

    it("reports a malformed pattern as a failure instead of raising", function()
      local passed, failed, failures = conformance.run(memory, { only = "[" })
      assert.are.equal(0, passed)
      assert.are.equal(1, failed)
      assert.is_truthy(failures[1]:find("opts.only", 1, true), failures[1])
    end)

    it("raises an argument error when new_manager is not a function", function()
      for _, v in ipairs({ false, 5, "memory:", {} }) do
        local ok, err = pcall(conformance.run, v)
        assert.is_false(ok)
        assert.are.equal("string", type(err))
        assert.is_truthy(err:find("bad argument #1 to 'run' (function expected, got " .. type(v) .. ")", 1, true), err)
      end
      local ok, err = pcall(conformance.run)
      assert.is_false(ok)
      assert.is_truthy(err:find("function expected, got nil", 1, true), err)
    end)

    it("fails every check, without raising, when new_manager raises", function()
      local passed, failed, failures = conformance.run(function() error("no store here", 0) end)
      assert.are.equal(0, passed)
      assert.are.equal(#conformance.checks, failed)
      for i, line in ipairs(failures) do
        assert.are.equal(conformance.checks[i].name .. ": new_manager() raised no store here", line)
      end
    end)

    it("fails every check, without raising, when new_manager returns nil", function()
      local passed, failed, failures = conformance.run(function() end)
      assert.are.equal(0, passed)
      assert.are.equal(#conformance.checks, failed)
      assert.is_truthy(failures[1]:find("new_manager() returned nil", 1, true), failures[1])
    end)

    it("closes every manager it makes, also after a failed check", function()
      local made, open = 0, 0
      local new = proxy(function(real)
        made, open = made + 1, open + 1
        local closed = false
        return {
          close = function()
            if not closed then closed, open = true, open - 1 end
            real:close()
          end,
          rename = function() error("boom", 0) end,
        }
      end)
      local passed, failed, failures = conformance.run(new, { only = "^rename:" })
      assert.is_true(passed > 0 and failed > 0)
      assert.is_truthy(failures[1]:find("raised", 1, true), failures[1])
      assert.is_true(made > 0)
      assert.are.equal(0, open)
    end)

    it("works from a plain script, outside busted", function()
      local cmd = interp.env(".") .. " " .. interp.lua .. " -e '"
        .. "local as = require(\"agentsession\"); local c = require(\"agentsession.conformance\"); "
        .. "local p, f = c.run(as.memory, { only = \"^list:\" }); print(p, f)' 2>&1"
      local pipe = assert(io.popen(cmd))
      local out = pipe:read("*a")
      pipe:close()
      local p, f = out:match("^(%d+)\t(%d+)\n$")
      assert.is_truthy(p, out)
      assert.is_true(tonumber(p) > 10, out)
      assert.are.equal("0", f, out)
    end)
  end)
end)
