"""ONNX Runtime underneath the engine: sessions and providers, CUDA graphs, shapes, NVML, variants."""
