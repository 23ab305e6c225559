from pathlib import Path

from ray.tune.search import Searcher

from neuroray.run.searcher import MatrixSearcher
from neuroray.search_spaces.distributions import parse_space
from neuroray.search_spaces.experiment import Cell


def test_every_cell_gets_its_samples_round_robin_and_state_round_trips(tmp_path: Path) -> None:
    cells = [Cell("a", 0), Cell("a", 1), Cell("b", 0), Cell("b", 1)]
    s = MatrixSearcher(cells, parse_space({"lr": "loguniform(1e-4, 1e-2)"}), num_samples=2,
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


def test_conditional_parameters_are_sampled_only_when_their_condition_holds() -> None:
    space = parse_space({"encoder": "choice(conv, shallow)",
                         "n_filters": {"dist": "int(4, 16)", "when": {"encoder": "conv"}},
                         "dropout": "uniform(0.0, 0.5)"})
    s = MatrixSearcher([Cell("a", 0)], space, num_samples=24, metric="m", mode="min", sampler="random")
    seen = {"conv": 0, "shallow": 0}
    for i in range(24):
        params = s.suggest(f"t{i}")["params"]  # type: ignore[index]
        seen[params["encoder"]] += 1
        assert ("n_filters" in params) == (params["encoder"] == "conv")
        assert 0.0 <= params["dropout"] <= 0.5
        s.on_trial_complete(f"t{i}", {"m": float(i), "training_iteration": 1})
    assert seen["conv"] > 0 and seen["shallow"] > 0


def test_several_metrics_make_each_cell_study_multi_objective() -> None:
    space = parse_space({"lr": "loguniform(1e-4, 1e-2)"})
    s = MatrixSearcher([Cell("a", 0)], space, num_samples=3, metric="val/nrmse", mode="min",
                       objectives=[("val/nrmse", "min"), ("val/r", "max")])
    sub = s.subs[0]
    assert sub is not None
    for i in range(3):
        s.suggest(f"t{i}")
        s.on_trial_result(f"t{i}", {"val/nrmse": 1.0, "val/r": 0.1, "training_iteration": 1})
        # a trade-off: lower nrmse comes with lower r, so no trial dominates another
        s.on_trial_complete(f"t{i}", {"val/nrmse": 1.0 - i / 10, "val/r": 0.5 - i / 10, "training_iteration": 1})
    study = sub._ot_study
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert [t.values for t in study.trials] == [[1.0, 0.5], [0.9, 0.4], [0.8, 0.3]]
    assert len(study.best_trials) == 3  # the whole Pareto front


def test_a_trial_the_scheduler_stopped_is_pruned_in_its_study() -> None:
    """Told as PRUNED (its epochs kept as intermediate values), not COMPLETE with a half-trained value."""
    import optuna

    s = MatrixSearcher([Cell("a", 0)], parse_space({"lr": "loguniform(1e-4, 1e-2)"}), num_samples=3,
                       metric="val/nrmse", mode="min", max_t=4)
    for i, last in enumerate((4, 2)):
        s.suggest(f"t{i}")
        for epoch in range(1, last + 1):
            s.on_trial_result(f"t{i}", {"val/nrmse": 1.0 - 0.1 * epoch, "training_iteration": epoch})
        s.on_trial_complete(f"t{i}", {"val/nrmse": 1.0 - 0.1 * last, "training_iteration": last})
    s.suggest("t2")
    s.on_trial_complete("t2", None, error=True)
    sub = s.subs[0]
    assert sub is not None
    states = [t.state for t in sub._ot_study.trials]
    TS = optuna.trial.TrialState
    assert states == [TS.COMPLETE, TS.PRUNED, TS.FAIL]
    assert sub._ot_study.trials[1].intermediate_values == {1: 0.9, 2: 0.8}


def test_every_cell_study_persists_in_one_journal(tmp_path: Path) -> None:
    """optuna.load_study opens each cell's study from the run folder's journal, trials and states included."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from neuroray.run.searcher import study_name

    journal = tmp_path / "optuna.journal"
    cells = [Cell("a", 0), Cell("b", 1)]
    s = MatrixSearcher(cells, parse_space({"lr": "loguniform(1e-4, 1e-2)"}), num_samples=2, metric="val/nrmse",
                       mode="min", max_t=3, journal=str(journal))
    for i in range(4):
        s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", {"val/nrmse": 0.5, "training_iteration": 3 if i < 2 else 1})
    storage = JournalStorage(JournalFileBackend(str(journal)))
    for cell in cells:
        study = optuna.load_study(study_name=study_name(cell), storage=storage)
        assert [t.state.name for t in study.trials] == (["COMPLETE", "PRUNED"])
        assert all(1e-4 <= t.params["lr"] <= 1e-2 for t in study.trials)
    assert study_name(cells[1]) == "b-s1"
