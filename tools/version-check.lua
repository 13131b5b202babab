-- Checks that every file that states the library's version states the Makefile's:
-- lua/agentsession/init.lua's VERSION, the release rockspec made from
-- agentsession-scm-1.rockspec, CHANGELOG.md's latest version heading, and the version macros
-- of a C header named agentsession.h under csrc/ when there is one.
--
--   lua5.4 tools/version-check.lua 0.1.0   (make version-check passes the Makefile's VERSION)

local version = arg[1]
if not (version and version:match("^%d+%.%d+%.%d+$")) then
  io.stderr:write("usage: lua5.4 tools/version-check.lua X.Y.Z (the Makefile's VERSION)\n")
  os.exit(2)
end

local problems = {}
local function problem(fmt, ...) problems[#problems + 1] = string.format(fmt, ...) end

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then
    problem("%s", err)
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end

local function check_lua_module()
  local path = "lua/agentsession/init.lua"
  local text = read(path)
  if not text then return end
  local found = {}
  for v in text:gmatch('\n%s*VERSION%s*=%s*"([^"]*)"') do found[#found + 1] = v end
  if #found ~= 1 then
    problem("%s: %d VERSION fields, expected one", path, #found)
  elseif found[1] ~= version then
    problem('%s: VERSION = "%s"', path, found[1])
  end
end

local function check_release_rockspec()
  local interpreter = arg[-1] or "lua5.4"
  local pipe = assert(io.popen(string.format("%s tools/release-rockspec.lua %s < agentsession-scm-1.rockspec",
    interpreter, version)))
  local text = pipe:read("a")
  if not pipe:close() then
    problem("tools/release-rockspec.lua failed on agentsession-scm-1.rockspec")
    return
  end
  local fields = {}
  local chunk = load(text, "=release rockspec", "t", fields)
  if not (chunk and pcall(chunk)) then
    problem("the release rockspec does not load")
    return
  end
  local top = "agentsession-" .. version
  if fields.version ~= version .. "-1" then problem("release rockspec: version %s", tostring(fields.version)) end
  if fields.source.dir ~= top then problem("release rockspec: source.dir %s", tostring(fields.source.dir)) end
  if not fields.source.url:find("/v" .. version .. "/" .. top .. ".tar.gz", 1, true) then
    problem("release rockspec: source.url %s", fields.source.url)
  end
end

-- Keep a Changelog: "## [Unreleased]" may come first; the first numbered heading is the latest.
local function check_changelog()
  local text = read("CHANGELOG.md")
  if not text then return end
  for heading in text:gmatch("\n## %[([^%]]*)%]") do
    if heading ~= "Unreleased" then
      if heading ~= version then problem("CHANGELOG.md: the latest version heading is [%s]", heading) end
      return
    end
  end
  problem("CHANGELOG.md: no version heading ## [%s]", version)
end

-- The header's macros are found by their names: AGENTSESSION_VERSION_MAJOR, _MINOR and _PATCH
-- as integers, and any AGENTSESSION_VERSION... defined as a string literal.
local function check_header(path)
  local text = read(path)
  if not text then return end
  local major, minor, patch = version:match("^(%d+)%.(%d+)%.(%d+)$")
  local seen = 0
  for i, part in ipairs({ "MAJOR", "MINOR", "PATCH" }) do
    local expected = ({ major, minor, patch })[i]
    local value = text:match("#%s*define%s+AGENTSESSION_VERSION_" .. part .. "%s+%(?(%d+)%)?")
    if value then
      seen = seen + 1
      if tonumber(value) ~= tonumber(expected) then
        problem("%s: AGENTSESSION_VERSION_%s is %s", path, part, value)
      end
    end
  end
  if seen ~= 0 and seen ~= 3 then
    problem("%s: AGENTSESSION_VERSION_MAJOR, _MINOR and _PATCH go together", path)
  end
  for name, value in text:gmatch('#%s*define%s+(AGENTSESSION_VERSION[%w_]*)%s+"([^"]*)"') do
    seen = seen + 1
    if value ~= version then problem('%s: %s is "%s"', path, name, value) end
  end
  if seen == 0 then
    problem("%s: no AGENTSESSION_VERSION_MAJOR/_MINOR/_PATCH or AGENTSESSION_VERSION string", path)
  end
end

local function headers()
  local pipe = assert(io.popen("find csrc -type f -name agentsession.h"))
  local paths = {}
  for line in pipe:lines() do paths[#paths + 1] = line end
  if not pipe:close() then problem("find csrc failed") end
  table.sort(paths)
  return paths
end

check_lua_module()
check_release_rockspec()
check_changelog()
local checked = { "lua/agentsession/init.lua", "the release rockspec", "CHANGELOG.md" }
for _, path in ipairs(headers()) do
  check_header(path)
  checked[#checked + 1] = path
end

if #problems > 0 then
  io.stderr:write("version: the Makefile says ", version, " but\n")
  for _, p in ipairs(problems) do io.stderr:write("  ", p, "\n") end
  os.exit(1)
end
print("version: " .. version .. " in the Makefile, " .. table.concat(checked, ", "))
