"""Analysis layer: pure functions of a run's arrays (scores, detection metrics, duplicates); no file I/O."""
