"""The client commands of `stream-server`: `transcribe` (files) and `listen` (live captions)."""
