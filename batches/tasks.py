"""Old dotted paths of the django-q2 entry points, kept so that tasks queued before the move
into batches/engine/ (stored as "batches.tasks.run_slice" and "batches.tasks.rescue") still
run after an upgrade. New code uses batches.engine.tasks."""

from batches.engine.tasks import rescue, run_slice

__all__ = ["rescue", "run_slice"]
