"""`python -m loadtest profile`: where one run's time goes, per model, from ONNX Runtime's own
profiler (operator classes, nodes per run, the framework's share between them)."""
