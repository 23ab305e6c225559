from pathlib import Path

from ray.tune.search import Searcher

from neuroray.platform.searcher import MatrixSearcher
from neuroray.search_spaces.distributions import parse
from neuroray.search_spaces.experiment import Cell


def test_every_cell_gets_its_samples_round_robin_and_state_round_trips(tmp_path: Path) -> None:
    cells = [Cell("a", 0), Cell("a", 1), Cell("b", 0), Cell("b", 1)]
    s = MatrixSearcher(cells, {"lr": parse("loguniform(1e-4, 1e-2)", "lr")}, num_samples=2,
                       metric="val/nrmse", mode="min")
    first = [s.suggest(f"t{i}") for i in range(4)]
    assert [(c["arm"], c["seed"]) for c in first] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]  # type: ignore[index]
    for i, c in enumerate(first):
        assert 1e-4 <= c["params"]["lr"] <= 1e-2  # type: ignore[index]
        s.on_trial_complete(f"t{i}", {"val/nrmse": 0.5 + i / 10, "training_iteration": 1})
    s.save(str(tmp_path / "state.pkl"))
    rest = [s.suggest(f"u{i}") for i in range(4)]
    assert sorted((c["arm"], c["seed"]) for c in rest) == sorted((c.arm, c.seed) for c in cells)  # type: ignore[index]
    assert s.suggest("extra") == Searcher.FINISHED
    restored = MatrixSearcher(cells, {}, 1, metric="val/nrmse", mode="min")
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.remaining == [1, 1, 1, 1] and restored.suggest("v0") is not None


def test_no_search_space_gives_one_trial_per_cell() -> None:
    s = MatrixSearcher([Cell("x", 0), Cell("y", 0)], {}, 1, metric="m", mode="max")
    assert s.suggest("a") == {"arm": "x", "seed": 0, "params": {}}
    assert s.suggest("b") == {"arm": "y", "seed": 0, "params": {}}
    assert s.suggest("c") == Searcher.FINISHED
