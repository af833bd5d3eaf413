"""Benchmarks of the serving path itself: service overhead against a bare FastAPI app, the
wrk cross-check, and CUDA IO binding."""
