-- Writes the release rockspec of a version on standard output, made from the checkout's
-- rockspec read on standard input: only its version and its source change, everything else
-- is copied as written, so the module list lives in one file.
--
--   lua5.4 tools/release-rockspec.lua 0.1.0 < agentsession-scm-1.rockspec
--
-- The source is the tarball of `make dist` on the project's releases page: the scm
-- rockspec's git+https://HOST/OWNER/NAME.git gives
-- https://HOST/OWNER/NAME/releases/download/vVERSION/NAME-VERSION.tar.gz.

local function fail(message)
  io.stderr:write("release-rockspec: ", message, "\n")
  os.exit(1)
end

-- A rockspec is a Lua chunk that sets globals; it runs with no library in reach.
local function run_rockspec(text, name)
  local fields = {}
  local chunk, err = load(text, "=" .. name, "t", fields)
  if not chunk then fail(err) end
  local ok, run_err = pcall(chunk)
  if not ok then fail(tostring(run_err)) end
  return fields
end

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local version = arg[1]
if not (version and version:match("^%d+%.%d+%.%d+$")) then
  io.stderr:write("usage: lua5.4 tools/release-rockspec.lua X.Y.Z < agentsession-scm-1.rockspec\n")
  os.exit(2)
end

local text = io.read("a")
local scm = run_rockspec(text, "scm rockspec")
local repo = type(scm.source) == "table" and type(scm.source.url) == "string"
  and scm.source.url:match("^git%+(https://.+)%.git$")
if not repo then fail("the scm rockspec's source.url is not git+https://….git") end
if scm.version ~= "scm-1" then fail("the scm rockspec's version is not scm-1") end

local top = scm.package .. "-" .. version
local url = repo .. "/releases/download/v" .. version .. "/" .. top .. ".tar.gz"

local release, n = text:gsub('\nversion = "scm%-1"\n', function()
  return '\nversion = "' .. version .. '-1"\n'
end)
if n ~= 1 then fail('the scm rockspec has no line version = "scm-1"') end
release, n = release:gsub("\nsource = %b{}\n", function()
  return '\nsource = {\n  -- The tarball of `make dist`, attached to the release v' .. version .. '.\n'
    .. '  url = "' .. url .. '",\n'
    .. '  dir = "' .. top .. '",\n'
    .. "}\n"
end)
if n ~= 1 then fail("the scm rockspec has no top-level source = { … } table") end

local out = run_rockspec(release, "release rockspec")
if out.version ~= version .. "-1" or out.source.url ~= url or out.source.dir ~= top then
  fail("the release rockspec does not read back as written")
end
for key, value in pairs(scm) do
  if key ~= "version" and key ~= "source" and not same(value, out[key]) then
    fail("the release rockspec's " .. key .. " differs from the scm rockspec's")
  end
end
io.write(release)
