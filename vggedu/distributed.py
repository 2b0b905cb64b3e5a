"""Synchronous data-parallel training over MPI, and randomness keyed by the global sample index (lesson 08).

    mpirun -n 2 vggedu train --config A --data shapes --size 32 --width 0.25 --batch 64 --out runs/A2

The paper trained on 4 GPUs this way (Sect. 3.3): every worker holds the whole net, each step's
mini-batch is split between them, and the gradients are averaged before one identical update.
Here a worker is an MPI process ("rank"); ``world()`` finds rank and size when the command was
started by ``mpirun`` (mpi4py and Open MPI from ``pip install 'vggedu[mpi]'``), else a world of one
(mpi4py is not even imported). One step of ``DataParallel.step``, with R ranks and global batch N:

1. rank r takes its share of the batch, images ``shard(N)`` = [N*r//R, N*(r+1)//R) (the loader only
   augments those: ``ShardedLoader``);
2. forward and backward on the share, with the loss summed over the share and divided by N (not
   by the share's size), so that the sum over ranks is the gradient of the whole batch's mean loss;
3. ONE Allreduce (sum) over one flat buffer holding every gradient, the loss sum and the correct
   count (not one call per array: a call costs its latency, 32 arrays would pay it 32 times);
4. every rank reads the summed loss and count (its only device->host read of the step), checks
   them for divergence, and takes the same SGD step from the same gradients.

So R ranks compute what one process computes, up to the order of float sums, if the randomness is
the same: augmentation is already keyed by the image (``DataLoader.sample_rng``), and dropout masks
are keyed by the global sample index (``dropout_keys``: seed, layer, epoch and the sample's
position in the epoch, hashed on the device by ``keyed_bits``). The same sample gets the same mask
whichever rank holds it, on the CPU and on the GPU alike (integer hashing, bit for bit), and a run
resumed with another number of ranks goes on as it would have.

On GPUs each rank uses GPU ``local_rank % devices`` and the Allreduce goes through NCCL
(``cupy.cuda.nccl``) when CuPy has it, else through the host (one copy each way, which is then also
the step's one read). Neither GPU path has run yet (no GPU was available when it was written).

Faults: ``abort_on_error(world)`` turns an exception on any rank into its message on stderr and
``MPI_Abort``, so mpirun ends every rank with a non-zero exit instead of leaving the others waiting
in the next Allreduce forever.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
import weakref
import zlib

import numpy as np

from vggedu.backend import device_of, get_array_module, gpu_collectives, to_device, to_numpy
from vggedu.data import DataLoader

# Environment variables through which MPI launchers tell a process the size of its world.
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
_LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK")

# ----------------------------------------------------------------------------- the world


class World:
    """This process's place among the ranks: ``rank``, ``size``, ``local_rank`` (on its machine), ``comm``."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self.local_rank = next((int(os.environ[v]) for v in _LOCAL_RANK_VARS if v in os.environ), self.rank)
        self._nccl = None

    @classmethod
    def of(cls, rank: int, size: int) -> World:
        """A world seen from ``rank`` of ``size`` without MPI: its ``shard`` arithmetic, for lessons and tests."""
        w = cls()
        w.rank, w.size = int(rank), int(size)
        return w

    @property
    def is_root(self) -> bool:
        """Rank 0: the only one that writes files, prints and shows progress."""
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's share of ``n`` items: ``[n*rank//size, n*(rank+1)//size)``."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def allreduce_(self, buf):
        """Sum ``buf`` (a flat NumPy or CuPy array) over the ranks, in place; returns a host copy when the
        sum went through the host (else None). A no-op in a world of one."""
        if self.size == 1:
            return None
        if device_of(buf) == "cpu":
            from mpi4py import MPI

            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            return buf
        nccl = self._nccl_comm()
        if nccl is not None:  # on the device, no host copy (untested: no GPU was available)
            nccl.allreduce_(buf)
            return None
        host = to_numpy(buf)  # through the host: one device->host copy, which is also the step's one read
        from mpi4py import MPI

        self.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        buf[...] = to_device(host, "gpu")
        return host

    def _nccl_comm(self):
        if self._nccl is None:
            self._nccl = gpu_collectives(self.comm, self.rank, self.size) or False
        return self._nccl or None

    def bcast(self, obj):
        return obj if self.size == 1 else self.comm.bcast(obj, root=0)

    def abort(self, code: int = 1):
        if self.comm is not None and self.size > 1:
            self.comm.Abort(code)
        raise SystemExit(code)

    def __repr__(self):
        return f"World(rank={self.rank}, size={self.size})"


_WORLD: list = []


def launched_size() -> int:
    """The number of processes an MPI launcher started (1 when none did), from its environment."""
    for var in _SIZE_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 1


