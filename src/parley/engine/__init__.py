"""The chat engine: the tool loop, approvals and elicitation. No HTTP, no wire formats."""
