"""A run's orbax checkpoints: ``latest/`` to resume, ``best/`` with each member's best model.

``latest/`` holds ``{"state": TrainState, "best_params": ...}`` and ``best/`` holds
``{"params": ...}``, each member's parameters at its best validation step; both carry the
run's bookkeeping (``meta``, JSON). orbax writes atomically (a temporary directory renamed when
complete), so a kill during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import collections
import os

import jax
import orbax.checkpoint as ocp

from skip_rnn.configuration import ConfigError


class Checkpoints:
    """The ``latest/`` and ``best/`` checkpoint managers of a workdir."""

    def __init__(self, workdir: str):
        self.latest, self.best = (ocp.CheckpointManager(
            os.path.join(workdir, name), options=_options(name),
            item_handlers={"tree": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()})
            for name in ("latest", "best"))

    def save(self, manager: ocp.CheckpointManager, step: int, tree: dict, meta: dict) -> None:
        if step in manager.all_steps():  # a resumed run replaying steps a kill cut short
            manager.wait_until_finished()
            manager.delete(step)
        manager.save(step, args=ocp.args.Composite(
            tree=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)), force=True)

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

    def restore(self, manager: ocp.CheckpointManager, like: dict) -> tuple[dict, dict] | None:
        """The newest ``(tree, meta)`` of ``manager`` shaped like ``like``, or ``None``."""
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
        return restored.tree, restored.meta

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
