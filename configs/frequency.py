r"""Frequency discrimination (§4.2).

    python train.py --config=configs/frequency.py --workdir=workdirs/frequency
    python train.py --config=configs/frequency.py --config.data.sampling_period_ms=0.5 ...

Paper, Table 2 (4 runs): all models solve it (accuracy > 99%); Skip LSTM λ=1e-4 uses
12.7 ± 0.5 of 100 samples at Ts = 1 ms and 19.9 ± 1.5 of 200 at Ts = 0.5 ms (λ=1e-5: 47.4 ±
14.1 and 50.7 ± 16.8).
"""

from configs.common import base_config


def get_config():
    config = base_config("frequency")
    config.cost_per_sample = 1e-4
    config.num_train_steps = 50_000
    config.data.duration_ms = 100.0  # signal length; T = duration / sampling period
    config.data.sampling_period_ms = 1.0  # Ts: 1 (length 100) or 0.5 (length 200)
    config.data.num_eval = 10_000  # validation and test sequences each
    return config
