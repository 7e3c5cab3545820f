"""LOCUS set encoder: model embeddings from scored questions, and a correctness predictor.

Pure PyTorch + numpy. Nothing here knows about the registry, HTTP, SQL or Qdrant.
"""
