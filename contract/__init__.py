"""What every package agrees on, torch-free: ONNX tensor names (`tensors`), the model repository's
manifest (`manifest`), the tokenizer (`tokenizer`), atomic file writes (`atomic`) and the one CLI
error style (`cli`). models/ and export/ write what these describe; service/ and loadtest/ read it.
"""
