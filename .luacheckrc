std = "lua54"
max_line_length = 120
files["spec"] = { std = "+busted" }
exclude_files = { "build/", ".luarocks/" }
-- Code that runs inside Neovim (LuaJIT, with the global `vim`).
files["examples/nvim"] = { std = "luajit", globals = { "vim" } }
files["spec/nvim"] = { std = "luajit", globals = { "vim" } }
-- Code that runs inside LÖVE (LuaJIT, with the global `love`).
files["examples/love"] = { std = "luajit", globals = { "love" } }
