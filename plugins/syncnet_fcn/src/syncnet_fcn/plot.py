"""``sync --plot``: the evidence per offset, the offset over time, the confidence over time."""
from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .features import FPS
from .sync_report import SyncReport, describe_offset

BEST = "#d62728"
BARS = "#9ecae1"


def plot_report(report: SyncReport, path: str | Path) -> Path:
    """Draw ``report`` into a PNG (or any format matplotlib knows by the extension)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("--plot needs the video extra: pip install 'syncnet-fcn[video]'") from None
    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    path = Path(path)
    if not path.parent.exists():
        raise InputError(f"--plot {path}: the folder {path.parent} does not exist; create it first")
    fig = plt.figure(figsize=(11, 8.5), layout="constrained")
    # a narrow second column holds the colour bar, so the three panels keep one width
    grid = fig.add_gridspec(3, 2, height_ratios=[1.1, 1.6, 0.8], width_ratios=[60, 1])
    _offsets(fig.add_subplot(grid[0, 0]), report)
    heat = fig.add_subplot(grid[1, 0])
    _over_time(fig, heat, fig.add_subplot(grid[1, 1]), report)
    _confidence(fig.add_subplot(grid[2, 0], sharex=heat), report)
    fig.suptitle(f"{Path(report.file).name}: AV offset {describe_offset(report.offset)}\n"
                 f"confidence {report.confidence:.3f} · model {report.model} · "
                 f"{report.frames} frames ({report.seconds:.1f} s)", fontsize=12)
    try:
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as exc:
        raise InputError(f"--plot {path}: cannot write it ({exc})") from None
    finally:
        plt.close(fig)
    return path


def _offsets(ax, report: SyncReport) -> None:
    best = report.scores[report.offsets.index(report.offset)]
    median = sorted(report.scores)[len(report.scores) // 2]
    if report.higher_is_better:
        colours = [BEST if o == report.offset else BARS for o in report.offsets]
        ax.bar(report.offsets, report.scores, color=colours, width=0.8)
        ax.set_ylabel("mean probability")
        ax.set_title("Evidence per offset (higher is better; confidence = best − median)", fontsize=10)
    else:
        # distances differ by little next to their size: no bars from 0, and best on top
        ax.plot(report.offsets, report.scores, "-o", color="#3182bd", ms=4)
        ax.plot([report.offset], [best], "o", color=BEST, ms=8)
        ax.invert_yaxis()
        ax.set_ylabel("mean distance")
        ax.set_title("Distance per offset (lower is better, drawn on top; confidence = median − best)",
                     fontsize=10)
    ax.margins(y=0.15)
    ax.axhline(median, color="grey", lw=1, ls="--", label="median over offsets")
    ax.annotate(f"{report.offset:+d}", (report.offset, best), textcoords="offset points",
                xytext=(0, 6), ha="center", color=BEST, fontweight="bold")
    ax.set_xlabel("offset (frames; > 0: the sound comes first)")
    ax.set_xlim(report.offsets[0] - 0.7, report.offsets[-1] + 0.7)
    ax.legend(loc="upper left", fontsize=8, frameon=False)


def _over_time(fig, ax, bar, report: SyncReport) -> None:
    import matplotlib
    import numpy as np

    table = report.table.numpy()
    if report.higher_is_better:
        # probability exactly 0 = the compared audio lies outside the clip: no evidence at all
        table = np.ma.masked_equal(table, 0.0)
    steps = table.shape[1]
    half = 0.5 / FPS
    extent = (-half, (steps - 1) / FPS + half, report.offsets[0] - 0.5, report.offsets[-1] + 0.5)
    cmap = matplotlib.colormaps["magma" if report.higher_is_better else "magma_r"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(table, origin="lower", aspect="auto", extent=extent, cmap=cmap,
                      interpolation="nearest")
    fig.colorbar(image, cax=bar, label=report.measure)
    times = [i / FPS for i in range(steps)]
    ax.plot(times, report.step_offsets, "o", ms=3.5, color="#00e5ff", mec="black", mew=0.4,
            label="best offset per step")
    ax.axhline(report.offset, color="white", lw=1.2, ls="--", label=f"clip offset {report.offset:+d}")
    ax.set_ylabel("offset (frames)")
    ax.set_title("Offset over time (grey: audio outside the clip)" if report.higher_is_better
                 else "Offset over time", fontsize=10, loc="left")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8, frameon=True,
              facecolor="#bdbdbd", edgecolor="none", borderaxespad=0.1)
    ax.tick_params(labelbottom=False)


def _confidence(ax, report: SyncReport) -> None:
    times = [i / FPS for i in range(len(report.step_confidences))]
    ax.fill_between(times, report.step_confidences, color=BARS, alpha=0.6, lw=0)
    ax.plot(times, report.step_confidences, color="#08519c", lw=1.2)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("confidence")
    ax.set_xlabel("time of the window's first frame (s)")
    label = "per step" if report.higher_is_better else "per step at the clip offset, 9-tap median"
    ax.set_title(f"Confidence over time ({label})", fontsize=10)
