r"""Sequential MNIST (§4.3): 784 pixels, one per step.

    python train.py --config=configs/mnist.py --config.data.dir=../shared/data/mnist \
        --workdir=workdirs/mnist

Paper, Table 3 (600 epochs, 4 runs, test set): Skip LSTM λ=1e-4 accuracy 0.973 ± 0.002 with
379.38 ± 33.09 updates; Skip GRU λ=1e-4 0.976 ± 0.003 with 392.62 ± 26.48; LSTM 0.910 ± 0.045,
GRU 0.968 ± 0.013 (784 updates). Data: the four standard IDX files (see README).
"""

from configs.common import base_config


def get_config():
    config = base_config("mnist")
    config.cost_per_sample = 1e-4
    config.num_epochs = 600
    config.eval_every = 0  # once per epoch (55,000 // 256 = 214 steps)
    config.data.source = "idx"  # idx | tfds
    config.data.dir = ""
    config.data.download = False
    return config
