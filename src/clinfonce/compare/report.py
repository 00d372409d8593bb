"""The comparison's report and plots, made from its results table alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from clinfonce._io import atomic_open, atomic_write_with
from clinfonce.methods import METHODS

ERROR_BARS = "mean over seeds;\nerror bars: ± one sample standard deviation over seeds (none with one seed)"


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """One row per method and cluster setting, in the order they were run: seeds, failed runs, linear
    top-1 mean and std, kNN top-1 mean, clusters and I(Z;T), H(Z|T) (means over seeds)."""
    ok = table[table["status"] == "ok"]
    keys = ["method", "setting"]
    order = table[keys].drop_duplicates()
    grouped = ok.groupby(keys, sort=False)
    summary = pd.DataFrame(
        {
            "seeds": grouped["seed"].count(),
            "top1_mean": grouped["top1"].mean(),
            "top1_std": grouped["top1"].std(),
            "knn20_mean": grouped["knn20_top1"].mean(),
            "n_clusters": grouped["n_clusters"].mean(),
            "I_Z_T": grouped["I_Z_T"].mean(),
            "H_Z_given_T": grouped["H_Z_given_T"].mean(),
        }
    )
    failed = table[table["status"] != "ok"].groupby(keys, sort=False)["seed"].count().rename("failed")
    summary = order.merge(summary.reset_index(), on=keys, how="left").merge(
        failed.reset_index(), on=keys, how="left"
    )
    summary["seeds"] = summary["seeds"].fillna(0).astype(int)
    summary["failed"] = summary["failed"].fillna(0).astype(int)
    return summary


def write_plots(out: Path, table: pd.DataFrame, sweep_key: str | None) -> list[str]:
    """``accuracy.png``, ``curves.png`` and, with a sweep, ``sweep.png``; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(table)
    summary = summary[summary["seeds"] > 0]
    if summary.empty:
        return []
    written = ["accuracy.png"]
    labels = [_label(m, s) for m, s in zip(summary["method"], summary["setting"], strict=True)]
    figure, axes = plt.subplots(figsize=(max(7.0, 0.8 * len(summary) + 2), 4.2))
    positions = range(len(summary))
    axes.bar(
        positions,
        summary["top1_mean"],
        yerr=summary["top1_std"].fillna(0),
        capsize=4,
        color=[_color(m) for m in summary["method"]],
        alpha=0.85,
    )
    ok = table[table["status"] == "ok"]
    for position, (method, setting) in enumerate(zip(summary["method"], summary["setting"], strict=True)):
        seeds = ok[(ok["method"] == method) & (ok["setting"] == setting)]["top1"]
        axes.plot([position] * len(seeds), seeds, "k.", markersize=5)
    axes.set_xticks(list(positions), labels, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("linear-probe top-1 on the test split (%)")
    axes.set_title(f"Bars: {ERROR_BARS}; dots: single seeds", fontsize=8)
    low = float((summary["top1_mean"] - summary["top1_std"].fillna(0)).min())
    axes.set_ylim(max(0.0, low - 10), min(100.0, float(ok["top1"].max()) + 5))
    figure.tight_layout()
    atomic_write_with(out / "accuracy.png", lambda tmp: figure.savefig(tmp, dpi=110, format="png"))
    plt.close(figure)
    if _plot_curves(out, table, plt):
        written.append("curves.png")
    if (
        sweep_key is not None
        and sweep_key in table.columns
        and _plot_sweep(out, table, summary, sweep_key, plt)
    ):
        written.append("sweep.png")
    return written


def _plot_curves(out: Path, table: pd.DataFrame, plt) -> bool:
    """The training loss of every finished run that trained, by epoch (colour: method; line style: seed);
    False when no run has a curve (``pretrained`` trains nothing)."""
    from matplotlib.ticker import MaxNLocator

    from clinfonce.run import RunDir

    ok = table[table["status"] == "ok"]
    curves = {row["run"]: RunDir(out / row["run"]).training_curve() for _, row in ok.iterrows()}
    ok = ok[[not curves[run].empty for run in ok["run"]]]
    if ok.empty:
        return False
    figure, axes = plt.subplots(figsize=(7, 4.2))
    seeds = sorted(set(ok["seed"]))
    for _, row in ok.iterrows():
        curve = curves[row["run"]]
        style = ("-", "--", ":", "-.")[seeds.index(row["seed"]) % 4]
        color = _color(row["method"])
        axes.plot(curve["epoch"] + 1, curve["train_loss"], style, color=color, label=Path(row["run"]).name)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("training loss (each method its own objective)")
    axes.set_title("Training curves (colour: method; line style: seed)", fontsize=9)
    axes.legend(fontsize=6, ncol=2 if len(ok) > 8 else 1)
    figure.tight_layout()
    atomic_write_with(out / "curves.png", lambda tmp: figure.savefig(tmp, dpi=110, format="png"))
    plt.close(figure)
    return True


def _plot_sweep(out: Path, table: pd.DataFrame, summary: pd.DataFrame, key: str, plt) -> bool:
    """Accuracy against the swept value (one line per method that uses clusters; the others as horizontal
    references), with I(Z;T) and H(Z|T) of the clusterings on a second axis."""
    ok = table[(table["status"] == "ok") & table[key].notna()]
    if ok.empty or not pd.api.types.is_numeric_dtype(ok[key]):
        return False
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(7, 4.2))
    methods = list(dict.fromkeys(ok["method"]))
    span = float(ok[key].max() - ok[key].min()) or 1.0
    for i, (method, rows) in enumerate(ok.groupby("method", sort=False)):
        curve = rows.groupby(key)["top1"].agg(["mean", "std"]).sort_index()
        shift = (i - (len(methods) - 1) / 2) * 0.012 * span  # side by side, so error bars do not overlap
        axes.errorbar(
            curve.index.astype(float) + shift,
            curve["mean"],
            yerr=curve["std"].fillna(0),
            marker="o",
            capsize=3,
            color=_color(method),
            label=method,
        )
    for _, row in summary[summary["setting"] == ""].iterrows():
        axes.axhline(
            row["top1_mean"],
            linestyle="--",
            color=_color(row["method"]),
            label=f"{row['method']} (no clusters)",
        )
    axes.set_xlabel(key)
    if pd.api.types.is_integer_dtype(ok[key]):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("linear-probe top-1 (%)")
    info = ok.groupby(key)[["I_Z_T", "H_Z_given_T"]].mean().sort_index()
    second = axes.twinx()
    second.plot(info.index, info["I_Z_T"], "s:", color="#555555", label="I(Z;T)")
    second.plot(info.index, info["H_Z_given_T"], "^:", color="#bbbbbb", label="H(Z|T)")
    second.set_ylabel("bits (training split)")
    lines = axes.get_legend_handles_labels()
    more = second.get_legend_handles_labels()
    axes.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="best")
    axes.set_title(f"Accuracy against {key}: {ERROR_BARS}", fontsize=8)
    figure.tight_layout()
    atomic_write_with(out / "sweep.png", lambda tmp: figure.savefig(tmp, dpi=110, format="png"))
    plt.close(figure)
    return True


