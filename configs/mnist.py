r"""Sequential MNIST (§4.3): 784 pixels, one per step.

    python train.py --config=configs/mnist.py --workdir=workdirs/mnist

The first run downloads the four standard IDX files (11 MB) into ``~/.cache/skip_rnn/mnist``
(``$XDG_CACHE_HOME`` honoured) and checks their published SHA-256; offline, put the files
there by hand or point ``--config.data.dir`` at a folder holding them.

Paper, Table 3 (600 epochs, 4 runs, test set): Skip LSTM λ=1e-4 accuracy 0.973 ± 0.002 with
379.38 ± 33.09 updates; Skip GRU λ=1e-4 0.976 ± 0.003 with 392.62 ± 26.48; LSTM 0.910 ± 0.045,
GRU 0.968 ± 0.013 (784 updates).
"""

from configs.common import base_config
from skip_rnn.experiments.data import mnist
from skip_rnn.experiments.data.download import cache_dir


def get_config():
    config = base_config("mnist")
    config.cost_per_sample = 1e-4
    config.num_epochs = 600
    config.eval_every = 0  # once per epoch (55,000 // 256 = 214 steps)
    config.data.source = "idx"  # idx | tfds
    config.data.dir = cache_dir("mnist")  # the IDX files (idx) or the tfds data directory (tfds)
    config.data.download = True  # idx: fetch missing files from data.url, sha256 checked
    config.data.url = mnist.URL  # the mirror the four IDX files are downloaded from
    return config
