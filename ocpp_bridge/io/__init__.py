"""The asyncio shell: sockets, TLS, timers and the store, around the sans-I/O core."""
