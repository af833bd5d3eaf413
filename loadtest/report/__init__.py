"""Turning results into a verdict: the markdown report, its analysis, plots, the which-model
choice and the GPU summary."""
