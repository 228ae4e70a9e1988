"""One module per door."""
