"""The Paillier precomputation workers."""


def test_every_precomputation_worker_is_forked_at_start_before_any_key_exists():
    """The workers (one per core beyond the first) are all forked by start_worker(), so no worker
    is forked later with a key in the parent's memory."""
    import os

    from offchain.privacy import paillier

    paillier.start_worker()
    assert len(paillier._executor()._processes) == max(1, (os.cpu_count() or 2) - 1)
