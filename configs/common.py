"""Settings shared by every experiment (paper §4): Adam 1e-4, batch 256, clipping 1, b_p = 1."""

from __future__ import annotations

import ml_collections


def base_config(task: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = task  # adding | frequency | mnist | imdb | ucf101 | charades
    config.seed = 0  # initialisation, data order, dropout; each λ's members: seed, seed + 1, ...

    config.model = ml_collections.ConfigDict()
    config.model.cell = "skip_lstm"  # lstm | gru | skip_lstm | skip_gru
    config.model.hidden_size = 110  # units per layer
    config.model.num_layers = 1  # stacked layers
    config.model.gate_layers = (-1,)  # layers the update gate reads (stacks, §4.5)
    config.model.update_bias = 1.0  # initial b_p: every step updates at the start
    config.model.binarize = "round"  # round | bernoulli
    config.model.max_updates = 0  # hard budget per sequence; 0: none
    config.model.gradient = "eq5"  # eq5 (Fig. 1) | paper (eqs. 2-5 as printed) | reference_code
    config.model.gru_reset_after = True  # GRU form: True cuDNN / Flax, False TF 1.x (the authors')
    config.model.gru_gate_bias = 0.0  # initial GRU r, z gate biases (the authors': 1.0)
    config.model.init = "default"  # default (LeCun / orthogonal, s0 = 0) | reference_code
    config.model.p_skip = 0.0  # lstm / gru only: skip each step with this probability (baseline)
    config.model.embedding_size = 0  # token tasks only (IMDB: 300)
    config.model.dropout = 0.0  # on the last state, before the classifier
    config.model.scan_unroll = 0  # lax.scan steps per iteration (speed only); 0: 2 on CPU, else 1
    config.model.dtype = "float32"  # float32 | bfloat16: computation and state (the gate: float32)
    config.model.param_dtype = "float32"  # float32 | bfloat16: stored parameters, Adam's state

    config.cost_per_sample = 0.0  # λ of the budget loss
    config.costs_per_sample = ()  # a population over several λ (overrides cost_per_sample)
    config.num_seeds = 1  # a population over seeds config.seed, config.seed + 1, ...
    config.same_data = False  # population members share config.seed's data stream
    config.member_sharding = False  # True: members split over devices (batch over the rest)
    config.regression_loss = "mse"  # mse | half_mse (the authors' tf.nn.l2_loss / batch)
    config.reference_code = False  # True: gradient, init, GRU form, loss as the authors' code
    config.budget_loss = "cost_per_sample"  # cost_per_sample | l1 | l2 | time_weighted
    config.target_updates = 0.0  # for the l1 / l2 budget losses

    config.learning_rate = 1e-4  # Adam (the peak, with lr_schedule="cosine")
    config.lr_schedule = "constant"  # constant (the paper) | cosine (warm-up, then to 0)
    config.warmup_steps = 0  # cosine: linear warm-up from 0 over these steps
    config.decay_steps = 0  # cosine: reaches 0 at this step (0: the last training step)
    config.b1 = 0.9  # Adam β1
    config.b2 = 0.999  # Adam β2
    config.eps = 1e-8  # Adam ε
    config.clip_norm = 1.0  # global-norm gradient clipping
    config.batch_size = 256  # training sequences per step (per member), split over devices
    config.eval_batch_size = 1000  # held-out sequences per evaluation batch

    config.num_train_steps = 0  # 0: num_epochs * steps per epoch
    config.num_epochs = 0  # datasets: training length when num_train_steps is 0
    config.max_train_seconds = 0.0  # also stop once training has run this long (0: no limit)
    config.eval_every = 500  # 0: once per epoch (datasets)
    config.checkpoint_every = 1000  # steps between saves of latest/ (resume point)
    config.log_every = 100  # steps between training-metric rows in metrics.jsonl
    config.stop_when_solved = False  # synthetic tasks: stop at the paper's "solved" rule
    config.stop_when_settled = False  # stop once every member is solved and settled (below)
    config.settle_evals = 5  # settled: over this many evaluations, the gate and rate held still
    config.settle_points = 2.0  # ... % updates moved < this many points (λ > 0: and < 100 - this)
    config.settle_delta_u = 0.02  # ... and the gate's mean Δũ moved < this (skip cells)
    config.num_figure_examples = 4  # validation sequences drawn in the figures (0: none)

    config.data = ml_collections.ConfigDict()
    return config
