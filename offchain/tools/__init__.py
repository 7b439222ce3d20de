"""Tools around the product, not part of a run: the benchmarks behind `gridshare bench ...`
(bench.py; the chain's own measurements in bench_chain.py, the load test in bench_load.py) and the
stateful fuzz harness of the round contract (fuzz.py). The product's modules never import them."""
