-- Inside Neovim: agentsession.conformance on the store that
-- AGENTSESSION_NVIM_STORE names ("memory" or "sqlite"; the SQLite files go to
-- the directory AGENTSESSION_NVIM_TMP). Reports "host <jit.version>", then
-- "ok <check>" or "fail <check> <why>" for every check, one run each.
return function(report)
  local agentsession = require("agentsession")
  local conformance = require("agentsession.conformance")
  local store, tmp = os.getenv("AGENTSESSION_NVIM_STORE"), os.getenv("AGENTSESSION_NVIM_TMP")
  local files = 0
  local new = {
    memory = function() return agentsession.memory() end,
    sqlite = function()
      files = files + 1
      return agentsession.sqlite(tmp .. "/conformance" .. files .. ".db")
    end,
  }
  local new_manager = assert(new[store], "no store named " .. tostring(store))
  report("host", jit and jit.version or _VERSION)
  for _, check in ipairs(conformance.checks) do
    local exact = "^" .. check.name:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0") .. "$"
    local passed, _, failures = conformance.run(new_manager, { only = exact })
    if passed > 0 and #failures == 0 then
      report("ok", check.name)
    else
      report("fail", check.name, failures[1] or "did not run")
    end
  end
end
