-- Mira at the well: a tiny LÖVE game whose NPC remembers you between games.
--   love examples/love                play: keys 1-3 pick what you say, Esc leaves
--   love examples/love --say 2,1,1    a scripted player, without a window: each
--                                     number picks an option; the talk is printed
-- Mira's memory is an agentsession session in a SQLite file: the path in
-- $AGENTSESSION_LOVE_STORE, else npc.db in the game's save directory.
local agentsession = require("agentsession")
local Npc = require("npc")

local mgr, mira
local script -- the scripted player's choices, or nil when a person plays

local function scripted_choices(args)
  for i, a in ipairs(args) do
    if a == "--say" then
      local choices = {}
      for n in (args[i + 1] or ""):gmatch("[^,]+") do
        choices[#choices + 1] = tonumber(n) or error("--say: not a number: " .. n)
      end
      return choices
    end
  end
end

function love.load(args)
  local path = os.getenv("AGENTSESSION_LOVE_STORE")
  if path == nil or path == "" then
    love.filesystem.createDirectory("") -- makes the save directory itself
    path = love.filesystem.getSaveDirectory() .. "/npc.db"
  end
  mgr = agentsession.sqlite(path)
  mira = Npc.meet(mgr, "mira")
  script = scripted_choices(args)
  if script then print("npc: " .. mira.line) end
end

-- The scripted player says one line a frame, then leaves.
function love.update()
  if script == nil then return end
  local choice = table.remove(script, 1)
  if choice == nil then
    love.event.quit(0)
    return
  end
  print("player: " .. (mira:options()[choice] or "?"))
  print("npc: " .. mira:choose(choice))
end

function love.draw()
  love.graphics.printf("Mira: " .. mira.line, 20, 20, 600)
  for i, option in ipairs(mira:options()) do
    love.graphics.print(i .. ". " .. option, 40, 80 + 24 * i)
  end
  if mira:done() then love.graphics.print("(Esc to leave)", 40, 104) end
end

function love.keypressed(key)
  if key == "escape" then
    love.event.quit()
  elseif mira:options()[tonumber(key)] then
    mira:choose(tonumber(key))
  end
end

function love.quit()
  mgr:close()
end
