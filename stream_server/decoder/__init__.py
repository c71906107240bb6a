"""The speech model and what it returns."""
