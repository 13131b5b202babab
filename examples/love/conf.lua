-- LÖVE's configuration. With --say on the command line a scripted player
-- plays (see main.lua), so the game runs without a window, graphics or sound.
local scripted = false
for _, a in ipairs(arg or {}) do
  if a == "--say" then scripted = true end
end

function love.conf(t)
  t.identity = "agentsession-npc"
  t.version = "11.4"
  t.window.title = "Mira at the well"
  t.window.width, t.window.height = 640, 360
  if scripted then
    t.window = false
    for _, m in ipairs({ "window", "graphics", "image", "font", "video", "audio", "sound", "joystick",
      "keyboard", "mouse", "touch", "physics" }) do
      t.modules[m] = false
    end
  end
end
