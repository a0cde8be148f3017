"""Which process am I, and helpers for work split across the processes of a data-parallel run.

Reading the rank needs no torch (`--help` stays fast); the helpers that talk to the process group
build accelerate's PartialState lazily, with the CPU pitfall handled (`distributed_state`).
"""

from __future__ import annotations

import os
from typing import Mapping


def rank() -> int:
    """Global rank from the launcher's environment (0 when not distributed)."""
    for var in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def is_main_process() -> bool:
    return rank() == 0


def world_size(env: Mapping[str, str] = os.environ) -> int:
    return int(env.get("WORLD_SIZE", "1"))


def local_process_index() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def effective_batch_size(per_device: int, processes: int, accumulation: int = 1) -> int:
    return per_device * processes * accumulation


def describe_batch(per_device: int, accumulation: int = 1, processes: int | None = None) -> str:
    """'effective batch 64 = 4 per device x 8 processes x 2 accumulation' (processes: this run's by default)."""
    n = world_size() if processes is None else processes
    return (f"effective batch {effective_batch_size(per_device, n, accumulation)} = {per_device} per device x "
            f"{n} process{'es' if n != 1 else ''} x {accumulation} accumulation")


def distributed_state():
    """accelerate's PartialState, set up right for CPU runs too: without cpu=True on a machine with no GPU,
    accelerate falls back to a single process even under `accelerate launch` (measured)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def wait_for_everyone() -> None:
    """Barrier across the processes of a data-parallel run; free (no torch import) in a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        distributed_state().wait_for_everyone()


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """This rank's contiguous slice [start, end) of n items; sizes differ by at most one, rank order = item order."""
    return rank * n // world, (rank + 1) * n // world


def gather_in_order(local: list, total: int) -> list:
    """Every rank's `shard_bounds` results, concatenated in rank order (= the original order), on every rank."""
    if world_size() == 1:
        return list(local)
    from accelerate.utils import gather_object

    distributed_state()
    gathered = gather_object(list(local))
    if len(gathered) != total:
        raise RuntimeError(f"gathered {len(gathered)} results across processes, expected {total}")
    return gathered


def finish_distributed() -> None:
    """Leave a data-parallel run in order: wait for every rank, then tear the process group down.

    A rank that simply exits with the group alive can abort in the C++ destructor ("terminate called
    without an active exception") and take the rendezvous store down under slower ranks (seen with two
    machines on one host). A no-op in a single process; never raises (we are on the way out)."""
    if world_size() == 1:
        return
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - a broken group at exit must not hide the run's own result
        pass
