"""examples/quickstart.py runs end to end: a few training steps, the figure, jump_stream."""

from __future__ import annotations

import importlib.util
import pathlib

EXAMPLE = pathlib.Path(__file__).parent.parent / "examples" / "quickstart.py"


def test_quickstart_runs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("quickstart", EXAMPLE)
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    out = tmp_path / "used.png"
    result = quickstart.main([f"--out={out}", "--max_steps=3", "--eval_every=2",
                              "--hidden_size=4", "--batch_size=8", "--seq_length=10"])
    printed = capsys.readouterr().out
    assert out.stat().st_size > 0
    assert result["steps"] == 3
    assert len(result["unread"]) == 4 and all(0 <= n < 10 for n in result["unread"])
    assert "step     2" in printed and "jump_stream never read" in printed
