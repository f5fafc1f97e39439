"""Fakes at protocol seams, shared by every test package (an OpenAI-compatible HTTP server)."""
