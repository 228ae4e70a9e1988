"""Tools the model can call: MCP servers, the built-in todo server, profiles as subagents."""
