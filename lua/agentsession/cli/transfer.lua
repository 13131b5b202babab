--- The commands of agentsession that go through a whole store: dump, restore, copy and
-- check. They hold one session at a time (and one page of metadata: agentsession.cli.walk),
-- and move sessions as export documents, so ids, lineage, tags, names, counts and times
-- travel as stored.
local agentsession = require("agentsession")
local commands = require("agentsession.cli.commands")
local walk = require("agentsession.cli.walk")

local is_error = agentsession.is_error

local M = {}

-- Whether an error reading one session is that session's (reported, and the run goes on)
-- rather than the store's (the run stops).
local function session_error(err)
  return is_error(err) and not is_error(err, "unavailable") and not is_error(err, "closed")
end

-- Each session the filter matches, oldest first, as its export document: calls
-- emit(doc, metadata) for each one read, reports each one that cannot be read. Returns the
-- number of those. `to_stdout`: the documents go to standard output (no progress line when
-- that is the terminal).
local function each_document(ctx, mgr, filter, label, emit, to_stdout)
  local total = walk.count(mgr, filter)
  local step, done = ctx.progress(label, total, to_stdout)
  local n, bad = 0, 0
  walk.oldest_first(mgr, filter, function(m)
    local ok, doc = pcall(mgr.export, mgr, m.id)
    if ok then
      emit(doc, m)
    elseif not is_error(doc, "not_found") then -- not_found: deleted since it was listed
      if not session_error(doc) then error(doc, 0) end
      ctx.report_error(doc, "session \"" .. m.id .. "\": ")
      bad = bad + 1
    end
    n = n + 1
    step(n)
  end, { total = total })
  done()
  return bad
end

-- Imports one document; returns "stored", "skipped" (its id exists) or "failed" (reported).
local function import(ctx, mgr, doc, replace, where, target)
  local ok, err = pcall(mgr.import, mgr, doc, replace and { replace = true } or nil)
  if ok then return "stored" end
  if is_error(err, "conflict") then
    ctx.report("conflict", "session \"" .. tostring(err.id) .. "\" exists" .. target
      .. ": skipped (--replace overwrites it)")
    return "skipped"
  end
  if is_error(err, "invalid") or is_error(err, "too_large") then
    ctx.report_error(err, where)
    return "failed"
  end
  error(err, 0)
end

local function summary(counts, verb, target)
  return string.format("%d session%s %s, %d skipped (their ids exist%s), %d failed\n", counts.stored,
    counts.stored == 1 and "" or "s", verb, counts.skipped, target, counts.failed)
end

function M.dump(ctx, a)
  local mgr = ctx.open()
  local write, finish = ctx.output(a.output)
  local bad = each_document(ctx, mgr, commands.filter(a), "dump", function(doc) write(doc, "\n") end,
    a.output == nil or a.output == "-")
  finish()
  if bad > 0 then return 1 end
end

function M.restore(ctx, a)
  local input = ctx.input(a.file)
  local mgr = ctx.open(true)
  local step, done = ctx.progress("restore")
  local counts = { stored = 0, skipped = 0, failed = 0 }
  local line_no, n = 0, 0
  for line in input:lines() do
    line_no = line_no + 1
    if line:find("%S") then
      local outcome = import(ctx, mgr, line, a.replace, "line " .. line_no .. ": ", "")
      counts[outcome] = counts[outcome] + 1
      n = n + 1
      step(n)
    end
  end
  done()
  ctx.write(summary(counts, "restored", ""))
  if counts.failed > 0 then return 1 end
end

function M.copy(ctx, a)
  if a.to == ctx.store_uri then ctx.fail("usage", "--to names the store itself") end
  local src = ctx.open()
  local dst = ctx.open_uri(a.to, true)
  local counts = { stored = 0, skipped = 0, failed = 0 }
  local unreadable = each_document(ctx, src, commands.filter(a), "copy", function(doc, m)
    local outcome = import(ctx, dst, doc, a.replace, "session \"" .. m.id .. "\": ", " in the target")
    counts[outcome] = counts[outcome] + 1
  end)
  counts.failed = counts.failed + unreadable
  ctx.write(summary(counts, "copied", " in the target"))
  if counts.failed > 0 then return 1 end
end

function M.check(ctx)
  local mgr = ctx.open()
  local n = 0
  local bad = each_document(ctx, mgr, {}, "check", function() n = n + 1 end)
  ctx.write(string.format("%d session%s read, %d damaged\n", n + bad, n + bad == 1 and "" or "s", bad))
  if bad > 0 then return 1 end
end

return M
