# The Lua scripts ship inside the wheel as the `emostream.lua` resource package
# (see pyproject.toml); this file only makes the folder importable for importlib.resources.
