"""The engine: the models' sessions, one batcher queue per model and its waiting room."""
