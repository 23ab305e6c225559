"""A run's report from its folder alone: report.csv, report.md, report.html and the PNG figures beside them.

Numbers are formatted once (``fmt`` in source.py) and the same strings go into report.csv and the
HTML/Markdown tables, so the three always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neuroray.challenges.eeg2025.score import add_challenge_scores, combine_challenges
from neuroray.outputs import atomic_write
from neuroray.reports import html as H
from neuroray.reports import plots as report_plots
from neuroray.reports.importance import param_importances
from neuroray.reports.selection import best_index
from neuroray.reports.source import NA, Source, fmt, markdown_table, resolve_baseline
from neuroray.reports.stats import arm_stats, best_per_cell, learning_curves, metric_columns


def _display(df: pd.DataFrame) -> pd.DataFrame:
    """Display strings: the CSV's cell text, with ``NA`` where the CSV cell is empty."""
    return df.map(lambda v: fmt(v) or NA)


def summary_table(stats: pd.DataFrame, trials: pd.DataFrame, metric: str, arms: list[str],
                  baseline: str, beside: str | None = None) -> pd.DataFrame:
    """The headline metric per arm (what `neuroray run` prints): its name, seeds, trials, mean, std, CI, Δ, p;
    ``beside``: the mean of that metric too (val beside test)."""
    s = stats[stats["metric"] == metric].set_index("arm")
    b = stats[stats["metric"] == beside].set_index("arm") if beside else None
    rows = [{"arm": a, "metric": metric, "seeds": int(s.at[a, "n"]), "trials": int((trials["arm"] == a).sum()),
             "mean": s.at[a, "mean"], "std": s.at[a, "std"], "ci_low": s.at[a, "ci_low"],
             "ci_high": s.at[a, "ci_high"], f"delta_vs_{baseline}": s.at[a, "delta"], "p_value": s.at[a, "p_value"],
             **({f"{beside} mean": b.at[a, "mean"]} if b is not None else {})}
            for a in arms]
    return pd.DataFrame(rows)


def _figures(src: Source, cells: pd.DataFrame, out: Path) -> list[tuple[str, Path | None, str]]:
    """(title, PNG or None, note) per figure section."""
    curves_png, imp_png = out / report_plots.LEARNING_CURVES, out / report_plots.IMPORTANCE
    for stale in (curves_png, imp_png):  # a figure this report cannot make must not survive from an older one
        stale.unlink(missing_ok=True)
    curves = learning_curves(src.history, cells, src.metric)
    if curves.empty:
        sections: list[tuple[str, Path | None, str]] = [("Learning curves", None, (
            f"No learning curves: the run folder has no per-epoch history (history.parquet) of {src.metric}."))]
    else:
        png = report_plots.learning_curves_png(curves, src.metric, src.arms, curves_png)
        sections = [("Learning curves", png, f"{src.metric} per epoch of each cell's chosen trial: mean over "
                     "seeds, band ± 1 std where ≥ 2 seeds reached that epoch (n = seeds in the legend).")]
    imp, note = param_importances(src.trials, src.metric, src.mode)
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
    stats = arm_stats(cells, arms, base, metrics)
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
    figs = _figures(src, cells, out)
    csv_text = stats.map(fmt)
    atomic_write(out / "report.csv", lambda p: csv_text.to_csv(p, index=False))
    parts = _Parts(src, base, summary, stats, eeg_lines, figs, len(cells))
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
    n_cells: int

    def intro(self) -> list[str]:
        """The report's opening lines: the run, its cells and trials, and how the statistics read."""
        s, m, head = self.src, self.src.metric, self.src.headline
        failed = int((s.trials["status"] == "ERROR").sum()) if "status" in s.trials else 0
        lines = [f"Monitored metric `{m}` ({s.mode}). Each (arm, seed) cell contributes its best trial by `{m}` "
                 f"({self.n_cells} cells, {len(s.trials)} trials, {failed} failed). Per arm and metric: mean ± std "
                 "over seeds and the 95 % t-interval of the mean (n = seeds); Δ = mean over the seeds both arms "
                 f"have of (arm − baseline `{self.baseline}`), p = paired t-test over those seeds (n_pairs; "
                 f"Wilcoxon signed-rank too from 6 pairs). {NA} = undefined (e.g. fewer than 2 seeds/pairs)."]
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
            lines.append(f"Best trial by `{m}`: `{best['trial_id']}` (arm {best['arm']}, seed {best['seed']}): "
                         f"{m} = {fmt(best[m])}{also}; checkpoint `{best.get('checkpoint')}`.")
        return lines

    def trials_table(self) -> pd.DataFrame:
        """Every trial's row as report.csv shows it (cells formatted once with ``fmt``)."""
        return _display(self.src.trials.drop(columns=["checkpoint", "error"], errors="ignore"))

    def markdown(self) -> str:
        """report.md: the same sections and tables as the HTML page."""
        s = self.src
        md = [f"# {s.info.name}: ablation report", "", "\n\n".join(self.intro()), "",
              markdown_table(_display(self.summary)), "",
              "## All metrics per arm", "", "Same numbers as `report.csv`.", "",
              markdown_table(_display(self.stats)), ""]
        if self.eeg_lines:
            md += ["## EEG2025 score (0.3·C1 + 0.7·C2)", "", "\n\n".join(self.eeg_lines), ""]
        for title, path, note in self.figs:
            md += [f"## {title}", "", *([f"![{title}]({path.name})", ""] if path else []), f"_{note}_", ""]
        md += ["## All trials", "", markdown_table(self.trials_table()), ""]
        return "\n".join(md)

    def html(self) -> str:
        """report.html: one self-contained page (figures inlined as data URIs)."""
        body = [H.paragraph(line) for line in self.intro()]
        body += [f"<h2>{self.src.headline} per arm</h2>", H.table(_display(self.summary), "summary", self.baseline),
                 "<h2>All metrics per arm</h2>", H.paragraph("Same numbers as report.csv."),
                 H.table(_display(self.stats), "arm-stats", self.baseline)]
        if self.eeg_lines:
            body += ["<h2>EEG2025 score (0.3·C1 + 0.7·C2)</h2>", *(H.paragraph(x) for x in self.eeg_lines)]
        for title, path, note in self.figs:
            body += [f"<h2>{title}</h2>", *([H.image(path, title)] if path else []), H.paragraph(note, note=True)]
        body += ["<h2>All trials</h2>", H.table(self.trials_table(), "trials")]
        return H.page(f"{self.src.info.name}: ablation report", body)
