"""The stream side: bridge, planner, indexer, embedders and vector stores."""
