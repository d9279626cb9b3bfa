"""One module per task of the paper's §4; each ``load(config)`` returns a :class:`TaskData`."""

from skip_rnn.experiments.data.base import Batch, TaskData, load

__all__ = ["Batch", "TaskData", "load"]
