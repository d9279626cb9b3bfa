"""Trains a Skip RNN on one of the paper's tasks.

    python train.py --config=configs/adding.py [--workdir=workdirs/adding] \
        [--config.model.cell=skip_gru --config.cost_per_sample=1e-4 ...]

``--show_config`` lists every config key with its value and meaning. Errors in what was asked
(a bad value, an unknown key, missing data, an unusable workdir or one whose checkpoints are
all corrupt) print one line and exit 2; a run stopped by a non-finite loss or a failed save (a
full disk) prints one line and exits 1. ``--verbose`` shows their tracebacks too. Ctrl-C (or
SIGTERM) saves and exits 130 (143).

A multi-process run (``jax.distributed``; README "Scaling out") runs the same command in every
process, with ``--coordinator_address=HOST:PORT --num_processes=N --process_id=I``, or with
``--distributed`` where JAX finds these itself (TPU pods, SLURM, Open MPI).
"""

import os
import re
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from skip_rnn.experiments import allocator, configuration, trainer
from skip_rnn.experiments.data.sources import DataError

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join("configs", "adding.py")
FLAGS = flags.FLAGS
# No default here: ml_collections would load it, and apply the overrides, while this file is
# imported; parse_flags adds --config=configs/adding.py when it is not given.
config_flags.DEFINE_config_file(
    "config", None,
    "Experiment configuration, a file of configs/ (adding, frequency, mnist, mnist_fast, imdb, "
    "ucf101, charades; default: configs/adding.py); override any key, e.g. "
    "--config.model.cell=skip_gru --config.cost_per_sample=1e-4 --config.num_seeds=4 "
    "--config.learning_rate=1e-3 --config.max_train_seconds=120. --show_config lists them "
    "all.", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics and figures go here (default: "
                    "workdirs/<config name>, e.g. workdirs/mnist).")
flags.DEFINE_bool("show_config", False, "Print every config key, its value and meaning; exit.")
flags.DEFINE_bool("figures_only", False, "Only redraw the figures from the workdir's best "
                  "checkpoint (e.g. of a run stopped early), then exit.")
flags.DEFINE_integer("member", None, "With --figures_only: which population member to draw "
                     "(default: the one training draws, the first seed of the largest λ).")
flags.DEFINE_bool("verbose", False, "Show the tracebacks of errors said in one line, and "
                  "orbax's warnings.")
flags.DEFINE_string("coordinator_address", None, "Multi-process run: HOST:PORT of process 0, "
                    "the same in every process.")
flags.DEFINE_integer("num_processes", None, "Multi-process run: how many processes.")
flags.DEFINE_integer("process_id", None, "Multi-process run: this one, 0 .. num_processes - 1.")
flags.DEFINE_bool("distributed", False, "Multi-process run with the settings that "
                  "jax.distributed.initialize() detects (TPU pods, SLURM, Open MPI); implied by "
                  "the three flags above.")
MULTI_PROCESS_FLAGS = ("coordinator_address", "num_processes", "process_id")

USER_ERRORS = (configuration.ConfigError, DataError, trainer.WorkdirError, FileNotFoundError)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with errors in the command line said in one line (exit 2). A relative
    ``--config`` path is also looked up from the repository, so any directory works."""
    if not any(re.match(r"-{1,2}config(=|$)", arg) for arg in argv):
        argv = [argv[0], f"--config={DEFAULT_CONFIG}", *argv[1:]]
    argv = [_config_path(arg) for arg in argv]
    try:
        rest = FLAGS(argv)
        FLAGS.config.task  # noqa: B018 - loads the file and applies the overrides now
    except flags.Error as e:
        _fail(str(e).replace("flag --config.", "--config."))
    except (AttributeError, KeyError) as e:  # an unknown config key
        if "has no attribute 'get_config'" in _unwrap(e):
            given = next(arg for arg in argv if re.match(r"-{1,2}config(=|$)", arg))
            _fail(f"{given} is not a task config (it has no get_config()). The configs are "
                  f"{', '.join(_task_configs())} in {os.path.join(ROOT, 'configs')}.")
        key, _, hint = _unwrap(e).partition(" Did you mean")
        hint = f" Did you mean{hint}" if hint else ""
        _fail(f"unknown config key {key}.{hint} (--show_config lists the keys)")
    except OSError as e:
        _fail(f"cannot load the config file: {_unwrap(e)}")
    return rest


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    # orbax logs every save at INFO, and at ERROR a corrupt checkpoint that is then skipped
    logging.set_verbosity(logging.WARNING if FLAGS.verbose else logging.FATAL)
    config_file = config_flags.get_config_filename(FLAGS["config"])
    if FLAGS.show_config:
        print(f"{config_file}:")
        print(configuration.describe(FLAGS.config, _config_module()))
        return
    name = os.path.splitext(os.path.basename(config_file))[0]
    workdir = FLAGS.workdir or os.path.join("workdirs", name)
    join_processes()
    try:
        if FLAGS.figures_only:
            for path in trainer.redraw_figures(FLAGS.config, workdir, FLAGS.member):
                print(path)
        else:
            trainer.train_and_evaluate(FLAGS.config, workdir)
    except trainer.Interrupted as e:
        print(f"\n{e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except USER_ERRORS as e:
        if FLAGS.verbose:
            raise
        _fail(str(e))
    except trainer.RUN_ERRORS as e:
        if FLAGS.verbose:
            raise
        trainer.exit_on_run_error("train.py", e)


def join_processes() -> None:
    """Starts JAX's multi-process runtime when a multi-process run is asked for (before JAX
    touches a device)."""
    given = {name: FLAGS[name].value for name in MULTI_PROCESS_FLAGS}
    if not (FLAGS.distributed or any(v is not None for v in given.values())):
        return
    if FLAGS.figures_only:
        _fail("--figures_only runs as one process: leave out --distributed and "
              f"--{', --'.join(MULTI_PROCESS_FLAGS)}.")
    try:
        jax.distributed.initialize(**given)
    except ValueError as e:
        _fail(f"cannot start the multi-process run: {e}")


def _config_path(arg: str) -> str:
    """``--config=configs/x.py`` from another directory: the repository's file."""
    if not arg.startswith("--config="):
        return arg
    path = arg.split("=", 1)[1]
    if os.path.exists(path):
        return arg
    if os.path.exists(os.path.join(ROOT, path)):
        return f"--config={os.path.join(ROOT, path)}"
    _fail(f"--config={path}: no such file. The configs are {', '.join(_task_configs())} in "
          f"{os.path.join(ROOT, 'configs')}.")


