"""Domain core of the LOCUS registry: settings, tables, repositories, vector index adapter, services.

No FastAPI and no torch here; the encoder is reached only through `registry.ports.Embedder`.
"""
