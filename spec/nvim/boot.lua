-- Runs one of the scripts of spec/20-nvim_spec.lua inside `nvim --headless`,
-- started with -c "lua dofile(os.getenv('AGENTSESSION_NVIM_BOOT'))". The
-- environment names the script (AGENTSESSION_NVIM_SCRIPT) and the file of its
-- report (AGENTSESSION_NVIM_OUT); with AGENTSESSION_NVIM_ROOT set, the
-- checkout's lua/ and AGENTSESSION_NVIM_CPATH go first on package.path and
-- package.cpath. The script returns a function(report); report(...) writes
-- one tab-separated line. After it returns, "done" ends the report and Neovim
-- exits with :qa!; after an error, "error <message>" does and it exits with :cq 1.
local out = assert(io.open(os.getenv("AGENTSESSION_NVIM_OUT"), "w"))

local function report(...)
  local words = { ... }
  for i, w in ipairs(words) do words[i] = tostring(w):gsub("[\r\n\t]", " ") end
  out:write(table.concat(words, "\t"), "\n")
  out:flush()
end

local root = os.getenv("AGENTSESSION_NVIM_ROOT")
if root then
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = os.getenv("AGENTSESSION_NVIM_CPATH") .. ";" .. package.cpath
end

local ok, err = xpcall(function()
  dofile(os.getenv("AGENTSESSION_NVIM_SCRIPT"))(report)
end, debug.traceback)
if ok then
  report("done")
  out:close()
  vim.cmd("qa!")
else
  report("error", err)
  out:close()
  vim.cmd("cq 1")
end
