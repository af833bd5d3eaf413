"""`make demo` (`python -m demo`): the whole project end to end, ending with which model to serve."""
