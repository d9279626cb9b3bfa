"""Where a population's arrays live: a ``("member", "batch")`` mesh over every device of every
process, and global arrays built from each process's own part (``jax.sharding``; no home-made
distributed layer). With one process and ``member_sharding`` off, the member axis has size 1 and
this is plain data parallelism over the local devices.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from skip_rnn.experiments.configuration import mesh_shape
from skip_rnn.experiments.data import Batch, TaskData


def stack_members(batches: list[Batch]) -> Batch:
    """One batch per member -> one batch with leaves ``[M, B, ...]``."""
    return Batch(*(None if a[0] is None else np.stack(a) for a in zip(*batches, strict=True)))


def make_mesh(config: ml_collections.ConfigDict, devices: list) -> Mesh:
    """``devices`` as a ``("member", "batch")`` mesh: members over the first axis (size 1 but
    with ``config.member_sharding``), each member's batch over the second."""
    return Mesh(np.array(devices).reshape(mesh_shape(config, len(devices))), ("member", "batch"))


def place_members(tree, mesh: Mesh):
    """``tree``'s arrays, the same on every process, as global arrays: leaves ``[M, ...]`` split
    over the mesh's member axis, scalars (the step) replicated."""
    def place(leaf):
        spec = PartitionSpec("member") if np.ndim(leaf) else PartitionSpec()
        return jax.make_array_from_process_local_data(
            NamedSharding(mesh, spec), np.asarray(leaf), np.shape(leaf))
    return jax.tree.map(place, tree)


def global_batch(batch: Batch, sharding: NamedSharding, shape: tuple[int, ...]) -> Batch:
    """This process's part of a batch whose leading axes are ``shape`` (all of it, or the
    indices of :func:`process_indices`), as global arrays laid out by ``sharding``."""
    return Batch(*(None if a is None else jax.make_array_from_process_local_data(
        sharding, a, shape + a.shape[len(shape):]) for a in batch))


def process_indices(sharding: NamedSharding, shape: tuple[int, ...]) -> list[np.ndarray]:
    """For each axis of ``shape``, the indices that this process's devices hold, sorted: the
    process-local data :func:`jax.make_array_from_process_local_data` expects."""
    slices = sharding.addressable_devices_indices_map(shape).values()
    return [np.unique(np.concatenate([np.arange(size)[s[axis]] for s in slices]))
            for axis, size in enumerate(shape)]


def train_batch(task: TaskData, seeds: list[int], step: int, batch_size: int,
                sharding: NamedSharding) -> Batch:
    """Step ``step``'s batch of every member (``seeds``: each member's data stream), leaves
    ``[M, B, ...]`` laid out by ``sharding``. This process builds the batches of its members
    only, and of them its rows only (batches are functions of seed and step; disk-backed
    sets read only those examples)."""
    shape = (len(seeds), batch_size)
    members, rows = process_indices(sharding, shape)
    rows = rows if len(rows) < batch_size else None
    batches = [task.train_batch(seeds[m], step, rows) for m in members]
    return global_batch(stack_members(batches), sharding, shape)
