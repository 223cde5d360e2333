"""The trial engine's names that other packages read without importing torch (the sweep driver among them)."""

from __future__ import annotations

#: the file a checkpoint directory holds; the driver logs it as the run's ``checkpoint`` artifact
CHECKPOINT_FILE = "state.pt"
#: the degradation seed of the validation images; ``ablate eval`` uses it too, so its whole images
#: (and its bicubic reference) are the trainer's validation pairs when ``train.val_size`` is 0
VAL_SEED = 1234
