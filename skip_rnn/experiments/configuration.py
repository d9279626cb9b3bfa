"""A run's configuration: the ``reference_code`` switch, validation, and a readable listing.

Every key is documented by the comment beside it in ``configs/common.py`` or the task's config
file; :func:`describe` prints those comments (``train.py --show_config``).
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
import types

import ml_collections
import numpy as np

from skip_rnn._src.skip import GRADIENTS
from skip_rnn.experiments import data, models

BUDGET_LOSSES = ("cost_per_sample", "l1", "l2", "time_weighted")
REGRESSION_LOSSES = ("mse", "half_mse")
# What config.reference_code=True sets: the places where the authors' TensorFlow code
# (imatge-upc/skiprnn-2017-telecombcn) differs from the paper's text.
REFERENCE_CODE = {
    "model.gradient": "reference_code",  # src/rnn_cells/skip_rnn_cells.py: cum_update_prob
    "model.init": "reference_code",  # src/rnn_cells/rnn_ops.py: Glorot [x; h], s0 ~ N(0, 1)
    "model.gru_reset_after": False,  # TF 1.x's GRUCell: reset gate before the recurrent matrix
    "model.gru_gate_bias": 1.0,  # ... its r and z biases starting at 1
    "regression_loss": "half_mse",  # src/01_adding_task.py: tf.nn.l2_loss / batch size
}
# What a resumed run may change: how long it trains, how often it reports, when it stops,
# where its data lives and how its arrays are laid out. Any other change would continue another
# experiment from this one's checkpoint.
RESUMABLE = (
    "num_train_steps", "num_epochs", "max_train_seconds", "eval_every", "log_every",
    "checkpoint_every", "stop_when_solved", "stop_when_settled", "settle_evals", "settle_points",
    "settle_delta_u", "num_figure_examples", "member_sharding", "eval_batch_size",
    "model.scan_unroll",
    "data.dir", "data.cache_dir", "data.download", "data.url",
)


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the field and the fix."""


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of ``config`` with ``reference_code=True`` spelled out (:data:`REFERENCE_CODE`)."""
    config = config.copy_and_resolve_references()
    if config.reference_code:
        for key, value in REFERENCE_CODE.items():
            assign(config, key, value)
    return config


def assign(config: ml_collections.ConfigDict, key: str, value) -> None:
    """``config.<key> = value`` for a dotted ``key``, if ``value`` has the field's type.

    The type rules of ``--config.<key>=value`` overrides (ml_collections' ``ConfigDict``), with
    ``None`` kept out: an ``int`` widens to a ``float`` field, a list becomes a tuple field's
    tuple and back; ``None`` goes only into a field that is ``None`` (the configs spell "none"
    as ``""`` or ``0``), which takes any value. ``True`` is no ``int`` and ``1`` no ``bool``.

    Raises:
      ConfigError: ``key`` is not a key of ``config`` (a close one is suggested), or ``value``
        has another type: ``config.<key>=<value> is invalid: must be <the field's type>.``
    """
    *parents, last = key.split(".")
    node = config
    for depth, part in enumerate([*parents, last]):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            known = list(node) if isinstance(node, ml_collections.ConfigDict) else []
            close = [".".join([*parents[:depth], c]) for c in difflib.get_close_matches(
                part, known, n=1)]
            hint = f" Did you mean config.{close[0]}?" if close else ""
            raise ConfigError(f"config.{key}: no such key.{hint}")
        if depth < len(parents):
            node = node[part]
    old = node[last]
    if isinstance(value, int) and not isinstance(value, bool) and type(old) is float:
        value = float(value)
    elif isinstance(value, (list, tuple)) and isinstance(old, (list, tuple)):
        value = type(old)(value)
    if old is not None and type(value) is not type(old):
        name = type(old).__name__
        raise ConfigError(f"config.{key}={value!r} is invalid: must be "
                          f"{'an' if name[0] in 'aeiou' else 'a'} {name}.")
    node[last] = value


def as_json(config: ml_collections.ConfigDict) -> dict:
    """``config`` as plain JSON values (tuples as lists): what a run saves with its checkpoints."""
    return json.loads(json.dumps(config.to_dict()))


def changes_on_resume(saved: dict, config: ml_collections.ConfigDict) -> list[str]:
    """``key: old -> new`` for every key of ``config`` that differs from the ``saved`` config of
    the run it would resume, but for :data:`RESUMABLE` keys and for keys that the saved config
    lacks (added to skip-rnn after the run started: their defaults keep earlier behaviour). With a
    cosine schedule that ends at the last step (``decay_steps=0``), the training length shapes
    the schedule: it counts too."""
    old, new = dict(_flatten(saved)), dict(_flatten(as_json(config)))
    allowed = set(RESUMABLE)
    if config.lr_schedule == "cosine" and not config.decay_steps:
        allowed -= {"num_train_steps", "num_epochs"}
    missing = "(not set)"
    return [f"{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}"
            for key in sorted(old.keys() | new.keys())
            if key not in allowed and key in old and old[key] != new.get(key, missing)]


def num_members(config: ml_collections.ConfigDict) -> int:
    """The population's size: ``num_seeds`` x the λ of ``costs_per_sample`` (at least one)."""
    return config.num_seeds * max(len(config.costs_per_sample), 1)


def mesh_shape(config: ml_collections.ConfigDict, num_devices: int) -> tuple[int, int]:
    """How ``num_devices`` split into ``(member, batch)`` axes: with ``member_sharding``, members
    over ``min(members, devices)`` devices, the rest of the devices splitting each member's
    batch; without, every device holds every member and a slice of the batch."""
    member = max(min(num_members(config), num_devices), 1) if config.member_sharding else 1
    return member, num_devices // member


def check_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Rejects nonsensical values before any data is read, naming the field."""
    members, batch_devices = num_members(config), mesh_shape(config, num_devices)[1]
    synthetic = config.task in data.base.SYNTHETIC
    skip_cell = config.model.cell.startswith("skip_")
    devices = (f"divisible by the number of devices ({num_devices})"
               if batch_devices == num_devices
               else f"divisible by the devices each member's batch is split over ({batch_devices})")
    checks = [
        ("task", config.task in data.base.TASKS, f"one of {data.base.TASKS}"),
        ("model.cell", config.model.cell in models.CELLS, f"one of {models.CELLS}"),
        ("model.binarize", config.model.binarize in ("round", "bernoulli")
         and (config.model.binarize == "round" or skip_cell),
         "round | bernoulli, and round for a plain cell (it binarizes a skip cell's gate)"),
        ("model.gradient", config.model.gradient in GRADIENTS, " | ".join(GRADIENTS)),
        ("model.init", config.model.init in models.INITS, " | ".join(models.INITS)),
        ("model.p_skip", 0 <= config.model.p_skip < 1 and (config.model.p_skip == 0
                                                            or not skip_cell),
         "in [0, 1), and 0 for skip_* cells (p_skip makes a plain cell skip at random)"),
        ("regression_loss", config.regression_loss in REGRESSION_LOSSES,
         " | ".join(REGRESSION_LOSSES)),
        ("budget_loss", config.budget_loss in BUDGET_LOSSES, f"one of {BUDGET_LOSSES}"),
        ("target_updates", config.target_updates >= 0, ">= 0"),
        ("seed", _is_integer(config.seed) and config.seed >= 0, "an integer >= 0"),
        ("cost_per_sample", config.cost_per_sample >= 0, ">= 0"),
        ("costs_per_sample", all(_is_number(c) and c >= 0 for c in config.costs_per_sample),
         "numbers, all >= 0 (empty: cost_per_sample alone)"),
        ("num_seeds", config.num_seeds > 0, "> 0"),
        ("learning_rate", config.learning_rate > 0, "> 0"),
        ("lr_schedule", config.lr_schedule in ("constant", "cosine"), "constant | cosine"),
        ("warmup_steps", config.warmup_steps >= 0, ">= 0"),
        ("decay_steps", config.decay_steps >= 0, ">= 0 (0: the last training step)"),
        ("clip_norm", config.clip_norm > 0, "> 0"),
        ("model.hidden_size", config.model.hidden_size > 0, "> 0"),
        ("model.num_layers", config.model.num_layers > 0, "> 0"),
        ("model.gate_layers", len(config.model.gate_layers) > 0 and all(
            _is_integer(i) and -config.model.num_layers <= i < config.model.num_layers
            for i in config.model.gate_layers),
         f"layer indices in [-{config.model.num_layers}, {config.model.num_layers}) "
         "(model.num_layers)"),
        ("model.max_updates", config.model.max_updates >= 0
         and (config.model.max_updates == 0 or skip_cell),
         ">= 0 (0: no hard budget), and 0 for a plain cell (the budget caps a skip cell's gate)"),
        ("model.dropout", 0 <= config.model.dropout < 1, "in [0, 1)"),
        ("model.scan_unroll", config.model.scan_unroll >= 0, ">= 0 (0: per backend)"),
        ("model.dtype", config.model.dtype in models.DTYPES, " | ".join(models.DTYPES)),
        ("model.param_dtype", config.model.param_dtype in models.DTYPES,
         " | ".join(models.DTYPES)),
        ("member_sharding", not config.member_sharding
         or (members > 0 and max(members, num_devices) % min(members, num_devices) == 0),
         f"False, or used with a population whose {members} members (num_seeds x "
         f"costs_per_sample) split evenly over the {num_devices} devices: a multiple or a "
         f"divisor of {num_devices}"),
        ("batch_size", config.batch_size > 0 and config.batch_size % batch_devices == 0,
         f"> 0 and {devices}"),
        ("eval_batch_size", config.eval_batch_size > 0
         and config.eval_batch_size % batch_devices == 0, f"> 0 and {devices}"),
        ("num_train_steps", config.num_train_steps > 0
         or (config.num_epochs > 0 and not synthetic),
         "> 0, or num_epochs > 0 with a dataset (the synthetic tasks have no epochs)"),
        ("max_train_seconds", config.max_train_seconds >= 0, ">= 0 (0: no limit)"),
        ("eval_every", config.eval_every > 0 or (config.eval_every == 0 and not synthetic),
         "> 0, or 0 for once per epoch of a dataset (the synthetic tasks have no epochs)"),
        ("data.mask_padding", config.task != "charades" or config.data.mask_padding,
         "True for a per-frame task (its padding would be scored as frames without actions)"),
        ("checkpoint_every", config.checkpoint_every > 0, "> 0"),
        ("log_every", config.log_every > 0, "> 0"),
        ("settle_evals", config.settle_evals > 1, "> 1"),
        ("settle_points", config.settle_points > 0, "> 0"),
        ("settle_delta_u", config.settle_delta_u > 0, "> 0"),
    ]
    for key in ("seq_length", "num_eval", "duration_ms", "sampling_period_ms", "vocab_size"):
        if key in config.data:
            checks.append((f"data.{key}", config.data[key] > 0, "> 0"))
    if config.task == "adding":
        checks.append(("data.seq_length", config.data.seq_length >= 2,
                       ">= 2 (the adding task marks two different steps)"))
    if "split" in config.data and isinstance(config.data.split, tuple):  # held-out fractions
        checks.append(("data.split", len(config.data.split) == 3
                       and all(f > 0 for f in config.data.split)
                       and abs(sum(config.data.split) - 1) < 1e-6,
                       "three fractions > 0 (train, validation, test) summing to 1"))
    if "validation_fraction" in config.data:
        checks.append(("data.validation_fraction", 0 < config.data.validation_fraction < 1,
                       "in (0, 1): a validation set that is neither empty nor everything"))
    if "encoder_flops_per_frame" in config.data:
        checks.append(("data.encoder_flops_per_frame", config.data.encoder_flops_per_frame >= 0,
                       ">= 0"))
    for field, ok, allowed in checks:
        if not ok:
            value = config
            for part in field.split("."):
                value = value[part]
            raise ConfigError(f"config.{field}={value!r} is invalid: must be {allowed}.")


def describe(config: ml_collections.ConfigDict, module: types.ModuleType) -> str:
    """Every key of ``config`` with its value and the comment that documents it in the config
    files: ``module`` (the config file) first, then the config modules it builds on."""
    comments = {}
    for source in _config_sources(module):
        for key, comment in re.findall(r"config\.([\w.]+) = [^#\n]*#\s*(.*)",
                                       inspect.getsource(source)):
            comments.setdefault(key, comment)
    lines = []
    for key, value in _flatten(config.to_dict()):
        help_text = comments.get(key, "")
        lines.append(f"  {key} = {value!r}" + (f"    # {help_text}" if help_text else ""))
    return "\n".join(lines)


def _config_sources(module: types.ModuleType) -> list[types.ModuleType]:
    """``module`` and, depth first, the ``configs`` modules it uses (``configs.common``)."""
    sources = [module]
    for value in vars(module).values():
        owner = value if inspect.ismodule(value) else inspect.getmodule(value)
        if (owner is not None and owner.__name__.split(".")[0] == "configs"
                and owner not in sources):
            sources += [m for m in _config_sources(owner) if m not in sources]
    return sources


def _flatten(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    items = []
    for key, value in tree.items():
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _is_integer(value) -> bool:
    """An integer (Python's or NumPy's), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """An int or a float, not a bool (nor a string a malformed tuple flag left)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
