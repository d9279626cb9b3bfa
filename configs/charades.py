r"""Charades temporal action localization (§4.3): 2 x 256 units, the gate reads the top layer,
element-wise binary cross-entropy at every frame.

    python train.py --config=configs/charades.py --config.data.dir=/path/to/charades \
        --workdir=workdirs/charades

Paper, Table 3 (mAP on 100 equally spaced frames per video of Charades_v1_test.csv, which the
paper calls validation): Skip GRU λ=1e-4 8.76 with 100.8 ± 28.1 of 172.9 ± 47.4 frames; GRU
p_skip=0.4 8.81 with 103.6; Skip LSTM λ=1e-2 7.86 with 17.4; LSTM 8.40, GRU 8.70 (every frame).
Data: the official CSVs and fc7 RGB feature archive, layout in
skip_rnn/experiments/data/charades.py.
The paper gives no number of epochs for Charades; num_epochs below is ours.
"""

from configs.common import base_config


def get_config():
    config = base_config("charades")
    config.model.cell = "skip_gru"  # GRUs beat LSTMs on this task (§4.3)
    config.cost_per_sample = 1e-4  # Table 3: 0, 1e-4, 1e-3, 1e-2
    config.model.hidden_size = 256  # §4.3: two stacked layers of 256 units
    config.model.num_layers = 2
    config.model.gate_layers = (-1,)  # the gate reads the top layer (§4.3)
    config.num_epochs = 100  # not in the paper: ours
    config.eval_every = 0  # once per epoch
    config.eval_batch_size = 256  # [256, 480, 4096] float32: 2 GB per batch
    config.data.dir = ""  # official CSVs, Charades_v1_features_rgb/ (docs/experiments.md)
    config.data.cache_dir = ""  # "": <data.dir>/Charades_v1_features_rgb_npy
    config.data.split_seed = 0  # which training videos are held out for validation
    config.data.validation_fraction = 0.05  # of Charades_v1_train.csv's videos
    # 80 s at 6 fps: every test video (the longest, 72.0 s, has 433 frames); crops 21 of the
    # 7,985 training videos.
    config.data.seq_length = 480  # frames at 6 fps: longer videos are cropped
    config.data.num_eval_frames = 100  # the paper's protocol (the official one: 25)
    config.data.mask_padding = True  # updates counted per video, as Table 3's 172.9 ± 47.4
    # VGG-16 up to fc7, 15.3e9 as He et al. (2016) count it, per used frame. Table 3's FLOPs
    # = updates x (CNN + RNN): LSTM 172.9 x (15.3e9 + 4,980,736) = 2.646e12 (paper 2.65e12);
    # Skip GRU λ=1e-4 100.8 x (15.3e9 + 3,735,808) = 1.542e12 (1.54e12); Skip LSTM λ=1e-2
    # 17.4 x (15.3e9 + 4,980,992) = 2.663e11 (2.66e11); 11 of the 15 rows to 3 digits.
    config.data.encoder_flops_per_frame = 15.3e9  # VGG-16 to fc7, per used frame
    return config
