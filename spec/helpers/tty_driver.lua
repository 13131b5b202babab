-- The agentsession command with every standard stream taken for a terminal, for
-- spec/helpers/command.lua on a machine where script(1) can make no pseudo-terminal
-- (a chroot without /dev/pts): the command's own code runs as bin/agentsession runs it,
-- with only its terminal test answered. Run with the checkout's LUA_PATH and LUA_CPATH.
os.exit(require("agentsession.cli").main(arg, { isatty = function() return true end }))
