-- Assertions about raised errors, shared by the specs.
local agentsession = require("agentsession")
local assert = require("luassert")

local M = {}

--- Calls fn and returns the error it raises, failing unless it is an
--- agentsession error of the given kind.
function M.error_of(kind, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error of kind " .. kind)
  assert.is_true(agentsession.is_error(err, kind),
    "expected an error of kind " .. kind .. ", got " .. tostring(err))
  return err
end

return M
