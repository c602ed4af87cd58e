"""Keypoints-only path vs full smplx forward: ``python scripts/bench_hand.py [--batch 64 64] [--device cpu]``."""

from __future__ import annotations

import argparse

import torch

from handcast.hand.bench import keypoints_speed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 64], help="leading batch dims (default 64 64)")
    ap.add_argument("--kind", default="open", choices=["open", "mano", "auto"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    r = keypoints_speed(tuple(args.batch), kind=args.kind, device=args.device, repeats=args.repeats)
    print(f"{r['kind']} model, V={r['num_vertices']}, batch {r['batch']} x 2 hands on {r['device']} "
          f"({torch.get_num_threads()} threads)")
    print(f"  full forward (smplx): {r['forward_s'] * 1e3:9.1f} ms")
    print(f"  keypoints only:       {r['keypoints_s'] * 1e3:9.1f} ms")
    print(f"  speed-up:             {r['speedup']:9.1f} x")


if __name__ == "__main__":
    main()
