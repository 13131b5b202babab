-- Inside Neovim: reads what spec/nvim/write_rich.lua wrote with Lua 5.4 into
-- the SQLite file AGENTSESSION_NVIM_DB. Reports "ok <check>" or
-- "fail <check> <why>" for each check.
return function(report)
  local agentsession = require("agentsession")
  local path = os.getenv("AGENTSESSION_NVIM_DB")
  local rich = dofile(os.getenv("AGENTSESSION_NVIM_DIR") .. "/rich_values.lua")(agentsession)
  local array_mt = agentsession.array_mt

  -- nil when equal (numbers by value and sign of zero, an empty array
  -- apart from an empty object), else the path of the first difference and why.
  local function diff(exp, act, at)
    if type(exp) ~= type(act) then
      return at .. ": " .. type(exp) .. " expected, got " .. type(act) .. " " .. tostring(act)
    end
    if type(exp) == "number" then
      if exp ~= act or (exp == 0 and 1 / exp ~= 1 / act) then
        return at .. string.format(": %.17g expected, got %.17g", exp, act)
      end
    elseif type(exp) == "table" then
      if next(exp) == nil and (getmetatable(exp) == array_mt) ~= (getmetatable(act) == array_mt) then
        return at .. ": array_mt " .. (getmetatable(exp) == array_mt and "expected" or "unexpected")
      end
      for k, v in pairs(exp) do
        local why = diff(v, act[k], at .. "[" .. (type(k) == "string" and string.format("%q", k) or k) .. "]")
        if why then return why end
      end
      for k in pairs(act) do
        if exp[k] == nil then return at .. ": unexpected key " .. tostring(k) end
      end
    elseif exp ~= act then
      return at .. ": " .. string.format("%q", tostring(exp)) .. " expected, got " .. string.format("%q", tostring(act))
    end
  end

  local function check(name, exp, act)
    local why = diff(exp, act, "value")
    if why then report("fail", name, why) else report("ok", name) end
  end

  local mgr = agentsession.sqlite(path)
  local id = rich.metadata.id
  local s = mgr:resume(id)
  check("messages", rich.messages, s.messages)
  check("state", rich.state, s.state)
  for _, field in ipairs({ "id", "name", "tags", "agent_name", "created_at", "total_tokens" }) do
    check("metadata." .. field, rich.metadata[field], s.metadata[field])
  end
  check("metadata.turn_count", rich.metadata.turn_count + 1, s.metadata.turn_count)
  local last = mgr:resume(id, { last = 3 })
  check("resume last 3", { rich.messages[9], rich.messages[10], rich.messages[11] }, last.messages)
  local w = last.window
  check("window of last 3", { 9, 11, s.metadata.version }, { w.first, w.total, w.version })
  local page = mgr:resume(id, { from = 2, count = 4 })
  check("resume from 2 count 4", { rich.messages[2], rich.messages[3], rich.messages[4], rich.messages[5] },
    page.messages)
  mgr:close()

  -- An integer above 2^53, per big_integers: the default refuses it naming its path.
  local big = {
    { "big-message", function(r) return r.messages[2].n end, "messages[2].n",
      9007199254740992, "9007199254740993" },
    { "big-tokens", function(r) return r.metadata.total_tokens end, "total_tokens",
      1152921504606846976, "1152921504606846977" },
  }
  for _, b in ipairs(big) do
    local name, get, where, as_float, as_string = b[1], b[2], b[3], b[4], b[5]
    for _, mode in ipairs({ "default", "error", "float", "string" }) do
      local m = agentsession.sqlite(path, mode ~= "default" and { big_integers = mode } or nil)
      local ok, r = pcall(m.resume, m, name)
      local what = name .. " with big_integers " .. mode
      if mode == "float" or mode == "string" then
        if ok then check(what, mode == "float" and as_float or as_string, get(r))
        else report("fail", what, "raised " .. tostring(r)) end
      elseif ok then
        report("fail", what, "no error; read " .. tostring(get(r)))
      elseif not agentsession.is_error(r, "invalid") then
        report("fail", what, "not an invalid error: " .. tostring(r))
      elseif not tostring(r.message):find(where, 1, true) then
        report("fail", what, "the message does not name " .. where .. ": " .. tostring(r.message))
      else
        report("ok", what)
      end
      m:close()
    end
  end

  -- list reads every session's metadata: big-tokens's total_tokens too.
  local m = agentsession.sqlite(path)
  local ok, err = pcall(m.list, m)
  check("list by default refuses total_tokens above 2^53", { false, "invalid", true },
    { ok, agentsession.is_error(err) and err.kind, (tostring(err):find("metadata.total_tokens", 1, true)) ~= nil })
  m:close()
  m = agentsession.sqlite(path, { big_integers = "string" })
  local ids = {}
  for i, meta in ipairs(m:list()) do ids[i] = meta.id end
  table.sort(ids)
  check("list with big_integers string", { "big-message", "big-tokens", rich.metadata.id }, ids)
  m:close()
end