def write_report(
    out: Path,
    table: pd.DataFrame,
    plots: list[str],
    total_runs: int,
    title: str = "clinfonce compare",
    introduction: Sequence[str] = (),
) -> None:
    """``report.md``: ``introduction``, the summary (mean ± std over seeds), the plots, failures, every run."""
    summary = summarise(table)
    shown = pd.DataFrame(
        {
            "method": summary["method"],
            "setting": summary["setting"].replace("", "–"),
            "seeds": summary["seeds"],
            "linear top-1 (%)": [
                _mean_std(m, s, n)
                for m, s, n in zip(summary["top1_mean"], summary["top1_std"], summary["seeds"], strict=True)
            ],
            "kNN-20 top-1 (%)": summary["knn20_mean"].round(2),
            "clusters": summary["n_clusters"].round(0),
            "I(Z;T)": summary["I_Z_T"].round(3),
            "H(Z|T)": summary["H_Z_given_T"].round(3),
            "failed": summary["failed"],
        }
    )
    failed = table[table["status"] != "ok"]
    verdicts = against_baseline(table)
    lines = [
        f"# {title}",
        "",
        *([*verdicts, ""] if verdicts else []),
        *introduction,
        f"{len(table)} of {total_runs} run(s) done; {len(failed)} failed. Every run is evaluated by the same "
        "linear probe (frozen backbone features, settings chosen on a validation split of the training "
        "data) on the test split. I(Z;T) and H(Z|T) (bits) are those of the clustering a method trained on, "
        "on the training split, against the labels (monitoring only).",
        "",
        "## Summary",
        "",
        f"Linear top-1: {ERROR_BARS.replace(chr(10), ' ')}.",
        "",
        _markdown(shown),
        "",
        "Methods: " + "; ".join(f"`{m}`: {METHODS[m].summary}" for m in dict.fromkeys(table["method"])) + ".",
        "",
    ]
    for plot in plots:
        lines += [f"![{plot[:-4]}]({plot})", ""]
    if len(failed):
        lines += [
            "## Failed runs",
            "",
            _markdown(failed[["method", "setting", "seed", "error"]]),
            "",
        ]
        lines += [
            "Tracebacks: `failures/`. Run the same command again to retry them; finished runs are re-used.",
            "",
        ]
    lines += ["## Every run", "", _markdown(table.drop(columns=["error"])), ""]
    with atomic_open(out / "report.md", "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))


def against_baseline(table: pd.DataFrame) -> list[str]:
    """One sentence per method and setting: its linear top-1 against the best baseline without auxiliary
    information (the method of :data:`~clinfonce.methods.METHODS` that uses nothing, such as ``simclr`` or
    ``pretrained``, with the highest mean), paired by seed: "+x.x points (seeds 0/1/2: ...), holds on n of
    3 seeds". Empty without such a baseline."""
    ok = table[table["status"] == "ok"]
    plain = [m for m in dict.fromkeys(ok["method"]) if METHODS[m].uses == "nothing"]
    if not plain:
        return []
    means = {m: ok.loc[ok["method"] == m, "top1"].mean() for m in plain}
    baseline = max(plain, key=lambda m: means[m])
    reference = ok[ok["method"] == baseline].set_index("seed")["top1"]
    lines = []
    for (method, setting), rows in ok[ok["method"] != baseline].groupby(["method", "setting"], sort=False):
        paired = rows.set_index("seed")["top1"].sub(reference).dropna()
        if paired.empty:
            continue
        name = f"`{method}`" + (f" ({setting})" if setting else "")
        seeds = "/".join(str(seed) for seed in paired.index)
        each = "/".join(f"{d:+.1f}" for d in paired)
        lines.append(
            f"- {name}: {paired.mean():+.1f} points over `{baseline}` (seeds {seeds}: {each}), "
            f"holds on {int((paired > 0).sum())} of {len(paired)} seed(s)."
        )
    return [f"Against the best baseline without auxiliary information, `{baseline}` "
            f"({means[baseline]:.1f}% linear top-1, mean of its seeds):", "", *lines]  # fmt: skip


def _color(method: str) -> str:
    """The method's colour (its row in :data:`~clinfonce.methods.METHODS`)."""
    return METHODS[method].color


def _label(method: str, setting: str) -> str:
    return method if not setting else f"{method}\n{setting}"


def _mean_std(mean: float, std: float, n: int) -> str:
    if n == 0 or pd.isna(mean):
        return "–"
    return f"{mean:.2f}" if n == 1 or pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def _markdown(frame: pd.DataFrame) -> str:
    """A markdown table with empty cells where a value is missing (not "nan")."""
    return frame.astype(object).where(frame.notna(), None).to_markdown(index=False, missingval="")
