"""tradeplane.contracts: the wire contracts that cross process boundaries, versioned and checked.

``signal.proto`` (package ``tradeplane.contracts.v1``: Signal, Intent) is the schema; ``signal_pb2`` is
generated from it by :mod:`tradeplane.contracts.generate` and committed; :mod:`tradeplane.workloads.codec`
converts the engine's dataclasses to and from the bytes and builds the JSON audit record. The rules for
changing any of it are in docs/data-contracts.md ("Signals", "Compatibility rules"). Nothing is imported
here, so reading the schema version or regenerating needs neither the engine nor protobuf.
"""
