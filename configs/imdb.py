r"""IMDB sentiment (§4.4): 128 units, 300-d embeddings, dropout 0.2, reviews of 200/400 words.

    python train.py --config=configs/imdb.py --workdir=workdirs/imdb

The first run downloads ``aclImdb_v1.tar.gz`` (84 MB, Stanford) into ``~/.cache/skip_rnn/imdb``
(``$XDG_CACHE_HOME`` honoured), checks its published SHA-256 and unpacks it: the paper's 25,000
train reviews (15% held out for validation) and 25,000 test reviews. Offline, put the archive
(or its ``aclImdb`` folder) there by hand or point ``--config.data.dir`` at a folder holding it.

Paper, Table 4 (test set, 4 runs), length 200: LSTM 0.843 ± 0.003 (200 updates); Skip LSTM
λ=1e-4 0.837 ± 0.006 with 164.65 ± 8.67 updates; length 400: LSTM 0.868 ± 0.004, Skip LSTM
λ=1e-4 0.862 ± 0.003 with 186.30 ± 25.72. With ``--config.data.source=csv`` (a ``text,label``
file split 80/10/10), the test split is not the paper's test set: results must say so.
"""

from configs.common import base_config
from skip_rnn.experiments.data import imdb
from skip_rnn.experiments.data.download import cache_dir


def get_config():
    config = base_config("imdb")
    config.cost_per_sample = 1e-4
    config.model.hidden_size = 128
    config.model.embedding_size = 300
    config.model.dropout = 0.2
    config.num_epochs = 50
    config.eval_every = 100
    config.data.source = "aclimdb"  # aclimdb (the published archive) | csv | tfds
    config.data.dir = cache_dir("imdb")  # aclimdb: holds aclImdb/; csv: the file; tfds: data_dir
    config.data.download = True  # aclimdb: fetch a missing archive from data.url, sha256 checked
    config.data.url = imdb.URL  # where aclImdb_v1.tar.gz is downloaded from
    config.data.seq_length = 200  # 200 | 400
    config.data.mask_padding = True  # False: padding fed and counted (the paper's way)
    config.data.vocab_size = 20_000  # most frequent training words (+ padding, unknown)
    config.data.split = (0.8, 0.1, 0.1)  # csv: train / validation / test fractions
    config.data.split_seed = 0  # the held-out validation reviews (and the csv split)
    config.data.word2vec = ""  # optional word2vec binary file for the embedding init
    return config
