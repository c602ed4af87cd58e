"""Forecasting speed (issue 4, section 8): time to draw 5 futures for one image.

  python scripts/bench_forecast_speed.py --size tiny  --ckpt runs/forecast_tiny/f_lab/forecast.safetensors
  python scripts/bench_forecast_speed.py --size paper            # random weights, the published sizes
  python scripts/bench_forecast_speed.py --size paper --int8 --samplers ddim-2 ddim-3 --ref-steps 0

Fast path: the image is encoded once, the 5 samples are denoised together in one batch, few-step sampler.
Reference protocol: DDPM with all 1000 steps, samples one by one (the image re-encoded for each, as a
per-sample loop does). For the paper size the reference protocol takes about half an hour here, so by
default it is timed over ``--ref-steps`` steps and extrapolated to 1000 (printed as such).
With a tiny checkpoint and ``--store`` the accuracy cost is measured too: M (cm, best-of-5) on lab_test
with each sampler. ``--int8`` runs the model with int8 dynamic quantisation of its linear layers
(:func:`handcast.models.quantize.int8_cpu`).
"""

from __future__ import annotations

import argparse
import time

import torch


def one_image_batch(t: int, size=(256, 256)):
    return {
        "image": torch.rand(1, 3, *size), "kp2d": torch.rand(1, t, 2, 21, 2) * 200,
        "kp2d_conf": torch.ones(1, t, 2, 21), "K": torch.tensor([[[200.0, 0, 128], [0, 200, 128], [0, 0, 1]]]),
        "image_size": torch.tensor([[256, 256]]), "frame_mask": torch.ones(1, t, dtype=torch.bool),
    }


def timed(fn, repeats=1):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("tiny", "paper"), default="tiny")
    ap.add_argument("--ckpt", default=None, help="a forecasting checkpoint (default: random weights of --size)")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ref-steps", type=int, default=None, help="time the DDPM reference over this many steps "
                    "and extrapolate (default: 1000 for tiny, 3 for paper; 0: skip the reference)")
    ap.add_argument("--store", default=None, help="synthetic store: also measure M on lab_test per sampler")
    ap.add_argument("--int8", action="store_true", help="int8 dynamic quantisation of the linear layers")
    ap.add_argument("--samplers", nargs="+", default=["ddim-10", "dpm-10", "ddim-5"], metavar="NAME-STEPS",
                    help="samplers to time (default: ddim-10 dpm-10 ddim-5)")
    ap.add_argument("--accuracy-samplers", nargs="+", default=["ddim-10", "dpm-10", "ddim-50", "ddpm-1000"],
                    metavar="NAME-STEPS", help="samplers whose M is measured with --store")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from handcast.train.config import load_config, to_container
    from handcast.models.forecast import build_forecast, load_forecast

    if args.ckpt:
        model = load_forecast(args.ckpt)
    else:
        cfg = to_container(load_config("forecast", args.size))
        model = build_forecast(cfg["model"]).eval()
    if args.int8:
        from handcast.models.quantize import int8_cpu

        model = int8_cpu(model)
    frames = 64 if args.size == "tiny" else 256
    s = args.samples
    batch = one_image_batch(frames)
    print(f"{args.size} F{' (int8)' if args.int8 else ''}: {frames} frames, {s} samples, {args.threads} threads")
    g = torch.Generator().manual_seed(0)
    rows = []
    for sampler, steps in map(parse_sampler, args.samplers):
        sec = timed(lambda: model.sample(batch, s, sampler, steps, generator=g), 2 if args.size == "tiny" else 1)
        rows.append((f"{sampler}-{steps}, {s} samples batched, image encoded once", sec))
        print(f"  {rows[-1][0]}: {sec:.2f} s")
    ref = args.ref_steps if args.ref_steps is not None else (1000 if args.size == "tiny" else 3)
    with torch.no_grad():
        enc = timed(lambda: model.condition(batch))
    print(f"  image encoding: {enc:.2f} s")
    if ref <= 0:  # --ref-steps 0: no reference timing
        accuracy(args, model, s)
        return
    with torch.no_grad():
        tokens, tmask = model.condition(batch)
        x = torch.randn(1, frames, model.dcfg.motion_dim)
        step = timed(lambda: [model.denoise(x, torch.tensor([500]), tokens, tmask, batch["frame_mask"]) for _ in range(ref)])
    per_sample = enc + step * 1000 / ref
    label = "measured" if ref == 1000 else f"extrapolated from {ref} steps"
    print(f"  reference: ddpm-1000, samples one by one: {s * per_sample:.1f} s ({label}; encode {enc:.2f} s + "
          f"{step / ref * 1000:.1f} ms per step per sample)")
    print(f"  ratio reference / {rows[0][0]}: {s * per_sample / rows[0][1]:.0f}x")
    accuracy(args, model, s)


def parse_sampler(text: str) -> tuple[str, int]:
    name, _, steps = text.partition("-")
    return name, int(steps)


def accuracy(args, model, s: int) -> None:
    if args.store and args.ckpt:
        from handcast.data.store import ClipStore
        from handcast.eval.bench_forecasting import _gt, forecast_split
        from handcast.eval.evaluate import Predictions, evaluate
        from handcast.eval.export import ground_truth_arrays
        from handcast.hand import HandModel

        st = ClipStore(args.store)
        gt = ground_truth_arrays(st, "lab_test")
        hands = HandModel("auto")
        for sampler, steps in map(parse_sampler, args.accuracy_samplers):
            p = forecast_split(model, hands, st, "lab_test", s, sampler, steps)
            t = gt["joints"].shape[1]
            res = evaluate(Predictions(p["clip_ids"], p["joints"][:, :, :t], p["pose6d"][:, :, :t], p["wrist"][:, :, :t]), _gt(gt))
            print(f"  lab_test {sampler}-{steps}: M best-of-{s} {res['best_of_n']['M']:.2f} cm, mean-of-{s} "
                  f"{res['mean_of_n']['M']:.2f} cm, multimodality {res['multimodality']['pred']:.2f}, "
                  f"{p['seconds_per_clip']:.3f} s per input")


if __name__ == "__main__":
    main()
