"""What every package agrees on, torch-free: ONNX tensor names (`tensors`), the model repository's
manifest (`manifest`), the tokenizer (`tokenizer`), atomic file writes (`atomic`), the one CLI
error style (`cli`), and the seeded accuracy records with their statistics (`accuracy`, `stats`).
models/ and export/ write what these describe; service/ and loadtest/ read it.
"""
