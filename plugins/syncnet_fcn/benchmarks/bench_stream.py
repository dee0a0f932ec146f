"""StreamSync on this machine: compute time per chunk, real-time factor, how late steps leave.

A child run is ``python bench_stream.py MODEL CLIP CHECKPOINT CHUNK_SECONDS`` (MODEL fcn or
attention). The clip is decoded into chunks first (decoding is timed on its own), then the
chunks are pushed in file order as fast as the model takes them:

- latency per chunk: wall time of one ``push_audio`` / ``push_video`` call;
- real-time factor: total compute time / media duration (< 1 keeps up with a live stream);
- delay of a step: media time received when it left − the end of its 5-frame window, i.e. how
  much look-ahead the receptive field needs (add the compute latency for wall-clock delay);
- memory: the stages' buffers (``StreamSync.buffered``) and the process's peak RSS.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import child, peak_rss_mb, report, table  # noqa: E402


def measure(kind: str, clip: Path, checkpoint: Path, chunk_seconds: float) -> dict:
    import torch

    from syncnet_fcn.checkpoints import load_fcn
    from syncnet_fcn.media import iter_media
    from syncnet_fcn.stream import StreamSync

    torch.set_grad_enabled(False)
    started = time.perf_counter()
    chunks = list(iter_media(clip, chunk_seconds=chunk_seconds))
    decode = time.perf_counter() - started
    model = load_fcn(checkpoint, kind, "clip")[0]
    stream = StreamSync(model)
    latencies, delays, buffers = [], [], []
    samples = frames = 0
    baseline, cpu = peak_rss_mb(), time.process_time()
    for kind_, chunk in chunks:
        started = time.perf_counter()
        steps = stream.push_audio(chunk) if kind_ == "audio" else stream.push_video(chunk)
        latencies.append(time.perf_counter() - started)
        if kind_ == "audio":
            samples += chunk.size
        else:
            frames += len(chunk)
        received = min(samples / 16000, frames / 25)
        delays += [received - (s.index + 5) / 25 for s in steps]
        buffers.append(sum(stream.buffered().values()))
    started = time.perf_counter()
    tail = stream.finish()
    finish = time.perf_counter() - started
    cpu = time.process_time() - cpu
    media = frames / 25
    compute = sum(latencies) + finish
    ordered = sorted(latencies)
    return {"model": kind, "chunk_seconds": chunk_seconds, "chunks": len(latencies),
            "media_seconds": media, "decode_seconds": decode, "compute_seconds": compute,
            "real_time_factor": compute / media, "cpu_seconds": cpu, "cpu_real_time_factor": cpu / media,
            "latency_ms": {"median": 1000 * statistics.median(ordered),
                           "p95": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
                           "max": 1000 * ordered[-1], "mean": 1000 * compute / len(ordered)},
            "finish_ms": 1000 * finish, "steps_before_finish": len(delays), "steps_at_finish": len(tail),
            "delay_s": {"median": statistics.median(delays), "max": max(delays)} if delays else None,
            "buffered_max": max(buffers), "buffered_at_half": buffers[len(buffers) // 2],
            "buffered_at_end": buffers[-1], "working_mb": peak_rss_mb() - baseline}


def run(clip: Path, checkpoint: Path, chunk_seconds: float = 0.2) -> dict:
    results = {}
    for kind in ("fcn", "attention"):
        print(f"  stream: {kind} …", flush=True)
        results[kind] = child("bench_stream.py", kind, clip, checkpoint, chunk_seconds)
    rows = [[k, f"{r['media_seconds']:.0f}", f"{r['latency_ms']['median']:.0f}", f"{r['latency_ms']['p95']:.0f}",
             f"{r['latency_ms']['max']:.0f}", f"{r['real_time_factor']:.2f}", f"{r['cpu_real_time_factor']:.2f}",
             f"{r['delay_s']['median']:.2f}" if r["delay_s"] else "-", f"{r['buffered_max']}",
             f"{r['working_mb']:.0f}"] for k, r in results.items()]
    print(table(rows, ["model", "media s", "chunk ms p50", "p95", "max", "RTF", "CPU s / media s", "step delay s",
                       "max buffered", "working MB"]))
    return results


if __name__ == "__main__":
    report(measure(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])))