def world() -> World:
    """This process's ``World``: from mpi4py when started by an MPI launcher with several processes, else a
    world of one. Clear error when mpirun started several processes but mpi4py is missing."""
    if not _WORLD:
        size = launched_size()
        if size <= 1:
            _WORLD.append(World())
        else:
            try:
                from mpi4py import MPI
            except ImportError as err:
                raise RuntimeError(f"started as one of {size} MPI processes, but mpi4py is not installed ({err}): "
                                   "pip install 'vggedu[mpi]'") from None
            _WORLD.append(World(MPI.COMM_WORLD))
    return _WORLD[0]


@contextlib.contextmanager
def abort_on_error(w: World | None = None, prog: str = "vggedu"):
    """Any exception inside: print it with the rank, then abort every rank (MPI_Abort), so none hangs."""
    w = w or world()
    try:
        yield w
    except BaseException as err:
        if w.size == 1 or (isinstance(err, SystemExit) and not err.code):
            raise
        if not isinstance(err, (ValueError, TypeError, FileNotFoundError, PermissionError, KeyboardInterrupt)):
            traceback.print_exc(file=sys.stderr)
        print(f"{prog} (rank {w.rank} of {w.size}): error: {type(err).__name__}: {err}; aborting all ranks",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        w.abort(1)


class ShardedLoader(DataLoader):
    """A ``DataLoader`` whose batches are this rank's share of each global batch (``world.shard``): the same
    order, positions and state as the one-process loader (so a checkpoint resumes with any number of
    ranks), but only the rank's images are read and augmented."""

    def __init__(self, *args, world=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.world = world

    def make_batch(self, epoch, index, pool=None):
        lo, hi = self.world.shard(len(index))
        if hi == lo:  # a last batch with fewer images than ranks: nothing for this one
            return None, np.zeros(0, np.int64)
        return super().make_batch(epoch, index[lo:hi], pool)


# ----------------------------------------------------------------------------- keyed randomness


_M1, _M2, _GOLDEN = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35), np.uint32(0x9E3779B9)


def _mix32(x):
    """MurmurHash3's 32-bit finaliser on a uint32 array (wraps modulo 2**32 the same on NumPy and CuPy)."""
    x = x ^ (x >> np.uint32(16))
    x = x * _M1
    x = x ^ (x >> np.uint32(13))
    x = x * _M2
    return x ^ (x >> np.uint32(16))


def dropout_keys(seed: int, layer: str, epoch: int, positions) -> np.ndarray:
    """One uint32 key per sample (host): hash of the run's seed, the layer's name, the epoch and the sample's
    position in the epoch (its global index), so a mask does not depend on which rank draws it."""
    with np.errstate(over="ignore"):
        k = _mix32(np.uint32(int(seed) & 0xFFFFFFFF) ^ _GOLDEN)
        k = _mix32(k ^ np.uint32(zlib.crc32(layer.encode())))
        k = _mix32(k ^ np.uint32(int(epoch) & 0xFFFFFFFF))
        return _mix32(k ^ _mix32(np.asarray(positions, dtype=np.uint32) * _GOLDEN))


def keyed_bits(keys, width: int):
    """Pseudo-random uint32 bits (N, width) from per-row keys (N,), computed where ``keys`` lives: row n is a
    function of keys[n] alone (counter-based: hash of the key and the column), identical on CPU and GPU."""
    xp = get_array_module(keys)
    cols = xp.arange(width, dtype=np.uint32) * _GOLDEN
    return _mix32(_mix32(keys[:, None] ^ cols[None, :]) + keys[:, None])


def keyed_dropout_mask(keys, shape, p: float, dtype):
    """Inverted-dropout mask of ``shape`` (N, ...) from per-sample keys (N,) on the keys' device: 0 with
    probability p (to 2**-32), 1/(1-p) otherwise."""
    width = int(np.prod(shape[1:]))
    threshold = np.uint32(min(int(round(p * 2.0**32)), 2**32 - 1))
    keep = keyed_bits(keys, width) >= threshold
    return (keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))).reshape(shape)


# ----------------------------------------------------------------------------- loss on the device


def loss_sum_and_grad(scores, y, scale: float):
    """Softmax cross-entropy summed over the rows, on the scores' device, without any host read.

    scores (n, K), y (n,) integer labels on the same device, already validated (host side) ->
    (loss_sum 0-d, correct 0-d: rows whose argmax is y, dscores (n, K) = (softmax - onehot) * scale).
    With scale = 1/N, N the global batch, the ranks' dscores add up to the gradient of the mean loss."""
    xp = get_array_module(scores)
    n = scores.shape[0]
    rows = xp.arange(n)
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = xp.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    loss_sum = (xp.log(total[:, 0]) - shifted[rows, y]).sum()
    correct = (scores.argmax(axis=1) == y).sum()
    dscores = e / total
    dscores[rows, y] -= 1
    dscores *= scores.dtype.type(scale)
    return loss_sum, correct, dscores


def loss_sum(scores, y):
    """Softmax cross-entropy of scores (n, K) for labels y (n,), summed over the rows: a 0-d device array."""
    xp = get_array_module(scores)
    shifted = scores - scores.max(axis=1, keepdims=True)
    return (xp.log(xp.exp(shifted).sum(axis=1)) - shifted[xp.arange(scores.shape[0]), y]).sum()


