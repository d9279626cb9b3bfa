"""Skip RNN (Campos et al., ICLR 2018) in JAX: composable skip cells as pure functions.

>>> import skip_rnn as sr
>>> cell = sr.skip(sr.lstm(110))

The library: ``import skip_rnn`` loads JAX and nothing of the paper's harness
(:mod:`skip_rnn.experiments`: trainer, data, checkpoints, figures), nor Flax until
:func:`from_linen` or :mod:`skip_rnn.linen` / :mod:`skip_rnn.nnx` is used.
"""

from skip_rnn._src.base import (
    Cell,
    GateInputFn,
    InitFn,
    InitialStateFn,
    Output,
    OutputFn,
    SkipCell,
    StepFn,
)
from skip_rnn._src.budget import (
    budget_loss,
    l1_budget_loss,
    l2_budget_loss,
    rising_costs,
    time_weighted_budget_loss,
)
from skip_rnn._src.cells import LSTMState, gru, lstm, stack
from skip_rnn._src.flops import flops_per_update
from skip_rnn._src.inference import JumpInfo, JumpStream, jump_stream, jump_unroll
from skip_rnn._src.random_skip import random_skip
from skip_rnn._src.skip import SkipState, skip, skips_after_update, straight_through
from skip_rnn._src.unroll import mask_padding, unroll, zero_padding
from skip_rnn._src.version import __version__ as __version__  # pyproject.toml's


def __getattr__(name: str):
    # Flax, and with it absl, load on the first use of sr.from_linen, not with the library.
    if name == "from_linen":
        from skip_rnn.linen import from_linen

        globals()[name] = from_linen
        return from_linen
    raise AttributeError(f"module 'skip_rnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

__all__ = [
    "Cell",
    "GateInputFn",
    "InitFn",
    "InitialStateFn",
    "JumpInfo",
    "JumpStream",
    "LSTMState",
    "Output",
    "OutputFn",
    "SkipCell",
    "SkipState",
    "StepFn",
    "budget_loss",
    "flops_per_update",
    "from_linen",
    "gru",
    "jump_stream",
    "jump_unroll",
    "l1_budget_loss",
    "l2_budget_loss",
    "lstm",
    "mask_padding",
    "random_skip",
    "rising_costs",
    "skip",
    "skips_after_update",
    "stack",
    "straight_through",
    "time_weighted_budget_loss",
    "unroll",
    "zero_padding",
]
