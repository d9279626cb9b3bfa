"""The paper's tables as :mod:`skip_rnn.experiments.reproduce` runs them: each table's task,
variants and rows (one model and its λs, or a random-skip baseline), and the published numbers
that are printed beside ours."""

from __future__ import annotations

from typing import Any, NamedTuple


class Row(NamedTuple):
    """A row group of a table: one model, its λs (one population), or a random-skip baseline."""

    model: str
    costs: tuple[float, ...] = (0.0,)
    p_skip: float = 0.0

    @property
    def name(self) -> str:
        """As ``--models`` and the workdir spell it: ``lstm``, ``lstm_pskip0.5``."""
        return f"{self.model}_pskip{self.p_skip:g}" if self.p_skip else self.model


class Table(NamedTuple):
    task: str
    variants: dict[str, dict]  # name -> config.data overrides
    rows: list[Row]
    updates_kind: str  # "% updates" or "updates", as the paper prints them
    overrides: dict[str, Any]  # config values every row of the table uses
    metric: str = "accuracy"  # the column's name; "mAP (%)" prints the metric x 100


PADDING_FED = {"data.mask_padding": False}  # the paper feeds and counts padded steps
TABLES = {
    1: Table("adding", {"": {}},
             [Row("lstm"), Row("lstm", p_skip=0.2), Row("lstm", p_skip=0.5),
              Row("skip_lstm", (0.0, 1e-5)), Row("gru"), Row("gru", p_skip=0.02),
              Row("gru", p_skip=0.5), Row("skip_gru", (0.0, 1e-5))], "% updates", {}),
    2: Table("frequency", {"Ts=1ms": {"sampling_period_ms": 1.0},
                           "Ts=0.5ms": {"sampling_period_ms": 0.5}},
             [Row("lstm"), Row("skip_lstm", (0.0, 1e-5, 1e-4)), Row("gru"),
              Row("skip_gru", (0.0, 1e-5, 1e-4))], "updates", {}),
    3: Table("mnist", {"": {}},
             [Row("lstm"), Row("lstm", p_skip=0.5), Row("skip_lstm", (1e-4,)), Row("gru"),
              Row("gru", p_skip=0.5), Row("skip_gru", (1e-4,))], "updates", {}),
    4: Table("imdb", {"length 200": {"seq_length": 200}, "length 400": {"seq_length": 400}},
             [Row("lstm"), Row("skip_lstm", (0.0, 1e-5, 1e-4, 1e-3)), Row("gru"),
              Row("skip_gru", (0.0, 1e-5, 1e-4, 1e-3))], "updates", PADDING_FED),
    5: Table("ucf101", {"": {}},
             [Row("lstm"), Row("skip_lstm", (0.0, 1e-5, 1e-4)), Row("gru"),
              Row("skip_gru", (0.0, 1e-5, 1e-4))], "updates", PADDING_FED),
    6: Table("charades", {"": {}},
             [Row("lstm"), Row("lstm", p_skip=0.75), Row("lstm", p_skip=0.9),
              Row("skip_lstm", (0.0, 1e-4, 1e-3, 1e-2)), Row("gru"), Row("gru", p_skip=0.1),
              Row("gru", p_skip=0.4), Row("gru", p_skip=0.7), Row("gru", p_skip=0.9),
              Row("skip_gru", (0.0, 1e-4, 1e-3, 1e-2))], "updates", {}, "mAP (%)"),
}

