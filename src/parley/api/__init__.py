"""HTTP and WebSocket doors: thin routes over the engine, one module a door."""