def _task_configs() -> list[str]:
    """The files of configs/ that define a task's ``get_config`` (not configs/common.py)."""
    folder = os.path.join(ROOT, "configs")
    names = sorted(f for f in os.listdir(folder) if f.endswith(".py") and f[0].isalpha())
    return [f for f in names if "def get_config(" in open(os.path.join(folder, f)).read()]


def _config_module():
    """The module of the ``--config`` file (its comments document the keys)."""
    import importlib.util

    sys.path.insert(0, ROOT)  # configs/ files import configs.common
    path = os.path.abspath(config_flags.get_config_filename(FLAGS["config"]))
    name = os.path.splitext(os.path.basename(path))[0]
    if os.path.dirname(path) == os.path.join(ROOT, "configs"):
        return importlib.import_module(f"configs.{name}")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unwrap(error: BaseException) -> str:
    """The innermost message of a chained or wrapped exception, on one line."""
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    message = error.args[0] if error.args else str(error)
    return " ".join(str(message).replace("\\n", " ").split())


def _fail(message: str, exit_code: int = 2) -> None:
    print(f"train.py: {message}", file=sys.stderr)
    sys.exit(exit_code)


if __name__ == "__main__":
    allocator.reexec()  # under a caching allocator on a Linux CPU
    app.run(main, flags_parser=parse_flags)
