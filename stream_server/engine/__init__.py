"""The streaming engine: PCM in, typed events out. It knows nothing of HTTP."""
