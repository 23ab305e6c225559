"""A run's report from its folder alone: report.csv, report.md, report.html and the PNG figures beside them.

Numbers are formatted once (``fmt`` in source.py) and the same strings go into report.csv and the
HTML/Markdown tables, so the three always agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neuroray.challenges.eeg2025.score import add_challenge_scores, combine_challenges
from neuroray.outputs import atomic_write
from neuroray.reports import html as H
from neuroray.reports import plots as report_plots
from neuroray.reports.importance import param_importances
from neuroray.reports.selection import best_index
from neuroray.reports.source import CONFUSION, NA, Source, fmt, markdown_table, resolve_baseline
from neuroray.reports.stats import arm_stats, best_per_cell, learning_curves, metric_columns, subject_stats


def _link(path: Path, run_dir: Path) -> str:
    """A figure's link in report.md: beside it by name, or its path inside the run folder."""
    try:
        return str(path.relative_to(run_dir)) if path.parent != run_dir else path.name
    except ValueError:
        return path.name


def _display(df: pd.DataFrame) -> pd.DataFrame:
    """Display strings: the CSV's cell text, with ``NA`` where the CSV cell is empty."""
    return df.map(lambda v: fmt(v) or NA)


def summary_table(stats: pd.DataFrame, trials: pd.DataFrame, metric: str, arms: list[str],
                  baseline: str, beside: str | None = None) -> pd.DataFrame:
    """The headline metric per arm (what `neuroray run` prints): its name, units, trials, mean, std, CI, Δ with
    its CI, p and the test that gave it;
    ``beside``: the mean of that metric too (val beside test)."""
    s = stats[stats["metric"] == metric].set_index("arm")
    b = stats[stats["metric"] == beside].set_index("arm") if beside else None
    rows = [{"arm": a, "metric": metric, "n": int(s.at[a, "n"]), "trials": int((trials["arm"] == a).sum()),
             "mean": s.at[a, "mean"], "std": s.at[a, "std"], "ci_low": s.at[a, "ci_low"],
             "ci_high": s.at[a, "ci_high"], f"delta_vs_{baseline}": s.at[a, "delta"],
             "delta_ci_low": s.at[a, "delta_ci_low"], "delta_ci_high": s.at[a, "delta_ci_high"],
             "p_value": s.at[a, "p_value"], "test": s.at[a, "test"],
             **({f"{beside} mean": b.at[a, "mean"]} if b is not None else {})}
            for a in arms]
    return pd.DataFrame(rows)


def per_target_table(stats: pd.DataFrame, arms: list[str]) -> pd.DataFrame:
    """A multi-target run's per-target scores: one row per (arm, target), a column per metric and split
    (``test/nrmse``, ``val/r``, ...: the mean over units with its 95 % interval); empty for a single target."""
    parts = stats["metric"].str.split("/", n=2, expand=True) if len(stats) else pd.DataFrame()
    if parts.shape[1] < 3 or parts[2].isna().all():
        return pd.DataFrame()
    per = stats.assign(split=parts[0], name=parts[1], target=parts[2]).dropna(subset=["target"])
    targets = list(dict.fromkeys(per["target"]))
    columns = sorted({f"{a}/{b}" for a, b in zip(per["split"], per["name"], strict=True)},
                     key=lambda c: (not c.startswith("test/"), c))
    rows = []
    for arm in arms:
        for t in targets:
            row: dict[str, object] = {"arm": arm, "target": t}
            for c in columns:
                hit = per[(per["arm"] == arm) & (per["metric"] == f"{c}/{t}")]
                if len(hit):
                    row[c] = hit["mean"].iloc[0]
                    row[f"{c} 95% CI"] = f"[{fmt(hit['ci_low'].iloc[0]) or NA}, {fmt(hit['ci_high'].iloc[0]) or NA}]"
            rows.append(row)
    return pd.DataFrame(rows)


def _arm_picks(cells: pd.DataFrame, metric: str, mode: str, arms: list[str],
               needs: str | None = None) -> dict[str, pd.Series]:
    """Per arm, its best cell pick by ``metric`` (among the picks that have a ``needs`` value, if named)."""
    if metric not in cells or (needs is not None and needs not in cells):
        return {}
    out: dict[str, pd.Series] = {}
    for arm in arms:
        picks = cells[(cells["arm"] == arm) & cells[metric].notna()]
        picks = picks[picks[needs].notna()] if needs is not None else picks
        if not picks.empty:
            out[arm] = picks.loc[best_index(picks[metric], mode)]
    return out