# The published paper's numbers: (variant, row name, λ) -> (task result, state updates,
# inference FLOPs where the paper gives them). Its tables are numbered differently: 1 adding,
# 2 MNIST, 3 Charades (6 here; one run each, updates mean ± std over videos), 4 frequency,
# 5 IMDB, 6 UCF-101.
PAPER = {
    1: {("", "lstm", 0.0): ("Yes", "100.0% ± 0.0%", "2.46e6"),
        ("", "lstm_pskip0.2", 0.0): ("No", "80.0% ± 0.1%", "1.97e6"),
        ("", "lstm_pskip0.5", 0.0): ("No", "50.1% ± 0.1%", "1.23e6"),
        ("", "skip_lstm", 0.0): ("Yes", "81.1% ± 3.6%", "2.00e6"),
        ("", "skip_lstm", 1e-5): ("Yes", "53.9% ± 2.1%", "1.33e6"),
        ("", "gru", 0.0): ("Yes", "100.0% ± 0.0%", "1.85e6"),
        ("", "gru_pskip0.02", 0.0): ("No", "98.0% ± 0.0%", "1.81e6"),
        ("", "gru_pskip0.5", 0.0): ("No", "49.9% ± 0.6%", "9.25e5"),
        ("", "skip_gru", 0.0): ("Yes", "97.9% ± 3.2%", "1.81e6"),
        ("", "skip_gru", 1e-5): ("Yes", "50.7% ± 2.6%", "9.40e5")},
    2: {("Ts=1ms", "lstm", 0.0): ("Yes", "100.0 ± 0.00"),
        ("Ts=1ms", "skip_lstm", 0.0): ("Yes", "55.5 ± 16.9"),
        ("Ts=1ms", "skip_lstm", 1e-5): ("Yes", "47.4 ± 14.1"),
        ("Ts=1ms", "skip_lstm", 1e-4): ("Yes", "12.7 ± 0.5"),
        ("Ts=1ms", "gru", 0.0): ("Yes", "100.0 ± 0.00"),
        ("Ts=1ms", "skip_gru", 0.0): ("Yes", "73.7 ± 17.9"),
        ("Ts=1ms", "skip_gru", 1e-5): ("Yes", "51.9 ± 10.2"),
        ("Ts=1ms", "skip_gru", 1e-4): ("Yes", "23.5 ± 6.2"),
        ("Ts=0.5ms", "lstm", 0.0): ("Yes", "200.0 ± 0.00"),
        ("Ts=0.5ms", "skip_lstm", 0.0): ("Yes", "147.9 ± 27.0"),
        ("Ts=0.5ms", "skip_lstm", 1e-5): ("Yes", "50.7 ± 16.8"),
        ("Ts=0.5ms", "skip_lstm", 1e-4): ("Yes", "19.9 ± 1.5"),
        ("Ts=0.5ms", "gru", 0.0): ("Yes", "200.0 ± 0.00"),
        ("Ts=0.5ms", "skip_gru", 0.0): ("Yes", "167.0 ± 18.3"),
        ("Ts=0.5ms", "skip_gru", 1e-5): ("Yes", "54.2 ± 4.4"),
        ("Ts=0.5ms", "skip_gru", 1e-4): ("Yes", "22.5 ± 2.1")},
    3: {("", "lstm", 0.0): ("0.910 ± 0.045", "784.00 ± 0.00", "3.83e7"),
        ("", "lstm_pskip0.5", 0.0): ("0.893 ± 0.003", "392.03 ± 0.05", "1.91e7"),
        ("", "skip_lstm", 1e-4): ("0.973 ± 0.002", "379.38 ± 33.09", "1.86e7"),
        ("", "gru", 0.0): ("0.968 ± 0.013", "784.00 ± 0.00", "2.87e7"),
        ("", "gru_pskip0.5", 0.0): ("0.912 ± 0.004", "391.86 ± 0.14", "1.44e7"),
        ("", "skip_gru", 1e-4): ("0.976 ± 0.003", "392.62 ± 26.48", "1.44e7")},
    4: {("length 200", "lstm", 0.0): ("0.843 ± 0.003", "200.00 ± 0.00"),
        ("length 200", "skip_lstm", 0.0): ("0.844 ± 0.004", "196.75 ± 5.63"),
        ("length 200", "skip_lstm", 1e-5): ("0.846 ± 0.004", "197.15 ± 3.16"),
        ("length 200", "skip_lstm", 1e-4): ("0.837 ± 0.006", "164.65 ± 8.67"),
        ("length 200", "skip_lstm", 1e-3): ("0.811 ± 0.007", "73.85 ± 1.90"),
        ("length 200", "gru", 0.0): ("0.845 ± 0.006", "200.00 ± 0.00"),
        ("length 200", "skip_gru", 0.0): ("0.848 ± 0.002", "200.00 ± 0.00"),
        ("length 200", "skip_gru", 1e-5): ("0.842 ± 0.005", "199.25 ± 1.30"),
        ("length 200", "skip_gru", 1e-4): ("0.834 ± 0.006", "180.97 ± 8.90"),
        ("length 200", "skip_gru", 1e-3): ("0.800 ± 0.007", "106.15 ± 37.92"),
        ("length 400", "lstm", 0.0): ("0.868 ± 0.004", "400.00 ± 0.00"),
        ("length 400", "skip_lstm", 0.0): ("0.866 ± 0.004", "369.70 ± 19.35"),
        ("length 400", "skip_lstm", 1e-5): ("0.865 ± 0.001", "380.62 ± 18.20"),
        ("length 400", "skip_lstm", 1e-4): ("0.862 ± 0.003", "186.30 ± 25.72"),
        ("length 400", "skip_lstm", 1e-3): ("0.836 ± 0.007", "84.22 ± 1.98"),
        ("length 400", "gru", 0.0): ("0.862 ± 0.003", "400.00 ± 0.00"),
        ("length 400", "skip_gru", 0.0): ("0.866 ± 0.002", "399.02 ± 1.69"),
        ("length 400", "skip_gru", 1e-5): ("0.862 ± 0.008", "398.00 ± 2.06"),
        ("length 400", "skip_gru", 1e-4): ("0.853 ± 0.011", "314.30 ± 2.82"),
        ("length 400", "skip_gru", 1e-3): ("0.814 ± 0.005", "99.12 ± 2.69")},
    5: {("", "lstm", 0.0): ("0.671", "250.0", "9.52e11"),
        ("", "skip_lstm", 0.0): ("0.749", "138.9", "5.29e11"),
        ("", "skip_lstm", 1e-5): ("0.757", "24.2", "9.21e10"),
        ("", "skip_lstm", 1e-4): ("0.790", "7.6", "2.89e10"),
        ("", "gru", 0.0): ("0.791", "250.0", "9.51e11"),
        ("", "skip_gru", 0.0): ("0.796", "124.2", "4.73e11"),
        ("", "skip_gru", 1e-5): ("0.792", "29.7", "1.13e11"),
        ("", "skip_gru", 1e-4): ("0.793", "23.7", "9.02e10")},
    6: {("", "lstm", 0.0): ("8.40", "172.9 ± 47.4", "2.65e12"),
        ("", "lstm_pskip0.75", 0.0): ("8.11", "43.3 ± 13.2", "6.63e11"),
        ("", "lstm_pskip0.9", 0.0): ("7.21", "17.2 ± 6.1", "2.65e11"),
        ("", "skip_lstm", 0.0): ("8.32", "172.9 ± 47.4", "2.65e12"),
        ("", "skip_lstm", 1e-4): ("8.61", "172.9 ± 47.4", "2.65e12"),
        ("", "skip_lstm", 1e-3): ("8.32", "41.9 ± 11.3", "6.41e11"),
        ("", "skip_lstm", 1e-2): ("7.86", "17.4 ± 4.4", "2.66e11"),
        ("", "gru", 0.0): ("8.70", "172.9 ± 47.4", "2.65e12"),
        ("", "gru_pskip0.1", 0.0): ("8.94", "155.6 ± 42.9", "2.39e12"),
        ("", "gru_pskip0.4", 0.0): ("8.81", "103.6 ± 29.3", "1.06e12"),
        ("", "gru_pskip0.7", 0.0): ("8.42", "51.9 ± 15.4", "7.95e11"),
        ("", "gru_pskip0.9", 0.0): ("7.09", "17.3 ± 6.3", "2.65e11"),
        ("", "skip_gru", 0.0): ("8.94", "159.9 ± 46.9", "2.45e12"),
        ("", "skip_gru", 1e-4): ("8.76", "100.8 ± 28.1", "1.54e12"),
        ("", "skip_gru", 1e-3): ("8.68", "54.2 ± 16.2", "8.29e11"),
        ("", "skip_gru", 1e-2): ("7.95", "18.4 ± 5.1", "2.82e11")},
}
