"""Engine layer: the tracker, models, the trainer (one process or DDP) and the background job that runs it."""
