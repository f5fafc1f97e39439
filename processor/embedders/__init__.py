"""Embedders: OpenAI (or any compatible server) and the offline character-n-gram hashing embedder."""