def _confusions(cells: pd.DataFrame, metric: str, mode: str, arms: list[str]) -> dict[str, tuple[str, list[list[int]]]]:
    """Per arm, the test-split confusion matrix of its best cell pick by ``metric`` (classifier runs only)."""
    return {arm: (str(best["trial_id"]), json.loads(str(best[CONFUSION])))
            for arm, best in _arm_picks(cells, metric, mode, arms, needs=CONFUSION).items()}


def _brain_maps(src: Source, cells: pd.DataFrame) -> list[tuple[str, Path | None, str]]:
    """Per arm, the input-vs-reconstruction maps of its best pick, where `neuroray generate` drew them."""
    out: list[tuple[str, Path | None, str]] = []
    for arm, best in _arm_picks(cells, src.metric, src.mode, src.arms).items():
        png = src.run_dir / "generate" / str(best["trial_id"]) / "reconstruct" / "reconstruct.png"
        if png.is_file():
            out.append((f"Brain maps: input vs reconstruction, arm {arm}", png,
                        f"Test studies and their reconstructions by trial `{best['trial_id']}` (arm {arm}'s best "
                        f"by `{src.metric}`), glass brains on one colour scale, voxel Pearson r and SSIM in each "
                        f"title; the NIfTI maps are beside the PNG (`neuroray generate` draws more)."))
    return out


def _figures(src: Source, cells: pd.DataFrame, stats: pd.DataFrame, baseline: str,
             out: Path) -> list[tuple[str, Path | None, str]]:
    """(title, PNG or None, note) per figure section."""
    curves_png, imp_png = out / report_plots.LEARNING_CURVES, out / report_plots.IMPORTANCE
    units_png = out / report_plots.UNITS
    for stale in (curves_png, imp_png, units_png):  # a figure this report cannot make must not survive
        stale.unlink(missing_ok=True)
    head = src.headline
    sections: list[tuple[str, Path | None, str]] = []
    if head in cells and cells[head].notna().any():
        sections.append((f"{head} per unit", report_plots.units_png(cells, stats, head, src.arms, baseline,
                                                                    units_png),
                         f"Each point is one unit (one seed{', one fold' if src.info.folds else ''}): the {head} of "
                         "its cell's chosen trial. Black: the arm's mean and 95 % interval; dashed: the baseline "
                         f"`{baseline}`'s mean."))
    curves = learning_curves(src.history, cells, src.metric)
    if curves.empty:
        sections.append(("Learning curves", None, (
            f"No learning curves: the run folder has no per-epoch history (history.parquet) of {src.metric}.")))
    else:
        png = report_plots.learning_curves_png(curves, src.metric, src.arms, curves_png)
        sections.append(("Learning curves", png, f"{src.metric} per epoch of each cell's chosen trial: mean over "
                         "units, band ± 1 std where ≥ 2 units reached that epoch (n = units in the legend)."))
    matrices = _confusions(cells, src.metric, src.mode, src.arms)
    conf_png = out / report_plots.CONFUSION_PNG
    conf_png.unlink(missing_ok=True)  # a figure this report cannot make must not survive
    if matrices:
        sections.append(("Confusion matrices (test split)", report_plots.confusion_png(matrices, conf_png),
                         "Per arm, the confusion matrix on the held-out test split of its best chosen trial by "
                         f"`{src.metric}` (rows: true class, columns: predicted; right: each row divided by its "
                         f"total). Every trial's matrix is in results.csv (`{CONFUSION}`, JSON counts)."))
    sections += _brain_maps(src, cells)
    imp, note = param_importances(src.trials, src.metric, src.mode, journal=src.run_dir / "optuna.journal")
    if imp:
        note += ": " + ", ".join(f"{k} {fmt(v)}" for k, v in imp.items()) + "."
    sections.append(("Parameter importance", report_plots.importance_png(imp, src.metric, imp_png) if imp else None,
                     note))
    return sections


