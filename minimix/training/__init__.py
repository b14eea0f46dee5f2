"""Training: the loop (``Trainer``, ``evaluate``), crash-safe checkpoints and metrics::

    from minimix.training import Trainer, TrainConfig
    trainer = Trainer(model, (train_images, train_labels), (test_images, test_labels),
                      TrainConfig(epochs=15), run_dir="runs/demo")
    trainer.fit()

``python -m minimix train`` does the same from the command line (see ``minimix.cli.train``).
"""
from .checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from .lock import RunDirectoryLocked, lock_run_dir
from .metrics import confusion_matrix, per_class_accuracy, read_log, write_log
from .trainer import TrainConfig, Trainer, TrainingDiverged, evaluate, load_weights, read_checkpoint

__all__ = [
    "Trainer", "TrainConfig", "evaluate", "save_checkpoint", "load_checkpoint", "resolve_checkpoint",
    "read_checkpoint", "load_weights", "CheckpointError", "TrainingDiverged", "RunDirectoryLocked",
    "lock_run_dir", "confusion_matrix", "per_class_accuracy", "read_log", "write_log",
]
