"""The front's own work around the engine: the registry and readiness (registry.py), validation and
tokenisation (inputs.py), post-processing (outputs.py), and the link to an engine process (link.py)."""
