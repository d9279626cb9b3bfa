"""A run's orbax checkpoints: ``latest/`` to resume, ``best/`` with each member's best model.

``latest/`` holds ``{"state": TrainState, "best_params": ...}`` and ``best/`` holds
``{"params": ...}``, each member's parameters at its best validation step; both carry the
run's record (:class:`skip_rnn.experiments.records.RunRecord`, JSON), its config included, so
that a rerun with another config is refused rather than continued. orbax writes atomically (a
temporary directory renamed when complete), so a kill during a save leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import collections
import os

import jax
import ml_collections
import orbax.checkpoint as ocp

from skip_rnn.experiments.configuration import ConfigError, as_json, changes_on_resume
from skip_rnn.experiments.records import RunRecord


class Checkpoints:
    """The ``latest/`` and ``best/`` checkpoint managers of a workdir."""

    def __init__(self, workdir: str):
        self.latest, self.best = (ocp.CheckpointManager(
            os.path.join(workdir, name), options=_options(name),
            item_handlers={"tree": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()})
            for name in ("latest", "best"))

    def save(self, manager: ocp.CheckpointManager, step: int, tree: dict, record: RunRecord
             ) -> None:
        if step in manager.all_steps():  # a resumed run replaying steps a kill cut short
            manager.wait_until_finished()
            manager.delete(step)
        manager.save(step, args=ocp.args.Composite(
            tree=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(record.to_json())),
            force=True)

    def resume(self, config: ml_collections.ConfigDict, like: dict
               ) -> tuple[dict, RunRecord] | None:
        """The newest ``latest/`` checkpoint ``(tree, record)`` shaped like ``like`` (``{"state",
        "best_params"}``), its record taking ``config``; ``None`` for a new run. Refuses
        (:meth:`check`) a workdir made with another config or holding another model."""
        self.check(config, like["best_params"])
        restored = self.restore(self.latest, like)
        if restored is not None:
            restored[1].config = as_json(config)  # e.g. a longer num_train_steps
        return restored

    def check(self, config: ml_collections.ConfigDict, like_params) -> None:
        """Refuses, before orbax reads any array, a workdir whose checkpoints were made with a
        config that differs from ``config`` in more than the keys a resume may change
        (:data:`skip_rnn.experiments.configuration.RESUMABLE`), or that hold another model."""
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
        self.check_model(like_params)

    def record(self, manager: ocp.CheckpointManager) -> RunRecord | None:
        """The run record of ``manager``'s newest checkpoint (no array read), or ``None``."""
        step = manager.latest_step()
        if step is None:
            return None
        saved = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return RunRecord.from_json(saved.meta, str(manager.directory))

    def check_model(self, like_params) -> None:
        """Refuses a workdir whose checkpoints (``latest/`` or ``best/``) hold another model:
        checked on the saved shapes, before orbax reads anything (it fails untidily)."""
        expected = collections.Counter(tuple(a.shape) for a in jax.tree.leaves(like_params))
        for manager in (self.latest, self.best):
            step = manager.latest_step()
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
        """The newest ``(tree, record)`` of ``manager`` shaped like ``like``, or ``None``."""
        step = manager.latest_step()
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


def _options(name: str) -> ocp.CheckpointManagerOptions:
    """One checkpoint kept. Several processes save collectively: each writes its own shards,
    process 0 the JSON and the metadata; the barriers of ``latest/`` and ``best/`` carry their
    own names, as both save at the same step (an evaluation step that is also a checkpoint)."""
    return ocp.CheckpointManagerOptions(
        max_to_keep=1, create=True,
        multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name))
