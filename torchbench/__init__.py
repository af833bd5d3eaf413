"""The GPU round's measurements that need PyTorch: the PyTorch reference on the export's own
weights (torch_ref), the matmul peak probe (peak), every CUDA kernel of a run recorded by CUPTI
through torch.profiler (kernels, cupti_record).

A package of its own so that the load tester never pulls in torch, models/ or export/: this one
sits above them all and may import any of them; no other package imports it (the round runs
each as `python -m torchbench.<module>`; tests/test_structure.py checks both ways).
"""
