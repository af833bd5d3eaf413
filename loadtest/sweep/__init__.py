"""The sweep: the grid of (model, batch, sequence, concurrency) points, the plan, and the run over
HTTP or in-process (ONNX Runtime timed directly, no HTTP)."""
