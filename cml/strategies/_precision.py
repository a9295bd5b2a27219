"""Mixed precision (`train.amp`) without branches in the training step: autocast and the gradient
scaler always run, disabled where they do nothing (on the CPU, `amp: none`, bf16 for the scaler).
A disabled GradScaler passes the loss through `scale`, makes `unscale_` and `update` no-ops and
`step` a plain `optimizer.step()`, so one code path serves every setting."""

from __future__ import annotations

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    def __init__(self, amp: str, device):
        on_cuda = torch.device(device).type == "cuda"
        self.dtype = DTYPES.get(amp) if on_cuda else None
        self.device_type = "cuda" if on_cuda else "cpu"
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=self.dtype is torch.float16)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)

    def backward(self, loss: torch.Tensor, retain_graph: bool | None = None) -> None:
        self.scaler.scale(loss).backward(retain_graph=retain_graph)

    def unscale(self, optimizer) -> None:
        """Before clipping: clip the true gradients, not the scaled ones."""
        self.scaler.unscale_(optimizer)

    def step(self, optimizer) -> None:
        self.scaler.step(optimizer)
        self.scaler.update()
