"""Paillier keys, packed fixed-point encoding, pairwise masks and opening proofs."""
