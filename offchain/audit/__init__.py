"""Rebuild and verify rounds from chain data alone (events, storage, transaction inputs, receipts)."""