def topk_counts(scores, y, ks=(1, 5)):
    """Device counts of rows whose label is among their k highest scores, for each k (no host read)."""
    xp = get_array_module(scores)
    true = scores[xp.arange(scores.shape[0]), y][:, None]
    higher = (scores > true).sum(axis=1)  # classes scoring strictly above the true one
    return [(higher < min(k, scores.shape[1])).sum() for k in ks]


# ----------------------------------------------------------------------------- the step


class DataParallel:
    """One synchronous data-parallel SGD step for ``model`` and ``optimizer`` over ``world`` (see the module
    docstring); in a world of one, the same step without the Allreduce."""

    STATS = ("loss_sum", "correct", "images", "stop")

    def __init__(self, model, optimizer, w: World | None = None, seed: int = 0):
        self.model, self.optimizer, self.world, self.seed = model, optimizer, w or world(), int(seed)
        self.dropouts = [m for m in model.net.layers if hasattr(m, "sample_keys")]
        self._layout = None  # (flat buffer, [(module, key, name, offset, shape)], weak refs to the bound views)

    def set_dropout_keys(self, epoch: int, positions) -> None:
        """Key the next training forward's dropout masks by the samples' positions in ``epoch``."""
        device = self.model.device
        for m in self.dropouts:
            m.sample_keys = to_device(dropout_keys(self.seed, m.name, epoch, positions), device)

    def step(self, x, y, n_global: int, check=None, stop: bool = False) -> np.ndarray:
        """Forward/backward on this rank's share (x, y on the model's device; may be empty), one Allreduce,
        ``check(stats)`` (may raise: no update then), the SGD step. Returns the summed stats on the host:
        [loss_sum, correct, images, stop] (``stop`` > 0 when any rank asked to stop)."""
        w, n = self.world, int(y.shape[0])
        xp = get_array_module(self.model.params["conv1_1.W"])
        dtype = self.model.params["conv1_1.W"].dtype
        if w.size > 1:
            flat = self._bind()
        if n:
            scores = self.model.forward(x, train=True)
            loss_sum, correct, dscores = loss_sum_and_grad(scores, y, 1.0 / n_global)
            self.model.backward(dscores)
        else:  # a share of nothing (a last batch smaller than the world): contributes zeros
            loss_sum = correct = 0
            for m in self.dropouts:
                m.sample_keys = None
        if w.size == 1:
            stats = xp.zeros(4, dtype=dtype)
            stats[0], stats[1] = loss_sum, correct
            host = to_numpy(stats)  # the step's one device->host read
            host[2], host[3] = n, float(stop)
            grads = self.model.grads
        else:
            grads = self._gather(flat, n)
            flat[-4], flat[-3], flat[-2], flat[-1] = loss_sum, correct, n, float(stop)
            host = w.allreduce_(flat)
            host = to_numpy(flat[-4:]) if host is None else host[-4:]  # one read (none more when staged)
            host = np.array(host, dtype=np.float64)
        if check is not None:
            check(host)
        self.optimizer.step(grads)
        return host

    def _bind(self):
        """The flat gradient buffer, with each layer's gradient arrays bound to views of it so the backward
        writes there directly (a layer that allocates anew instead is copied in by ``_gather``)."""
        if self._layout is None:
            params = self.model.params
            first = params["conv1_1.W"]
            xp = get_array_module(first)
            entries, offset = [], 0
            for name, p in params.items():
                layer, key = name.rsplit(".", 1)
                entries.append((self.model.net[layer], key, name, offset, tuple(p.shape)))
                offset += int(p.size)
            flat = xp.zeros(offset + 4, dtype=first.dtype)
            self._layout = (flat, entries, {})
        flat, entries, refs = self._layout
        for module, key, name, offset, shape in entries:
            bound = refs.get(name)
            if bound is None or bound() is None or module.grads.get(key) is not bound():
                view = flat[offset:offset + int(np.prod(shape))].reshape(shape)
                module.grads[key] = view
                try:
                    refs[name] = weakref.ref(view)
                except TypeError:  # an array type without weak references: copied every step instead
                    refs[name] = None
                del view
        return flat

    def _gather(self, flat, n):
        """The gradients as views of ``flat`` (copied in where a layer wrote elsewhere; zeros for an empty share)."""
        _, entries, refs = self._layout
        grads = {}
        for module, key, name, offset, shape in entries:
            view = flat[offset:offset + int(np.prod(shape))].reshape(shape)
            g = module.grads.get(key)
            if not n:
                view[...] = 0
            elif g is None:
                raise RuntimeError(f"{name}: no gradient after the backward")
            elif refs.get(name) is None or refs[name]() is not g:
                view[...] = g
            grads[name] = view
        return grads

    def stats_host(self, values) -> dict:
        return dict(zip(self.STATS, values))


__all__ = ["DataParallel", "ShardedLoader", "World", "abort_on_error", "dropout_keys", "keyed_bits",
           "keyed_dropout_mask", "launched_size", "loss_sum", "loss_sum_and_grad", "topk_counts", "world"]