def build(src: Source, out: Path, baseline: str | None = None, combine: Source | None = None) -> pd.DataFrame:
    """Write report.csv/.md/.html (+ PNGs) for ``src`` into ``out``; returns the headline summary (held-out
    ``test/…`` when the run scored it, else the monitored metric)."""
    out.mkdir(parents=True, exist_ok=True)
    metric, mode, arms, head = src.metric, src.mode, src.arms, src.headline
    base = resolve_baseline(baseline, arms)
    cells, scored = add_challenge_scores(best_per_cell(src.trials, metric, mode))  # chosen on val, always
    first = [head, metric] if head != metric else [metric]
    metrics = first + [m for m in metric_columns(src.trials) if m not in first] + scored
    stats = arm_stats(cells, arms, base, metrics, ratio=src.info.fold_ratio if src.info.folds else 0.0)
    eeg_lines = [f"EEG2025 score from this run's metric pairs: {', '.join(f'`{s}`' for s in scored)}."] if scored \
        else []
    if combine is not None:
        extra, lines = combine_challenges(src, combine, base)
        stats = pd.concat([stats, extra], ignore_index=True) if len(extra) else stats
        eeg_lines += lines
    elif not scored and "nrmse" in metric:
        eeg_lines.append("Not computed: needs challenge 1 and 2 NRMSE — `neuroray report RUN_C1 --combine RUN_C2`, "
                         "or metric pairs such as val/nrmse_c1 + val/nrmse_c2 in one run.")
    summary = summary_table(stats, src.trials, head, arms, base, beside=metric if head != metric else None)
    figs = _figures(src, cells, stats, base, out)
    csv_text = stats.map(fmt)
    atomic_write(out / "report.csv", lambda p: csv_text.to_csv(p, index=False))
    by_subject = subject_stats(src.subjects, cells, arms, base, head)
    parts = _Parts(src, base, summary, stats, eeg_lines, figs, cells, by_subject, per_target_table(stats, arms))
    atomic_write(out / "report.md", lambda p: p.write_text(parts.markdown()))
    atomic_write(out / "report.html", lambda p: p.write_text(parts.html()))
    return summary


