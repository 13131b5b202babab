std = "lua54"
max_line_length = 120
files["spec"] = { std = "+busted" }
exclude_files = { "build/", ".luarocks/" }
-- Code that runs inside Neovim (LuaJIT, with the global `vim`).
files["examples/nvim"] = { std = "luajit", globals = { "vim" } }
files["spec/nvim"] = { std = "luajit", globals = { "vim" } }
