"""Thin adapters between the network and the service: parse, call, serialise."""
