"""The worked examples drawn in networks/gtrxl.py's docstrings are what the code does.

The ring tables of ``TransformerCore.step`` and ``window_episode_mask`` are parsed from the docstrings and
compared with a real core stepped (and unrolled) over the same eight steps; the ``>>>`` examples of
``_ring_index`` and ``rel_shift`` run as doctests.
"""

from __future__ import annotations

import doctest

import pytest
import torch

import networks.gtrxl as gtrxl
from configs.schema import NetConfig
from networks.gtrxl import RelativeMultiHeadAttention, TransformerCore, rel_shift, relative_distance

M = 4
FIRST = [1, 0, 0, 0, 0, 0, 1, 0]  # the example's episode starts: steps 0 and 6


def _rows(doc: str, header: str) -> list[list[str]]:
    """Lines of the table that starts at the line beginning with ``header``, up to the next blank line."""
    lines = [line.strip() for line in doc.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 1 :]:
        if not line:
            break
        rows.append(line)
    return rows


def _step_table() -> tuple[list[dict], dict]:
    """The rows of TransformerCore.step's table and its "after 7" row, as lists of ints ('.' -> None)."""

    def ints(field: str) -> list:
        return [None if tok == "." else int(tok) for tok in field.split()]

    rows, after = [], None
    for line in _rows(TransformerCore.step.__doc__, "t first |"):
        fields = [f.strip() for f in line.split("|")]
        if fields[0].startswith("after"):
            after = {"slots": ints(fields[1]), "pos": int(fields[2]), "valid": ints(fields[3])}
        elif fields[0][:1].isdigit():
            t, first = ints(fields[0])
            rows.append(
                {
                    "t": t,
                    "first": first,
                    "slots": ints(fields[1]),
                    "pos": int(fields[2]),
                    "valid": ints(fields[3]),
                    "key_index": ints(fields[4]),
                    "visible": ints(fields[5]),
                }
            )
    assert after is not None
    return rows, after


def _core() -> TransformerCore:
    torch.manual_seed(0)
    cfg = NetConfig(
        core="gtrxl", gate="gru", d_model=4, num_layers=2, num_heads=2, head_dim=2, mlp_dim=4, memory_length=M
    )
    return TransformerCore(cfg).double()


def _tagged_input(t: int) -> torch.Tensor:
    """[1, d] input of step t: feature 0 = t + 1, so layer 0's memory shows which step a slot holds."""
    x = torch.zeros(1, 4, dtype=torch.float64)
    x[0, 0] = t + 1
    return x


def _slots(state: dict) -> list:
    """The step each ring slot of layer 0 holds (None: never written), read from the tagged inputs."""
    tags = state["memory"][0, 0, :, 0].round().long().tolist()
    return [None if tag == 0 else tag - 1 for tag in tags]


def _record_attention_step(monkeypatch) -> list[dict]:
    """Record ``key_index`` and ``bias`` as each layer's attention receives them, in call order."""
    seen: list[dict] = []
    original = RelativeMultiHeadAttention.step

    def recording(self, h, mem_k, mem_v, k, v, bias, key_index):
        seen.append({"key_index": key_index.clone(), "bias": bias.clone()})
        return original(self, h, mem_k, mem_v, k, v, bias, key_index)

    monkeypatch.setattr(RelativeMultiHeadAttention, "step", recording)
    return seen


def test_step_table_is_what_step_does(monkeypatch) -> None:
    rows, after = _step_table()
    assert [r["t"] for r in rows] == list(range(len(FIRST)))
    assert [r["first"] for r in rows] == FIRST
    core = _core()
    seen = _record_attention_step(monkeypatch)
    state = core.initial_state(1)
    for row in rows:
        t = row["t"]
        assert _slots(state) == row["slots"], f"step {t}: slots"
        assert int(state["pos"][0]) == row["pos"], f"step {t}: pos"
        assert state["valid"][0].long().tolist() == row["valid"], f"step {t}: valid"
        n_before = len(seen)
        _, state = core.step(_tagged_input(t), torch.tensor([bool(row["first"])]), state)
        # one call per layer: keep the first layer's (all layers get the same key_index and bias)
        assert len(seen) == n_before + len(core.layers)
        call = seen[n_before]
        for head in range(core.num_heads):
            assert call["key_index"][0, head].tolist() == row["key_index"], f"step {t}: key_index"
        visible = (call["bias"][0, 0] == 0).long().tolist()
        assert visible == row["visible"], f"step {t}: visible"
        assert torch.isneginf(call["bias"][0, 0][call["bias"][0, 0] != 0]).all()
    assert _slots(state) == after["slots"]
    assert int(state["pos"][0]) == after["pos"]
    assert state["valid"][0].long().tolist() == after["valid"]


def test_unroll_table_is_what_unroll_does(monkeypatch) -> None:
    """window_episode_mask's table: unroll steps 3..7 from the state step 3 sees; same final state."""
    rows = _rows(gtrxl.window_episode_mask.__doc__, "key j")
    held = rows[0].split()[2:]
    assert held == [".", "0", "1", "2", "|", "3", "4", "5", "6", "7"]
    table = {}
    for line in rows[1:]:
        words = line.replace("|", " ").split()
        assert words[:2] == ["query", "step"]
        table[int(words[2])] = [int(w) for w in words[3:]]
    assert sorted(table) == [3, 4, 5, 6, 7]

    core = _core()
    state = core.initial_state(1)
    for t in range(3):
        _, state = core.step(_tagged_input(t), torch.tensor([bool(FIRST[t])]), state)
    start = {k: v.clone() for k, v in state.items()}
    stepped = start
    for t in range(3, 8):
        _, stepped = core.step(_tagged_input(t), torch.tensor([bool(FIRST[t])]), stepped)

    masks = []
    original = gtrxl.window_episode_mask

    def recording(valid, first):
        masks.append(original(valid, first))
        return masks[-1]

    monkeypatch.setattr(gtrxl, "window_episode_mask", recording)
    x = torch.cat([_tagged_input(t) for t in range(3, 8)])[:, None]  # [T, 1, d]
    first = torch.tensor(FIRST[3:], dtype=torch.bool)[:, None]  # [T, 1]
    _, unrolled = core.unroll(x, first, start)
    assert len(masks) == 1
    mask = masks[0][0].long()  # [T, M + T]
    for i, t in enumerate(range(3, 8)):
        assert mask[i].tolist() == table[t], f"query step {t}"

    # "after 7" of the step table, reached by both paths
    _, after = _step_table()
    for final in (unrolled, stepped):
        assert _slots(final) == after["slots"]
        assert int(final["pos"][0]) == after["pos"]
        assert final["valid"][0].long().tolist() == after["valid"]


def test_docstring_examples_run() -> None:
    """The ``>>>`` examples of networks/gtrxl.py (``_ring_index``, ``rel_shift``) print what is drawn."""
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = [test for test in finder.find(gtrxl) if test.examples]
    assert {test.name.rsplit(".", 1)[-1] for test in tests} >= {"_ring_index", "rel_shift"}
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) of networks/gtrxl.py failed"


@pytest.mark.parametrize("T", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("M", [0, 1, 2, 4])
def test_rel_shift_puts_each_distance_in_place_and_zeros_outside_the_window(T: int, M: int) -> None:
    scores = torch.randn(2, T, M + 1)
    out = rel_shift(scores, M + T)
    dist = relative_distance(T, M)
    inside = (dist >= 0) & (dist <= M)
    expected = torch.where(inside, scores.gather(-1, dist.clamp(0, M).expand(2, T, M + T)), 0.0)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
