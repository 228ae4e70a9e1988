"""Encoders from engine events to the bytes each kind of client expects."""
