"""Agents (prosumers, coordinator) and the round driver: binds a mechanism to privacy and the chain."""
