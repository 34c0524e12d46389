"""Run layer: the run folder on disk (atomic files, lock, arrays), the decision log, exports and images."""
