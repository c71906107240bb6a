"""Tests of stream_server.transports."""
