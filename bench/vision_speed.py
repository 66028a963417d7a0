"""The vision stage against the decode floor, measured side by side in one process.

For every video of the corpus, alternately: the decode floor exactly as `bench/run.py` measures
it (`decode_video_frames`), then `analyze_video`. Prints the wall and CPU ratios (vision ÷ decode)
over the corpus and the step times. ``name=value`` arguments override `VisionParams` fields, to
compare settings under the same load:

    python -m bench.vision_speed --corpus data/demo
    python -m bench.vision_speed --corpus data/demo ort_threads=2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

from bench.run import decode_video_frames


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", default="data/demo")
    p.add_argument("overrides", nargs="*", help="VisionParams field=value")
    args = p.parse_args()

    from assets.vision.params import VisionParams
    from assets.vision.pipeline import VisionStats, analyze_video, load_vision_models
    from orchestration.resources import models_from_env

    params = VisionParams.from_thresholds()
    over = {}
    for item in args.overrides:
        name, value = item.split("=", 1)
        if not hasattr(params, name):
            raise SystemExit(f"{name} is not a VisionParams field")
        over[name] = type(getattr(params, name))(value)
    params = dataclasses.replace(params, **over)
    models = load_vision_models(models_from_env(resolved=True).face_model_dir, params)
    videos = sorted(Path(args.corpus).glob("*.mp4"))
    analyze_video("warm-up", videos[0], models, params=params)  # first-call allocations

    sums: dict[str, float] = {}
    for path in videos:
        w0, c0 = time.perf_counter(), time.process_time()
        decode_video_frames(path)
        floor, floor_cpu = time.perf_counter() - w0, time.process_time() - c0
        st = VisionStats()
        analyze_video(path.stem, path, models, params=params, stats=st)
        row = {"floor": floor, "floor_cpu": floor_cpu, "vision": st.total, "vision_cpu": st.cpu, "decode": st.decode, "shots": st.shots}
        row |= {k: getattr(st.steps, k) for k in ("detect", "track", "landmarks", "embed")}
        for k, v in row.items():
            sums[k] = sums.get(k, 0.0) + v
        print(f"{path.stem}: vision {st.total:.2f} s ÷ decode {floor:.2f} s = {st.total / floor:.1f}×", flush=True)
    print(
        f"{over or 'thresholds.csv'}: vision ÷ decode {sums['vision'] / sums['floor']:.2f}× wall, "
        f"{sums['vision_cpu'] / sums['floor_cpu']:.2f}× CPU; load average {os.getloadavg()[0]:.1f}; "
        + ", ".join(f"{k} {v:.2f}" for k, v in sums.items())
    )


if __name__ == "__main__":
    main()
