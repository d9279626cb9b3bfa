"""Trains a Skip RNN on one of the paper's tasks.

    python train.py --config=configs/adding.py --workdir=workdirs/adding \
        [--config.model.cell=skip_gru --config.cost_per_sample=1e-4 ...]
"""

from absl import app, flags, logging
from ml_collections import config_flags

from skip_rnn import trainer

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/adding.py", "Experiment configuration.",
                                lock_config=True)
flags.DEFINE_string("workdir", "workdirs/default", "Checkpoints, metrics and figures go here.")
flags.DEFINE_bool("figures_only", False, "Only redraw the figures from the workdir's best "
                  "checkpoint (e.g. of a run stopped early), then exit.")
flags.DEFINE_integer("member", 0, "With --figures_only: which population member to draw.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if FLAGS.figures_only:
        for path in trainer.redraw_figures(FLAGS.config, FLAGS.workdir, FLAGS.member):
            print(path)
    else:
        trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
