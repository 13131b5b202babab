--- Text for people: what the agentsession command prints in tables and transcripts.
-- Strings from a store are UTF-8 of any content; everything here keeps characters whole and
-- never lets a stored control character reach the terminal.
local M = {}

-- Control characters but newline and tab, as ^X (DEL as ^?), and the C1 controls as "?": a
-- session can hold escape sequences, which must not drive the terminal that shows it.
local function caret(c)
  local b = c:byte()
  if b == 127 then return "^?" end
  return "^" .. string.char(b + 64)
end

--- `s` without control characters: each but newline and tab as ^X.
function M.printable(s)
  return (s:gsub("[%z\1-\8\11-\31\127]", caret):gsub("\194[\128-\159]", "?"))
end

--- `s` on one line: newlines and tabs as spaces, other controls as ^X.
function M.one_line(s)
  return M.printable(s):gsub("\r?\n", " "):gsub("\t", " ")
end

-- The code point of the UTF-8 sequence at i and its length; a stray byte counts as itself.
local function code_at(s, i)
  local c = s:byte(i)
  if c < 0x80 then return c, 1 end
  local n = c >= 0xF0 and 4 or c >= 0xE0 and 3 or c >= 0xC0 and 2 or 1
  if n == 1 then return c, 1 end
  local cp = c % (2 ^ (7 - n))
  for k = 1, n - 1 do
    local d = s:byte(i + k)
    if not d or d < 0x80 or d > 0xBF then return c, 1 end
    cp = cp * 64 + d % 64
  end
  return cp, n
end

-- Columns a code point takes on a terminal: 0 for combining marks, 2 for East Asian wide
-- characters and emoji, 1 otherwise.
local function columns(cp)
  if cp >= 0x0300 and cp <= 0x036F or cp == 0x200D or cp >= 0xFE00 and cp <= 0xFE0F then return 0 end
  if cp >= 0x1100 and cp <= 0x115F or cp >= 0x2E80 and cp <= 0xA4CF or cp >= 0xAC00 and cp <= 0xD7A3
      or cp >= 0xF900 and cp <= 0xFAFF or cp >= 0xFE30 and cp <= 0xFE4F or cp >= 0xFF00 and cp <= 0xFF60
      or cp >= 0xFFE0 and cp <= 0xFFE6 or cp >= 0x1F300 and cp <= 0x1F64F
      or cp >= 0x1F900 and cp <= 0x1F9FF or cp >= 0x20000 and cp <= 0x3FFFD then
    return 2
  end
  return 1
end

--- The columns `s` takes on a terminal.
function M.width(s)
  local w, i = 0, 1
  while i <= #s do
    local cp, n = code_at(s, i)
    w = w + columns(cp)
    i = i + n
  end
  return w
end

--- `s` cut to at most `max` columns, ending with "…" when cut.
function M.clip(s, max)
  if M.width(s) <= max then return s end
  local w, i = 0, 1
  while i <= #s do
    local cp, n = code_at(s, i)
    local c = columns(cp)
    if w + c > max - 1 then break end
    w = w + c
    i = i + n
  end
  return s:sub(1, i - 1) .. "\226\128\166"
end

--- `s` padded with spaces to `w` columns (on the right, or on the left when `right`).
function M.pad(s, w, right)
  local fill = string.rep(" ", w - M.width(s))
  if right then return fill .. s end
  return s .. fill
end

--- The first `max` bytes of `s` or fewer, cut between characters.
function M.cut(s, max)
  if #s <= max then return s end
  local i = max
  while i > 0 do
    local c = s:byte(i + 1)
    if not c or c < 0x80 or c > 0xBF then break end
    i = i - 1
  end
  return s:sub(1, i)
end

--- A count of bytes for people: "512 B", "1.5 KiB", "12.3 MiB".
function M.bytes(n)
  if n < 1024 then return string.format("%d B", n) end
  local units = { "KiB", "MiB", "GiB", "TiB" }
  local u = 0
  repeat
    n = n / 1024
    u = u + 1
  until n < 1024 or u == #units
  return string.format(n < 10 and "%.1f %s" or "%.0f %s", n, units[u])
end

--- A count for a narrow column: exact below 10,000, then "12.3k", "456k", "7.8M", "1.2G".
function M.count(n)
  if n < 10000 then return string.format("%d", n) end
  for _, u in ipairs({ { 1e9, "G" }, { 1e6, "M" }, { 1e3, "k" } }) do
    if n >= u[1] then
      local v = n / u[1]
      return string.format(v < 100 and "%.1f%s" or "%.0f%s", v, u[2])
    end
  end
end

--- Unix milliseconds as local time: "2026-12-06 20:23:01".
function M.date(ms)
  return os.date("%Y-%m-%d %H:%M:%S", math.floor(ms / 1000))
end

--- How long ago `ms` was, seen at `now` (both Unix milliseconds): "just now", "42 s ago",
-- "3 min ago", "5 h ago", "2 days ago"; the date when older than 30 days or in the future.
function M.ago(ms, now)
  local s = (now - ms) / 1000
  if s < 0 then return M.date(ms):sub(1, 16) end
  if s < 1 then return "just now" end
  if s < 60 then return string.format("%d s ago", math.floor(s)) end
  if s < 3600 then return string.format("%d min ago", math.floor(s / 60)) end
  if s < 86400 then return string.format("%d h ago", math.floor(s / 3600)) end
  local days = math.floor(s / 86400)
  if days == 1 then return "1 day ago" end
  if days <= 30 then return string.format("%d days ago", days) end
  return M.date(ms):sub(1, 10)
end

--- `text` kept to at most `max_lines` lines and `max_bytes` bytes; returns it and, when it
-- was cut, a note saying what was left out.
function M.fold(text, max_lines, max_bytes)
  local lines, total = 0, 1
  for _ in text:gmatch("\n") do total = total + 1 end
  if total <= max_lines and #text <= max_bytes then return text, nil end
  local cut_at = #text
  local pos = 0
  while lines < max_lines do
    local nl = text:find("\n", pos + 1, true)
    if not nl then break end
    lines, pos = lines + 1, nl
    if lines == max_lines then cut_at = nl - 1 end
  end
  local kept = M.cut(text:sub(1, cut_at), max_bytes)
  local kept_lines = 1
  for _ in kept:gmatch("\n") do kept_lines = kept_lines + 1 end
  local more = total - kept_lines
  local note
  if more > 0 then
    note = string.format("%d more line%s, %s", more, more == 1 and "" or "s", M.bytes(#text - #kept))
  else
    note = M.bytes(#text - #kept) .. " more"
  end
  return kept, note
end

return M
