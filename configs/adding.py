r"""Adding task (§4.1), the default job: it ends once the Skip LSTM has solved the task and its
skipping has settled (``stop_when_settled``), or at 30,000 steps.

    .venv/bin/python train.py --config=configs/adding.py --workdir=workdirs/adding

Paper, Table 1 (4 runs): every model solves it (MSE < 1% of the target variance); Skip LSTM
λ=1e-5 with 53.9% ± 2.1% of the updates, Skip GRU λ=1e-5 with 50.7% ± 2.6% (λ=0: 81.1% and
97.9%). Other rows: --config.model.cell=lstm|gru|skip_gru --config.cost_per_sample=0.
"""

from configs.common import base_config


def get_config():
    config = base_config("adding")
    config.cost_per_sample = 1e-5
    config.num_train_steps = 30_000  # the cap: the run ends earlier, once settled
    config.stop_when_settled = True  # solved, then skipping at a steady rate (README)
    config.data.seq_length = 50  # T: (value, marker) pairs a sequence
    config.data.num_eval = 10_000  # validation and test sequences each
    return config
