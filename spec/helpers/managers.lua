-- Managers a spec opens and what they hold: track(mgr) closes it at close_all()
-- (an after_each), snapshot(mgr) is every session as list() and resume() show
-- them, assert_unchanged compares a manager with an earlier snapshot exactly.
local deep = require("helpers.deep")

local M = {}

local closing = {}

function M.track(mgr)
  closing[#closing + 1] = mgr
  return mgr
end

function M.close_all()
  for _, m in ipairs(closing) do pcall(m.close, m) end
  closing = {}
end

function M.snapshot(mgr)
  local l = mgr:list()
  local sessions = {}
  for i, m in ipairs(l) do sessions[i] = mgr:resume(m.id) end
  return { list = l, sessions = sessions }
end

function M.assert_unchanged(mgr, before, what)
  deep.assert_same(before, M.snapshot(mgr), { root = what or "value" })
end

return M
