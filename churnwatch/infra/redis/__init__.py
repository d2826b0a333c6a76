"""Redis clients: connection from settings, the RESP encoder and Lua script routing."""
