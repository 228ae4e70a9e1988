"""Pure values with no I/O: ids, message parts, engine events and usage."""
