"""Figures only. Nothing here chooses a matplotlib backend: that is the caller's (the CLI's)."""
