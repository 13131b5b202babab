--- Goes through a store's sessions a page of metadata at a time, for the commands that read a
-- whole store: memory holds one page, whatever the number of sessions.
--
-- `list{ limit =, offset = }` is the only way through a store, and offsets move when other
-- processes write while a walk runs: a session written goes to the front of the list, one
-- deleted pulls the later ones forward. So a walk does not trust offsets alone. It remembers
-- where it is by the last session it visited (its `updated_at`, and the ids visited with that
-- same `updated_at`), checks that each page it reads starts or ends on that boundary, and
-- reads again further back or further on when it does not. Each session is visited at most
-- once, and every session that nobody writes during the walk exactly once.
local agentsession = require("agentsession")

local M = {}

--- Sessions read per list call.
M.PAGE = 200

local function page(mgr, filter, offset, limit)
  local f = {}
  for k, v in pairs(filter) do f[k] = v end
  f.offset, f.limit = offset, limit
  return mgr:list(f)
end

--- The number of sessions the filter matches, found with list calls of one session each at
-- doubling, then halving offsets.
-- @param mgr a manager
-- @tparam table filter a list filter without limit and offset
-- @treturn number the count
function M.count(mgr, filter)
  local function exists(offset) return #page(mgr, filter, offset, 1) == 1 end
  if not exists(0) then return 0 end
  local lo, hi = 0, 1 -- a session at lo, none at hi
  while exists(hi) do
    lo, hi = hi, hi * 2
  end
  while hi - lo > 1 do
    local mid = math.floor((lo + hi) / 2)
    if exists(mid) then lo = mid else hi = mid end
  end
  return hi
end

-- What a walk has visited: the updated_at of the last session it visited and the ids of the
-- sessions it visited with that updated_at (list orders sessions of one updated_at by write).
local function new_boundary()
  local b = { at = nil, ids = {} }
  function b.mark(m)
    if b.at ~= m.updated_at then b.at, b.ids = m.updated_at, {} end
    b.ids[m.id] = true
  end
  return b
end

--- Visits the sessions the filter matches, oldest first: the order in which writing them
-- into another store lists them as this one does. Sessions written after the walk began
-- are left out, so it ends however busy the store is.
-- @param mgr a manager
-- @tparam table filter a list filter without limit and offset
-- @tparam function visit called with each session's metadata; returning false (or raising)
-- ends the walk
-- @tparam[opt] table opts `page` (sessions per list call), `total` (the count, when known)
function M.oldest_first(mgr, filter, visit, opts)
  opts = opts or {}
  local limit = opts.page or M.PAGE
  -- a write during the walk gets an updated_at after this one, on this clock
  local started = agentsession.now()
  while agentsession.now() <= started do end
  local b = new_boundary()
  -- The list reads: [written during the walk][to visit][visited]. `q` is where the sessions
  -- to visit end, as far as the walk knows.
  local function newer(m) return m.updated_at > started end
  local function visited(m)
    return b.at ~= nil and (m.updated_at < b.at or (m.updated_at == b.at and b.ids[m.id] == true))
  end
  local q = opts.total or M.count(mgr, filter)
  local forward = limit
  while true do
    local o = math.max(0, q - limit)
    local want = q - o + 1
    local p = page(mgr, filter, o, want)
    local n = #p
    if o > 0 and (n == 0 or visited(p[1])) then
      q = o -- sessions were deleted: the ones to visit end before this page
    elseif n == want and not visited(p[n]) then
      q, forward = q + forward, forward * 2 -- sessions were added: they end after it
    else
      for i = n, 1, -1 do
        local m = p[i]
        if not visited(m) and not newer(m) then
          b.mark(m)
          if visit(m) == false then return end
        end
      end
      if o == 0 or (n > 0 and newer(p[1])) then return end
      q, forward = o, limit
    end
  end
end

--- Visits the sessions the filter matches, most recently updated first (the order of list),
-- from `offset` on, at most `limit` of them. Sessions written during the walk are visited
-- when the walk has not passed their new place yet.
-- @param mgr a manager
-- @tparam table filter a list filter without limit and offset
-- @tparam function visit called with each session's metadata; returning false (or raising)
-- ends the walk
-- @tparam[opt] table opts `page` (sessions per list call), `offset`, `limit`
function M.newest_first(mgr, filter, visit, opts)
  opts = opts or {}
  local size = opts.page or M.PAGE
  local left = opts.limit
  local b = new_boundary()
  -- The list reads: [visited, and written during the walk][to visit].
  local function visited(m)
    return b.at ~= nil and (m.updated_at > b.at or (m.updated_at == b.at and b.ids[m.id] == true))
  end
  -- visits p[from..]; false when the walk ends
  local function take(p, from)
    for i = from, #p do
      if left == 0 then return false end
      local m = p[i]
      if not visited(m) then
        b.mark(m)
        if visit(m) == false then return false end
        if left then left = left - 1 end
      end
    end
    return left ~= 0
  end
  if left == 0 then return end
  local p = page(mgr, filter, opts.offset or 0, left and math.min(left, size) or size)
  if not take(p, 1) or #p < size then return end
  -- each later page starts on the last session visited
  local o, back = (opts.offset or 0) + #p - 1, size
  while true do
    p = page(mgr, filter, o, size + 1)
    local n = #p
    if o > 0 and (n == 0 or not visited(p[1])) then
      o, back = math.max(0, o - back), back * 2 -- sessions were deleted: go back
    else
      local first = n + 1
      for i = 1, n do
        if not visited(p[i]) then first = i break end
      end
      if not take(p, first) or n < size + 1 then return end
      o, back = o + n - 1, size
    end
  end
end

return M
