--- The commands of agentsession that look at sessions or change one at a time: list, show,
-- export, import, fork, rewind, tag, untag, rename, rm and stats. Each takes the context
-- (agentsession.cli.context) and the parsed arguments, and returns its exit status (nil: 0).
local agentsession = require("agentsession")
local context = require("agentsession.cli.context")
local text = require("agentsession.cli.text")
local walk = require("agentsession.cli.walk")

local json, null = agentsession.json, agentsession.null

local M = {}

--- The list filter of --tag, --agent and --parent.
function M.filter(a)
  local f = {}
  if a.tag and #a.tag > 0 then f.tags = a.tag end
  f.agent_name = a.agent
  f.parent_id = a.parent
  return f
end

local META_FIELDS = { "id", "name", "tags", "agent_name", "created_at", "updated_at", "turn_count", "total_tokens" }

--- Metadata as one JSON object, its fields in the export document's order (`name` null when
-- unset, `parent_id` when there is one), then `version` when `with_version`.
function M.meta_json(m, with_version)
  local parts = {}
  for i, f in ipairs(META_FIELDS) do
    local v = m[f]
    if f == "name" and v == nil then v = null end
    if f == "tags" then v = agentsession.array(v) end
    parts[i] = json.encode(f) .. ":" .. json.encode(v)
  end
  if m.parent_id ~= nil then parts[#parts + 1] = '"parent_id":' .. json.encode(m.parent_id) end
  if with_version then parts[#parts + 1] = '"version":' .. json.encode(m.version) end
  return "{" .. table.concat(parts, ",") .. "}"
end

--- A URI as it may be shown: the password of a redis:// or redis+cluster:// URI hidden.
function M.shown_uri(uri)
  local head, user, tail = uri:match("^(redis://)([^/?#@]*:)[^/?#@]*(@.*)$")
  if head == nil then head, user, tail = uri:match("^(redis%+cluster://)([^/?#@]*:)[^/?#@]*(@.*)$") end
  if head then return head .. user .. "***" .. tail end
  return uri
end

------------------------------------------------------------------------ list

local COLUMNS = {
  { "ID" }, { "NAME", 32 }, { "AGENT", 16 }, { "TAGS", 40 }, { "TURNS", nil, true }, { "TOKENS", nil, true },
  { "UPDATED" },
}

-- The shortest length from 8 at which the ids' starts differ.
local function short_length(rows)
  local longest = 0
  for _, m in ipairs(rows) do longest = math.max(longest, #m.id) end
  for n = 8, longest do
    local seen, clash = {}, false
    for _, m in ipairs(rows) do
      local s = m.id:sub(1, n)
      if seen[s] then clash = true break end
      seen[s] = true
    end
    if not clash then return n end
  end
  return longest
end

local function cells(m, id_length, now)
  local tags = {}
  for i, t in ipairs(m.tags) do tags[i] = t end
  return {
    text.one_line(text.cut(m.id, id_length)),
    text.one_line(m.name or ""),
    text.one_line(m.agent_name),
    text.one_line(table.concat(tags, ",")),
    text.count(m.turn_count),
    text.count(m.total_tokens),
    text.ago(m.updated_at, now),
  }
end

function M.list(ctx, a)
  local mgr = ctx.open()
  local how = { offset = a.offset, limit = a.limit }
  if a.json then
    walk.newest_first(mgr, M.filter(a), function(m) ctx.write(M.meta_json(m, true), "\n") end, how)
    return
  end
  -- The columns' widths come from the first page of rows; later rows are cut to them.
  local now = agentsession.now()
  local rows, widths, id_length = {}, nil, nil
  local function flush()
    if #rows == 0 then return end
    if not widths then
      id_length = short_length(rows)
      widths = {}
      for i, col in ipairs(COLUMNS) do widths[i] = text.width(col[1]) end
      for _, m in ipairs(rows) do
        for i, cell in ipairs(cells(m, id_length, now)) do
          widths[i] = math.max(widths[i], math.min(text.width(cell), COLUMNS[i][2] or math.huge))
        end
      end
      local head = {}
      for i, col in ipairs(COLUMNS) do head[i] = text.pad(col[1], widths[i], col[3]) end
      ctx.write((table.concat(head, "  "):gsub("%s+$", "")), "\n")
    end
    for _, m in ipairs(rows) do
      local line = {}
      for i, cell in ipairs(cells(m, id_length, now)) do
        line[i] = text.pad(text.clip(cell, widths[i]), widths[i], COLUMNS[i][3])
      end
      ctx.write((table.concat(line, "  "):gsub("%s+$", "")), "\n")
    end
    rows = {}
  end
  walk.newest_first(mgr, M.filter(a), function(m)
    rows[#rows + 1] = m
    if #rows == walk.PAGE then flush() end
  end, how)
  flush()
end

------------------------------------------------------------------------ show, export, import

-- A window of a session as the export document holding only its messages, and `window`.
local function window_json(s)
  return '{"metadata":' .. M.meta_json(s.metadata) .. ',"messages":' .. json.encode(agentsession.array(s.messages))
    .. ',"state":' .. json.encode(s.state) .. ',"window":{"first":' .. json.encode(s.window.first)
    .. ',"total":' .. json.encode(s.window.total) .. "}}"
end

function M.show(ctx, a)
  local mgr = ctx.open()
  if a.json and not a.last then
    ctx.write(ctx.with_id(mgr, a.id, function(id) return mgr:export(id) end), "\n")
    return
  end
  local session = ctx.with_id(mgr, a.id, function(id) return mgr:resume(id, a.last and { last = a.last } or nil) end)
  if a.json then
    ctx.write(window_json(session), "\n")
  else
    require("agentsession.cli.show").transcript(session, ctx.write,
      { colour = ctx.colour(), full = a.full, now = agentsession.now() })
  end
end

function M.export(ctx, a)
  local mgr = ctx.open()
  local doc = ctx.with_id(mgr, a.id, function(id) return mgr:export(id) end)
  local write, finish = ctx.output(a.output)
  write(doc, "\n")
  finish()
end

function M.import(ctx, a)
  local doc = ctx.input(a.file):read("*a")
  local mgr = ctx.open(true)
  local meta = mgr:import(doc, a.replace and { replace = true } or nil)
  ctx.write(text.one_line(meta.id), "\n")
end

------------------------------------------------------------------------ changes to one session

function M.fork(ctx, a)
  local mgr = ctx.open()
  local meta = ctx.with_id(mgr, a.id, function(id) return mgr:fork(id, a.name, a.at and { at = a.at } or nil) end)
  ctx.write(text.one_line(meta.id), "\n")
end

function M.rewind(ctx, a)
  local mgr = ctx.open()
  ctx.with_id(mgr, a.id, function(id) return mgr:rewind(id, a.k) end)
end

local function write_tags(ctx, tags)
  for _, t in ipairs(tags) do ctx.write(text.one_line(t), "\n") end
end

function M.tag(ctx, a)
  local mgr = ctx.open()
  write_tags(ctx, ctx.with_id(mgr, a.id, function(id) return mgr:tag(id, a.tags) end))
end

function M.untag(ctx, a)
  local mgr = ctx.open()
  write_tags(ctx, ctx.with_id(mgr, a.id, function(id) return mgr:untag(id, a.tags) end))
end

function M.rename(ctx, a)
  local mgr = ctx.open()
  ctx.with_id(mgr, a.id, function(id) return mgr:rename(id, a.name) end)
end

-- Deletes the sessions named, each once; those not found are reported. On a terminal,
-- unless --yes, it lists them and asks first.
function M.rm(ctx, a)
  local mgr = ctx.open()
  local found, missing, seen = {}, 0, {}
  for _, given in ipairs(a.ids) do
    local ok, s = pcall(ctx.with_id, mgr, given, function(id) return mgr:resume(id, { last = 0 }) end)
    if ok then
      if not seen[s.metadata.id] then
        seen[s.metadata.id] = true
        found[#found + 1] = s.metadata
      end
    elseif context.kind(s) == "not_found" then
      ctx.report_error(s)
      missing = missing + 1
    else
      error(s, 0)
    end
  end
  if #found > 0 and not a.yes and ctx.tty("stdin") then
    local now = agentsession.now()
    local lines = {}
    for i, m in ipairs(found) do
      lines[i] = string.format("  %s  %s  %d turn%s, updated %s", text.one_line(m.id),
        m.name and ("\"" .. text.one_line(m.name) .. "\"") or "(no name)", m.turn_count,
        m.turn_count == 1 and "" or "s", text.ago(m.updated_at, now))
    end
    local question = table.concat(lines, "\n") .. "\nDelete "
      .. (#found == 1 and "this session" or "these " .. #found .. " sessions") .. "?"
    if not ctx.confirm(question) then
      ctx.report("cancelled", "nothing deleted")
      return 1
    end
  end
  for _, m in ipairs(found) do
    local ok, err = pcall(mgr.delete, mgr, m.id)
    if not ok then
      if not agentsession.is_error(err, "not_found") then error(err, 0) end
      ctx.report_error(err)
      missing = missing + 1
    end
  end
  if missing > 0 then return context.STATUS.not_found end
end

------------------------------------------------------------------------ stats

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local size = f:seek("end") or 0
  f:close()
  return size
end

function M.stats(ctx, a)
  local mgr = ctx.open()
  local uri = ctx.store_uri
  local path = context.sqlite_path(uri)
  local info = {}
  if path then
    info.store = "sqlite"
    local pwd = ctx.getenv("PWD")
    info.location = (path:sub(1, 1) == "/" or not pwd) and path or pwd .. "/" .. path
  else
    info.store = uri == "memory:" and "memory" or uri:match("^(%a[%w+.-]*):")
    info.location = M.shown_uri(uri)
  end
  info.sessions = walk.count(mgr, {})
  local newest = info.sessions > 0 and mgr:list({ limit = 1 })[1]
  local oldest = info.sessions > 0 and mgr:list({ limit = 1, offset = info.sessions - 1 })[1]
  local unreadable = 0
  if path then
    info.bytes = file_size(path) + file_size(path .. "-wal")
  else
    info.bytes = 0
    local step, done = ctx.progress("stats", info.sessions)
    local n = 0
    walk.oldest_first(mgr, {}, function(m)
      local ok, doc = pcall(mgr.export, mgr, m.id)
      if ok then
        info.bytes = info.bytes + #doc + 1
      elseif not agentsession.is_error(doc, "not_found") then
        unreadable = unreadable + 1
      end
      n = n + 1
      step(n)
    end, { total = info.sessions })
    done()
  end
  if a.json then
    ctx.write(string.format('{"store":%s,"location":%s,"sessions":%s,"bytes":%s,"newest":%s,"oldest":%s}\n',
      json.encode(info.store), json.encode(info.location), json.encode(info.sessions), json.encode(info.bytes),
      json.encode(newest and newest.updated_at or null), json.encode(oldest and oldest.updated_at or null)))
    return
  end
  local now = agentsession.now()
  local function field(name, value) ctx.write(text.pad(name, 10), value, "\n") end
  field("store", info.store)
  field("location", text.one_line(info.location))
  field("sessions", string.format("%d", info.sessions))
  field("size", string.format("%s (%d bytes%s)", text.bytes(info.bytes), info.bytes,
    path and ": the file and its -wal" or " of sessions as JSON"))
  if unreadable > 0 then
    field("unreadable", string.format("%d (agentsession check reports them)", unreadable))
  end
  if newest then field("newest", text.date(newest.updated_at) .. " (" .. text.ago(newest.updated_at, now) .. ")") end
  if oldest then field("oldest", text.date(oldest.updated_at) .. " (" .. text.ago(oldest.updated_at, now) .. ")") end
end

return M
