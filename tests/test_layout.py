"""The house's layout (layout issue): rooms named for their job, imports pointing one way, only the rooms that
must import Ray do, and no module grows past 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "neuroray"
ROOMS = ("datasets", "trainables", "search_spaces", "run_folder", "run", "reports", "export", "generate", "cluster",
         "challenges")
RAY_ROOMS = ("run", "cluster")  # Ray Data/Train/Tune, and Ray jobs/autoscaler; cli.py imports them lazily
MAX_LINES = 400


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _room(py: Path) -> str:
    return py.relative_to(SRC).parts[0] if len(py.relative_to(SRC).parts) > 1 else ""


def test_the_rooms_exist_and_nothing_lies_loose() -> None:
    for room in ROOMS:
        assert (SRC / room / "__init__.py").is_file(), room
    loose = sorted(p.name for p in SRC.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "cli.py", "errors.py", "outputs.py"], loose
    assert not (SRC / "platform").exists()


def test_only_the_ray_rooms_import_ray() -> None:
    """Ray, or a module of a Ray room, is imported only inside run/ and cluster/; so reports/, export/,
    challenges/, trainables/ … work where Ray is not installed (their modules import none of it)."""
    ray_modules = tuple(f"neuroray.{r}" for r in RAY_ROOMS)
    for py in SRC.rglob("*.py"):
        room = _room(py)
        if room in RAY_ROOMS or py.name in ("cli.py", "__main__.py"):
            continue
        bad = {n for n in _imports(py) if n == "ray" or n.startswith("ray.") or n == "neuroray.run"
               or n.startswith(tuple(m + "." for m in ray_modules)) or n in ray_modules}
        assert not bad, f"{py.relative_to(SRC)} imports {bad}"


def test_imports_point_one_way() -> None:
    """datasets ← trainables ← search_spaces; architectures (models/) never import tasks; the data and model
    rooms never import the run, report or export rooms."""
    upper = ("neuroray.run", "neuroray.reports", "neuroray.export", "neuroray.cluster", "neuroray.challenges",
             "neuroray.search_spaces", "neuroray.run_folder")
    for room, forbidden in (("datasets", (*upper, "neuroray.trainables")), ("trainables", upper)):
        for py in (SRC / room).rglob("*.py"):
            bad = {n for n in _imports(py) if n.startswith(forbidden)}
            assert not bad, f"{py.relative_to(SRC)} imports {bad}"
    for py in (SRC / "trainables" / "models").rglob("*.py"):
        bad = {n for n in _imports(py) if n.startswith("neuroray.trainables.tasks")}
        assert not bad, f"{py.relative_to(SRC)} imports {bad}"


def test_modules_stay_small() -> None:
    for py in SRC.rglob("*.py"):
        n = len(py.read_text().splitlines())
        assert n <= MAX_LINES, f"{py.relative_to(SRC)}: {n} lines (at most {MAX_LINES})"


# Framework hooks whose meaning Lightning / Tune / torch / Optuna document; a docstring there would repeat it.
HOOKS = {"forward", "training_step", "validation_step", "test_step", "on_validation_epoch_end",
         "on_test_epoch_end", "configure_optimizers", "on_train_epoch_start", "on_train_epoch_end", "update",
         "compute", "setup", "on_trial_result", "on_trial_complete", "suggest", "save", "restore", "on_train_start",
         "on_validation_epoch_start", "log_trial_start", "log_trial_result", "log_trial_end", "on_experiment_end",
         "on_trial_error", "on_step_end", "on_trial_save", "on_train_batch_end"}


def test_public_functions_and_classes_say_what_they_do() -> None:
    missing: list[str] = []

    def visit(node: ast.AST, where: str, in_class: bool) -> None:
        for n in ast.iter_child_nodes(node):
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                hook = in_class and n.name in HOOKS
                if not n.name.startswith("_") and not hook and not ast.get_docstring(n):
                    missing.append(f"{where}:{n.lineno} {n.name}")
                if isinstance(n, ast.ClassDef):
                    visit(n, where, True)

    for py in SRC.rglob("*.py"):
        visit(ast.parse(py.read_text()), str(py.relative_to(SRC)), False)
    assert not missing, "no docstring: " + ", ".join(missing)
