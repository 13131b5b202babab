--- The commands of agentsession that find sessions by their words and delete old ones:
-- search and prune. Each takes the context (agentsession.cli.context) and the parsed
-- arguments, and returns its exit status (nil: 0).
local agentsession = require("agentsession")
local commands = require("agentsession.cli.commands")
local text = require("agentsession.cli.text")

local json = agentsession.json

local M = {}

------------------------------------------------------------------------ dates and durations

-- Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
-- days_from_civil), in whole numbers on every Lua.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local DAYS_IN = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

--- Unix milliseconds of a date: "YYYY-MM-DD" (the start of that day) or
-- "YYYY-MM-DDTHH:MM[:SS]", local time, or followed by a zone: "Z", "+HH:MM" or "-HH:MM"; a
-- space may stand for the T. Returns nil and why for anything else.
function M.parse_date(s)
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil, "write a date as YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM]" end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo < 1 or mo > 12 or d < 1 or d > DAYS_IN[mo]
      or (mo == 2 and d == 29 and not (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0))) then
    return nil, "no such day"
  end
  local h, mi, sec, zone = 0, 0, 0, ""
  if rest ~= "" then
    local hh, mm, tail = rest:match("^[T ](%d%d):(%d%d)(.*)$")
    if not hh then return nil, "write the time as THH:MM[:SS]" end
    h, mi = tonumber(hh), tonumber(mm)
    local ss, z = tail:match("^:(%d%d)(.*)$")
    if ss then sec, tail = tonumber(ss), z end
    zone = tail
    if h > 23 or mi > 59 or sec > 59 then return nil, "no such time" end
  end
  if zone == "" then
    local t = os.time({ year = y, month = mo, day = d, hour = h, min = mi, sec = sec })
    if not t then return nil, "not a time this system can tell" end
    return t * 1000
  end
  local offset = 0
  if zone ~= "Z" then
    local sign, zh, zm = zone:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil, "write the zone as Z, +HH:MM or -HH:MM" end
    offset = (tonumber(zh) * 60 + tonumber(zm)) * 60 * (sign == "+" and 1 or -1)
  end
  return ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) - offset) * 1000
end

local UNIT = { s = 1000, m = 60000, h = 3600000, d = 86400000, w = 604800000 }

--- Milliseconds of a duration: numbers with units s, m, h, d, w ("30d", "1d12h", "90m").
-- Returns nil and why for anything else.
function M.parse_duration(s)
  local total, rest = 0, s
  if s == "" then return nil, "empty" end
  while rest ~= "" do
    local n, unit, tail = rest:match("^(%d+)([smhdw])(.*)$")
    if not n or #n > 9 then return nil, "write it as numbers with units s, m, h, d or w, as 30d or 1d12h" end
    total = total + tonumber(n) * UNIT[unit]
    rest = tail
  end
  return total
end

------------------------------------------------------------------------ search

local function search_options(a)
  local o = commands.filter(a)
  o.limit = a.limit or 20
  return o
end

function M.search(ctx, a)
  local mgr = ctx.open()
  local hits = mgr:search(a.query, search_options(a))
  if a.json then
    for _, hit in ipairs(hits) do
      ctx.write('{"metadata":', commands.meta_json(hit.metadata, true), ',"index":', json.encode(hit.index),
        ',"snippet":', json.encode(hit.snippet), "}\n")
    end
    return
  end
  if #hits == 0 then return end
  local now = agentsession.now()
  local rows, widths = {}, { #"ID", #"NAME", #"AT", #"UPDATED" }
  for i, hit in ipairs(hits) do
    local m = hit.metadata
    rows[i] = { text.one_line(text.cut(m.id, 8)), text.clip(text.one_line(m.name or ""), 24),
      hit.index == 0 and "name" or "#" .. hit.index, text.ago(m.updated_at, now),
      text.clip(text.one_line(hit.snippet):gsub("%s+", " "), 100) }
    for k = 1, 4 do widths[k] = math.max(widths[k], text.width(rows[i][k])) end
  end
  local head = { "ID", "NAME", "AT", "UPDATED", "TEXT" }
  local function line(cells)
    local out = {}
    for k = 1, 4 do out[k] = text.pad(cells[k], widths[k]) end
    out[5] = cells[5]
    return (table.concat(out, "  "):gsub("%s+$", ""))
  end
  ctx.write(line(head), "\n")
  for _, r in ipairs(rows) do ctx.write(line(r), "\n") end
end

------------------------------------------------------------------------ prune

-- The time before which sessions go: --before DATE or --older-than DURATION, exactly one.
local function cutoff(ctx, a)
  if (a.before == nil) == (a.older_than == nil) then
    ctx.fail("usage", "give --before DATE or --older-than DURATION, one of them (agentsession prune --help)")
  end
  if a.before then
    local ms, why = M.parse_date(a.before)
    if not ms then ctx.fail("usage", "--before \"" .. a.before .. "\": " .. why) end
    return ms
  end
  local ms, why = M.parse_duration(a.older_than)
  if not ms then ctx.fail("usage", "--older-than \"" .. a.older_than .. "\": " .. why) end
  return agentsession.now() - ms
end

-- The sessions a dry run found, as the question before deleting them shows them.
local function question(ids, before, a)
  local what = #ids == 1 and "this session" or "these " .. #ids .. " sessions"
  local shown = {}
  for i = 1, math.min(#ids, 10) do shown[i] = "  " .. text.one_line(ids[i]) end
  if #ids > 10 then shown[#shown + 1] = "  … and " .. (#ids - 10) .. " more" end
  return table.concat(shown, "\n") .. "\nDelete " .. what .. ", last updated before " .. text.date(before)
    .. (a.keep_tag and " and not tagged " .. text.one_line(a.keep_tag) or "") .. "?"
end

function M.prune(ctx, a)
  local before = cutoff(ctx, a)
  local mgr = ctx.open()
  local o = commands.filter(a)
  o.before, o.keep_tag = before, a.keep_tag
  if a.dry_run or (not a.yes and ctx.tty("stdin")) then
    o.dry_run = true
    local ids = mgr:prune(o)
    o.dry_run = nil
    if a.dry_run then
      for _, id in ipairs(ids) do ctx.write(text.one_line(id), "\n") end
      return
    end
    if #ids == 0 then return end
    if not ctx.confirm(question(ids, before, a)) then
      ctx.report("cancelled", "nothing deleted")
      return 1
    end
    o.total = #ids
  end
  local step, done = ctx.progress("prune", o.total)
  o.total, o.progress = nil, step
  local ids = mgr:prune(o)
  done()
  for _, id in ipairs(ids) do ctx.write(text.one_line(id), "\n") end
end

return M
