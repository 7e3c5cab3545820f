"""HTTP layer and composition root: builds the engine, the Qdrant index and the embedder, wires routes."""
