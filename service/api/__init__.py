"""The two APIs the front serves: v1 (simple JSON) and KServe v2 (JSON and binary tensors)."""
