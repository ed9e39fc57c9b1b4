"""The sans-I/O core: feed it events, run the commands it answers with (DESIGN.md, "Layers").

Nothing under this package touches sockets, the event loop, clocks, randomness, logging or storage; the
nested ruff.toml bans those imports. Time and ids come in as inputs, effects go out as commands, so every
behaviour can be replayed from recorded frames.
"""
