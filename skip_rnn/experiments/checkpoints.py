"""A run's orbax checkpoints: ``latest/`` to resume, ``best/`` with each member's best model.

``latest/`` holds ``{"state": TrainState, "best_params": ...}`` and ``best/`` holds
``{"params": ...}``, each member's parameters at its best validation step; both carry the
run's record (:class:`skip_rnn.experiments.records.RunRecord`, JSON), its config included, so
that a rerun with another config is refused rather than continued. Each keeps its last two
steps.

Integrity: once a save has finished (on every process), process 0 writes ``checksums.json``
into the step's directory, the SHA-256 of every file of it; a step is used only after its files
match (:func:`problem`). A corrupt or incomplete step is skipped, said in one line, for the
newest intact one; with none intact the run is refused. orbax writes atomically (a temporary
directory renamed when complete), so a kill during a save leaves the previous checkpoint
intact; a failed save (a full disk) raises :class:`SaveError`, naming the intact one.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import sys

import jax
import ml_collections
import orbax.checkpoint as ocp

from skip_rnn.experiments.configuration import ConfigError, as_json, changes_on_resume
from skip_rnn.experiments.records import RunRecord

CHECKSUMS = "checksums.json"
KEPT = 2  # a corrupt newest step leaves one to go back to


class CheckpointError(ConfigError):
    """A checkpoint directory (``latest/`` or ``best/``) holds steps but none intact."""


class SaveError(Exception):
    """A save failed (a full disk, a failed write); the message names the intact checkpoint."""


class Checkpoints:
    """The ``latest/`` and ``best/`` checkpoint managers of a workdir."""

    def __init__(self, workdir: str):
        self.latest, self.best = (ocp.CheckpointManager(
            os.path.join(workdir, name), options=_options(name),
            item_handlers={"tree": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()})
            for name in ("latest", "best"))
        self._intact: dict[str, int | None] = {}

    def save(self, manager: ocp.CheckpointManager, step: int, tree: dict, record: RunRecord
             ) -> None:
        """Saves ``step`` and, once every process has written its part, its checksums; raises
        :class:`SaveError` when any of it fails. Waiting for the save costs a small model
        little, and a step whose save has returned is intact on disk."""
        try:
            if step in manager.all_steps():  # a resumed run replaying steps a kill cut short
                manager.delete(step)
            manager.save(step, args=ocp.args.Composite(
                tree=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(record.to_json())),
                force=True)
            manager.wait_until_finished()
            if jax.process_index() == 0:
                write_checksums(step_directory(manager, step))
        except Exception as e:  # any failed write: said in one line, naming what is intact
            intact = self.last_intact()
            resume = ("No checkpoint is intact yet: free space and rerun the same command to "
                      "start." if intact is None else f"{intact} is intact: free space and rerun "
                      "the same command to resume from it.")
            raise SaveError(f"saving {step_directory(manager, step)} failed: {one_line(e)}. "
                            f"{resume}") from e
        self._intact.pop(str(manager.directory), None)  # found again if asked

    def last_intact(self) -> str | None:
        """The directory of the newest ``latest/`` step whose files match their checksums
        (read now), or ``None``."""
        step = newest_intact(self.latest)[0]
        return None if step is None else step_directory(self.latest, step)

    def intact_step(self, manager: ocp.CheckpointManager) -> int | None:
        """The newest intact step of ``manager`` (``None``: no step), found once: each newer
        step that fails verification is said in one line; with none intact, raises
        :class:`CheckpointError` before anything is overwritten."""
        key = str(manager.directory)
        if key not in self._intact:
            step, skipped = newest_intact(manager)
            name = os.path.basename(key)
            if step is None and skipped:
                raise CheckpointError(
                    f"{key} holds no intact checkpoint: {'; '.join(skipped)}. Use another "
                    f"--workdir, or move {key} aside to train without it.")
            use = "resuming from" if manager is self.latest else "using"
            for line in skipped if jax.process_index() == 0 else ():
                print(f"{line}; {use} {name}/{step}", file=sys.stderr, flush=True)
            self._intact[key] = step
        return self._intact[key]

    def resume(self, config: ml_collections.ConfigDict, like: dict
               ) -> tuple[dict, RunRecord] | None:
        """The newest intact ``latest/`` checkpoint ``(tree, record)`` shaped like ``like``
        (``{"state", "best_params"}``), its record taking ``config``; ``None`` for a new run.
        Refuses (:meth:`check`) a workdir made with another config or holding another model."""
        self.check(config, like["best_params"])
        restored = self.restore(self.latest, like)
        if restored is not None:
            restored[1].config = as_json(config)  # e.g. a longer num_train_steps
        return restored

    def check(self, config: ml_collections.ConfigDict, like_params) -> None:
        """Refuses, before orbax reads any array, a workdir whose checkpoints were made with a
        config that differs from ``config`` in more than the keys a resume may change
        (:meth:`check_config`), or that hold another model (:meth:`check_model`)."""
        self.check_config(config)
        self.check_model(like_params)

    def check_config(self, config: ml_collections.ConfigDict) -> None:
        """Refuses a workdir whose checkpoints were made with a config that differs from
        ``config`` in more than the keys a resume may change
        (:data:`skip_rnn.experiments.configuration.RESUMABLE`); reads the run records only."""
        for manager in (self.latest, self.best):
            saved = self.record(manager)
            if saved is None:
                continue
            changes = changes_on_resume(saved.config, config)
            if changes:
                raise ConfigError(
                    f"{os.path.dirname(manager.directory)} holds a run made with another config "
                    f"({'; '.join(changes)}): use another --workdir, or this run's config to "
                    "resume it.")

    def record(self, manager: ocp.CheckpointManager) -> RunRecord | None:
        """The run record of ``manager``'s newest intact checkpoint (no array read), or
        ``None``."""
        step = self.intact_step(manager)
        if step is None:
            return None
        saved = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return RunRecord.from_json(saved.meta, str(manager.directory))

    def check_model(self, like_params) -> None:
        """Refuses a workdir whose checkpoints (``latest/`` or ``best/``) hold another model:
        checked on the saved shapes, before orbax reads anything (it fails untidily)."""
        expected = collections.Counter(tuple(a.shape) for a in jax.tree.leaves(like_params))
        for manager in (self.latest, self.best):
            step = self.intact_step(manager)
            if step is None:
                continue
            saved = manager.item_metadata(step)["tree"].tree
            params = saved["best_params"] if "best_params" in saved else saved["params"]
            shapes = collections.Counter(tuple(a.shape) for a in jax.tree.leaves(
                params, is_leaf=lambda a: hasattr(a, "shape")))
            if shapes != expected:
                raise ConfigError(
                    f"{manager.directory} holds a checkpoint of a different model: it has "
                    f"arrays of shapes {sorted(shapes - expected)} where this config has "
                    f"{sorted(expected - shapes)}. Use a new --workdir, or the config it was "
                    "made with.")

    def restore(self, manager: ocp.CheckpointManager, like: dict
                ) -> tuple[dict, RunRecord] | None:
        """The newest intact ``(tree, record)`` of ``manager`` shaped like ``like``, or
        ``None``."""
        step = self.intact_step(manager)
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = manager.restore(step, args=ocp.args.Composite(
                tree=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        except (ValueError, KeyError) as e:
            raise ConfigError(
                f"{manager.directory} holds a checkpoint of a different model (shapes or "
                f"structure differ): {e}. Use a new --workdir, or the config it was made with."
            ) from e
        return restored.tree, RunRecord.from_json(restored.meta, str(manager.directory))

    def close(self) -> None:
        for manager in (self.latest, self.best):
            manager.wait_until_finished()
            manager.close()


def step_directory(manager: ocp.CheckpointManager, step: int) -> str:
    """The directory of ``step``, e.g. ``<workdir>/latest/40``."""
    return os.path.join(manager.directory, str(step))


def newest_intact(manager: ocp.CheckpointManager) -> tuple[int | None, list[str]]:
    """``manager``'s newest step whose files match their checksums (or ``None``), and what is
    wrong with each newer one (``"latest/40 is corrupt (checksum of tree/_sharding)"``)."""
    skipped = []
    for step in sorted(manager.all_steps(), reverse=True):
        wrong = problem(step_directory(manager, step))
        if wrong is None:
            return step, skipped
        skipped.append(f"{os.path.basename(manager.directory)}/{step} is {wrong}")
    return None, skipped


def write_checksums(directory: str) -> None:
    """Writes ``directory/checksums.json``: the SHA-256 of each of its files (paths relative
    to it), atomically (a kill leaves none, not half of one)."""
    path = os.path.join(directory, CHECKSUMS)
    with open(path + ".tmp", "w") as f:
        json.dump({"sha256": {name: _sha256(directory, name) for name in _files(directory)}},
                  f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def problem(directory: str) -> str | None:
    """What is wrong with the checkpoint in ``directory`` (``"corrupt (checksum of
    tree/_sharding)"``), or ``None`` when every file listed in its checksums matches."""
    try:
        with open(os.path.join(directory, CHECKSUMS)) as f:
            expected = dict(json.load(f)["sha256"])
    except FileNotFoundError:
        return (f"incomplete (no {CHECKSUMS}: its save was cut short, or an earlier version of "
                "skip-rnn wrote it)")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"corrupt ({CHECKSUMS} cannot be read: {one_line(e)})"
    for name, digest in expected.items():
        if not os.path.isfile(os.path.join(directory, name)):
            return f"corrupt ({name} is missing)"
        if _sha256(directory, name) != digest:
            return f"corrupt (checksum of {name})"
    return None


def one_line(error: BaseException) -> str:
    """``error``'s message on one line (orbax's and TensorStore's span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def _files(directory: str) -> list[str]:
    """Every file under ``directory`` but the checksums, relative to it, sorted."""
    names = (os.path.relpath(os.path.join(root, name), directory)
             for root, _, files in os.walk(directory) for name in files)
    return sorted(n for n in names if n not in (CHECKSUMS, CHECKSUMS + ".tmp"))


def _sha256(directory: str, name: str) -> str:
    with open(os.path.join(directory, name), "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _options(name: str) -> ocp.CheckpointManagerOptions:
    """Two checkpoints kept; temporary directories of saves cut short removed on start.
    Several processes save collectively: each writes its own shards, process 0 the JSON and
    the metadata; the barriers of ``latest/`` and ``best/`` carry their own names, as both save
    at the same step (an evaluation step that is also a checkpoint)."""
    return ocp.CheckpointManagerOptions(
        max_to_keep=KEPT, create=True, cleanup_tmp_directories=True,
        multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name))
