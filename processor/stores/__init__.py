"""Vector stores: a Qdrant server or qdrant-client local mode (one class), and Qdrant Edge in-process."""
