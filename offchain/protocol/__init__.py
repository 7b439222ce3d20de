"""Parties, their keys, the transports (plaintext, private, chain), the executors and the one round driver."""
