"""Several processes (torchrun) as one run: the few collective operations cml needs.

A process group exists only when the run was launched with WORLD_SIZE > 1 (torchrun sets it,
with RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT); `init` creates it (nccl on CUDA, one GPU per
process at LOCAL_RANK; gloo on the CPU). Without one, every helper here is the identity of one
process (`rank() == 0`, `world() == 1`, gathers return their input), so the one-process path runs
no distributed code. Callers never branch on the world size themselves.

Sharding rule, used by every caller: a sequence of n items is cut into `world()` contiguous
slices in rank order (`shard(n)`), so gathering the slices in rank order restores the sequence.
"""

from __future__ import annotations

import contextlib
import datetime
import os

import torch
import torch.distributed as dist

from cml.runtime.launch import launched

_host_group = None  # under nccl, a gloo group over the same ranks for host tensors (`_route`)
TIMEOUT_MINUTES = 30  # a collective waiting longer than this fails instead of hanging the run


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def init(device_name: str) -> None:
    """Join the process group torchrun describes in the environment (no-op in one process)."""
    if not launched() or active():
        return
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=TIMEOUT_MINUTES))
    if cuda:  # host tensors (the loader's rows and labels) are exchanged without a round trip to the GPU
        global _host_group
        _host_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(minutes=TIMEOUT_MINUTES))


def device(device: torch.device) -> torch.device:
    """This process's device: its own GPU (LOCAL_RANK) under torchrun on CUDA."""
    if device.type == "cuda" and active():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def shutdown() -> None:
    if active():
        dist.destroy_process_group()


def shard(n: int) -> slice:
    """This rank's contiguous part of n items (sizes differ by at most one)."""
    r, w = rank(), world()
    return slice(r * n // w, (r + 1) * n // w)


def barrier() -> None:
    if active():
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (it may write a shared cache), then the others."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _route(tensor: torch.Tensor):
    """(group, device) for a collective on `tensor`: a host tensor under nccl goes through the gloo
    group, so that gathering it neither copies it to the GPU nor waits for the GPU to read it back."""
    if tensor.device.type == "cpu" and _host_group is not None:
        return _host_group, torch.device("cpu")
    return None, _comm_device()


def all_gather_object(obj) -> list:
    """Every rank's picklable `obj`, in rank order, on every rank (the host group under nccl)."""
    if not active():
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj, group=_host_group)
    return out


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's tensor concatenated along dim 0 in rank order (first dims may differ)."""
    if not active():
        return tensor
    group, comm = _route(tensor)
    local = tensor.to(comm)
    sizes = [torch.zeros(1, dtype=torch.long, device=comm) for _ in range(world())]
    dist.all_gather(sizes, torch.tensor([len(local)], device=comm), group=group)
    sizes = [int(s) for s in sizes]
    padded = local.new_zeros((max(sizes), *local.shape[1:]))
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous(), group=group)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]).to(tensor.device)


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In place: the sum (or min, max) over ranks."""
    if active():
        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        comm = tensor.to(_comm_device())
        dist.all_reduce(comm, op=ops[op])
        tensor.copy_(comm)
    return tensor


def batch_share(n_local: int):
    """This rank's part of the global batch, times the world size: 1 in one process. DDP averages
    the ranks' gradients; weighting each rank's (per-image mean) loss by it makes that average the
    gradient of the global batch's mean also when the slices differ in size (a last batch)."""
    if not active():
        return 1.0
    n = torch.tensor([float(n_local)], device=_comm_device())
    return n_local * world() / all_reduce_(n.clone())


def broadcast_object(obj):
    """Rank 0's `obj` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, so that evaluation, the
    previous model and the checkpoint use one model; the parameters are equal already."""
    if active():
        for buffer in module.buffers():
            comm = buffer.to(_comm_device())
            dist.broadcast(comm, src=0)
            buffer.copy_(comm)


def sync_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Every BatchNorm as its synchronised variant, by timm's converter: torch's turns timm's
    BatchNormAct2d (TResNet, EfficientNet) into a plain SyncBatchNorm and drops its activation;
    timm's makes it a SyncBatchNormAct that keeps it."""
    from timm.layers import convert_sync_batchnorm

    return convert_sync_batchnorm(model)


def wrap_model(model: torch.nn.Module, sync: bool) -> torch.nn.Module:
    """DistributedDataParallel around the model (re-wrapped at every step, after the heads grew).
    BatchNorm becomes SyncBatchNorm on CUDA when asked (statistics over the global batch, as in
    one process); torch has no SyncBatchNorm on the CPU. Every parameter of every cml model gets
    a gradient in `forward(x, full=True)` (checked), so find_unused_parameters stays off. DDP does
    not broadcast the buffers before every forward: the norms' running statistics are only read
    after the step, when `broadcast_buffers` has made them rank 0's on every rank (rank 0's own
    buffers evolve the same either way)."""
    if not active():
        return model
    on_cuda = next(model.parameters()).device.type == "cuda"
    if sync and on_cuda:
        model = sync_batchnorm(model)
    ids = [torch.cuda.current_device()] if on_cuda else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
