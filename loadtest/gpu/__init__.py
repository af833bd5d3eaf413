"""The GPU round (`python -m loadtest gpu-report`, `make gpu-report`): every GPU measurement of the
project in one command on a CUDA host, its steps, the PyTorch reference, the CUDA kernel profile,
the matrix-rate probe, the report it writes, and the tool that packs ONNX Runtime's CUDA provider
small enough to carry to an offline host."""
