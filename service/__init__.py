"""headtohead serving: FastAPI + ONNX Runtime over the model repository (no torch)."""

__version__ = "0.1.0"
