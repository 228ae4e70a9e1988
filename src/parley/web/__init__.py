"""The chat page, served by parley itself."""