@dataclass
class _Parts:
    src: Source
    baseline: str
    summary: pd.DataFrame
    stats: pd.DataFrame
    eeg_lines: list[str]
    figs: list[tuple[str, Path | None, str]]
    cells: pd.DataFrame
    by_subject: pd.DataFrame
    by_target: pd.DataFrame

    TARGETS_NOTE = ("One head per target: each target's NRMSE and Pearson r (mean over units of each cell's chosen "
                    "trial, 95 % interval). The monitored metric is their mean unless the experiment names one.")
    SUBJECTS_NOTE = ("Test subjects as units (as MOABB compares pipelines): per test subject, each arm's mean score "
                     "over its chosen trials; Δ = mean over subjects of (arm − baseline), p = Wilcoxon signed-rank "
                     "over those subjects (n_subjects). It asks whether the arm is better for most people, where "
                     "the table above asks whether it is better on average over training runs.")

    def intro(self) -> list[str]:
        """The report's opening lines: the run, its cells and trials, and how the statistics read."""
        s, m, head = self.src, self.src.metric, self.src.headline
        failed = int((s.trials["status"] == "ERROR").sum()) if "status" in s.trials else 0
        folds = s.info.folds
        cell, unit = ("(arm, seed, fold)", "(seed, fold) units") if folds else ("(arm, seed)", "seeds")
        test = (f"the Nadeau–Bengio corrected resampled t-test (the {folds} subject folds share training subjects; "
                f"variance × (1/n + {fmt(s.info.fold_ratio)}), n_val/n_train = {fmt(s.info.fold_ratio)}), the same "
                "correction on every interval") if folds else "the paired t-test"
        lines = [f"**Live:** {s.info.live}. Rebuilt as trials finish; only finished trials are counted, and the "
                 "final report (with the held-out test scores, when the run computes them) replaces this one "
                 "when the run ends."] if s.info.live else []
        lines += [f"Monitored metric `{m}` ({s.mode}). Each {cell} cell contributes its best trial by `{m}` "
                 f"({len(self.cells)} cells, {len(s.trials)} trials, {failed} failed). Per arm and metric: mean ± std "
                 f"over {unit} and the 95 % t-interval of the mean (n = {unit}); Δ = mean over the units both arms "
                 f"have of (arm − baseline `{self.baseline}`) with its 95 % interval, p = {test} over those units "
                 f"(n_pairs; Wilcoxon signed-rank too from 6 pairs). {NA} = undefined (e.g. fewer than 2 units)."]
        lines += self.warnings()
        if head != m:
            lines.append(f"**Headline on held-out test subjects: `{head}`.** Trials, epochs and each cell's pick were "
                         f"chosen on `{m}`; the chosen checkpoint was then scored once on the test split, which no "
                         f"trial trained or was selected on. `{m}` is shown beside it (its mean flatters every arm: "
                         "it chose them).")
        else:
            lines.append(f"**No held-out test:** arms are ranked on `{m}`, the numbers that chose each cell's trial, "
                         "so every mean is optimistic (`evaluate.test: false`, or a run from before test scoring).")
        if s.info.pruned_across_arms:
            lines.append(f"**Pruned across arms** ({s.info.pruning}, `scheduler.scope: global`): trials of different "
                         "arms competed for the scheduler's rungs, so an arm that learns slowly but ends better was "
                         "stopped early; the differences below measure the pruner as much as the arms. Use "
                         "`scope: cell` (the default) for a fair comparison.")
        elif s.info.pruning:
            lines.append(f"Early stopping: {s.info.pruning} (trials compared only with trials of their own "
                         f"{s.info.pruning.rsplit(' ', 1)[-1]}).")
        ok = s.trials[s.trials[m].notna()] if m in s.trials else s.trials.iloc[0:0]
        if not ok.empty:
            best = ok.loc[best_index(ok[m], s.mode)]
            also = f", {head} = {fmt(best.get(head))}" if head != m else ""
            fold = f", fold {int(best['fold'])}" if "fold" in best and pd.notna(best["fold"]) else ""
            lines.append(f"Best trial by `{m}`: `{best['trial_id']}` (arm {best['arm']}, seed {best['seed']}{fold}): "
                         f"{m} = {fmt(best[m])}{also}" + (f"; checkpoint `{best['checkpoint']}`." if
                                                    isinstance(best.get("checkpoint"), str) else "."))
        return lines

    def warnings(self) -> list[str]:
        """Words where the numbers cannot carry the verdict: too few units, chosen trials stopped early."""
        out: list[str] = []
        if self.cells.empty:
            return out
        units = self.cells.groupby("arm").size()
        if int(units.min()) < 3:
            out.append(f"**Few units:** {', '.join(f'{a} n = {int(n)}' for a, n in units.items() if n < 3)}. With "
                       "fewer than 3 units per arm an interval is very wide (or undefined) and a p-value cannot be "
                       "trusted; add seeds or `matrix.folds` before reading a verdict here.")
        last = self.src.info.epochs
        if last and "epochs" in self.cells:
            early = self.cells[self.cells["epochs"] < last].groupby("arm").size()
            if len(early):
                out.append("**Stopped early:** " + ", ".join(
                    f"{a}: {int(k)} of {int(units[a])} chosen trials" for a, k in early.items())
                    + f" ended before epoch {last} (the scheduler stopped them), so those arms are compared "
                    "partly trained.")
        return out

    def trials_table(self) -> pd.DataFrame:
        """Every trial's row as report.csv shows it (cells formatted once with ``fmt``)."""
        return _display(self.src.trials.drop(columns=["checkpoint", "error", CONFUSION], errors="ignore"))

    def markdown(self) -> str:
        """report.md: the same sections and tables as the HTML page."""
        s = self.src
        md = [f"# {s.info.name}: ablation report", "", "\n\n".join(self.intro()), "",
              markdown_table(_display(self.summary)), "",
              "## All metrics per arm", "", "Same numbers as `report.csv`.", "",
              markdown_table(_display(self.stats)), ""]
        if not self.by_target.empty:
            md += ["## Per target", "", self.TARGETS_NOTE, "", markdown_table(_display(self.by_target)), ""]
        if not self.by_subject.empty:
            md += [f"## Per test subject: {s.headline}", "", self.SUBJECTS_NOTE, "",
                   markdown_table(_display(self.by_subject)), ""]
        if self.eeg_lines:
            md += ["## EEG2025 score (0.3·C1 + 0.7·C2)", "", "\n\n".join(self.eeg_lines), ""]
        for title, path, note in self.figs:
            md += [f"## {title}", "", *([f"![{title}]({_link(path, s.run_dir)})", ""] if path else []),
                   f"_{note}_", ""]
        md += ["## All trials", "", markdown_table(self.trials_table()), ""]
        return "\n".join(md)

    def html(self) -> str:
        """report.html: one self-contained page (figures inlined as data URIs)."""
        body = [H.paragraph(line) for line in self.intro()]
        body += [f"<h2>{self.src.headline} per arm</h2>", H.table(_display(self.summary), "summary", self.baseline),
                 "<h2>All metrics per arm</h2>", H.paragraph("Same numbers as report.csv."),
                 H.table(_display(self.stats), "arm-stats", self.baseline)]
        if not self.by_target.empty:
            body += ["<h2>Per target</h2>", H.paragraph(self.TARGETS_NOTE),
                     H.table(_display(self.by_target), "by-target", self.baseline)]
        if not self.by_subject.empty:
            body += [f"<h2>Per test subject: {self.src.headline}</h2>", H.paragraph(self.SUBJECTS_NOTE),
                     H.table(_display(self.by_subject), "by-subject", self.baseline)]
        if self.eeg_lines:
            body += ["<h2>EEG2025 score (0.3·C1 + 0.7·C2)</h2>", *(H.paragraph(x) for x in self.eeg_lines)]
        for title, path, note in self.figs:
            body += [f"<h2>{title}</h2>", *([H.image(path, title)] if path else []), H.paragraph(note, note=True)]
        body += ["<h2>All trials</h2>", H.table(self.trials_table(), "trials")]
        return H.page(f"{self.src.info.name}: ablation report", body, refresh_s=self.src.info.refresh_s)
