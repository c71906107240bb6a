"""Tests of stream_server.decoder."""
