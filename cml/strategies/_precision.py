"""Mixed precision (`train.amp`) without branches in the training step: autocast and the gradient
scaler always run, disabled where they do nothing (on the CPU, `amp: none`, bf16 for the scaler).
A disabled GradScaler passes the loss through `scale`, makes `unscale_` and `update` no-ops and
`step` a plain `optimizer.step()`, so one code path serves every setting.

fp16's scaler skips the update of every batch whose gradients overflow and halves its scale: a
few skips while the scale settles are normal, a run of them means nothing is learnt. `step`
returns whether it skipped, as a device tensor (the scale went down), so that counting the skips
costs no host read (`_nonfinite.py` reads the count with its other checks). The scaler's state
(its scale and growth tracker) is saved in the checkpoint, so a resume continues at the scale it
reached instead of starting again at 65536.
"""

from __future__ import annotations

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AUTOCAST_DEVICES = ("cuda",)  # where `train.amp` applies; the tests add "cpu" to exercise the logic there


class Precision:
    def __init__(self, amp: str, device):
        device_type = torch.device(device).type
        self.dtype = DTYPES.get(amp) if device_type in AUTOCAST_DEVICES else None
        self.device_type = device_type if self.dtype is not None else "cpu"
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=self.dtype is torch.float16)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)

    def backward(self, loss: torch.Tensor, retain_graph: bool | None = None) -> None:
        self.scaler.scale(loss).backward(retain_graph=retain_graph)

    def unscale(self, optimizer) -> None:
        """Before clipping: clip the true gradients, not the scaled ones."""
        self.scaler.unscale_(optimizer)

    def step(self, optimizer) -> torch.Tensor | None:
        """The update; with fp16's scaler, a 0-dim bool device tensor: whether it was skipped."""
        if not self.scaler.is_enabled():  # no scaler, no skipped update
            optimizer.step()
            return None
        scale = self.scaler._scale.clone()  # set by the first `scale`; the scaler keeps no public tensor
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler._scale < scale  # update() halves the scale exactly when it skipped the step

    def state_dict(self) -> dict:
        return self.scaler.state_dict()  # {} when disabled

    def load_state_dict(self, state: dict | None) -> None:
        if state:
            self.scaler.load_state_dict(state)
