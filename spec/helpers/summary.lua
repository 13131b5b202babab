-- busted output handler: the usual terminal output, then one closing line
-- "N passed, M failed" (errors count as failures) for CI to read.
return function(options)
  local busted = require("busted")
  local handler = require("busted.outputHandlers.utfTerminal")(options)
  busted.subscribe({ "suite", "end" }, function()
    io.write(string.format("\n%d passed, %d failed\n",
      handler.successesCount, handler.failuresCount + handler.errorsCount))
    io.flush()
    return nil, true
  end)
  return handler
end
