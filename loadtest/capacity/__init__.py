"""The capacity search: the largest offered rate each model sustains within its latency target
(the search itself, the runner that drives a live service, and the `capacity` subcommand)."""
