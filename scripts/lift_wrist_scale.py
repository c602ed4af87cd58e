"""How far the lifting model's training wrists lie from its motion codec's statistics:
``python scripts/lift_wrist_scale.py [--store out/synth_tiny] [--ckpt L.safetensors] [--items 300]``.

Draws up to ``--items`` distinct training windows of the store's ``lab_train`` split through the ``tiny`` preset's augmentation
(:class:`handcast.train.augment.LiftAugment`, half of them through real-footage cameras) and prints the wrists'
mean and std (m, frame-0 camera), the checkpoint's codec statistics (default: the shipped L, whose statistics
are the store's), and quantiles of |wrist - mean| / std per axis: the scale of the translation part of the
diffusion target (``data.wrist_stats`` in docs/lifting.md).
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="out/synth_tiny")
    ap.add_argument("--ckpt", default=None, help="lifting checkpoint (default: the shipped one)")
    ap.add_argument("--items", type=int, default=300)
    args = ap.parse_args()

    from handcast.data import ClipDataset, ClipStore
    from handcast.hand import HandModel
    from handcast.infer.lift import shipped_lift_checkpoint
    from handcast.models.lifting import load_lift
    from handcast.train.augment import LiftAugment, LiftAugmentConfig, augmented_wrists
    from handcast.train.config import load_config, to_container
    from handcast.train.lift import LIFT_FIELDS, rest_wrist_of

    cfg = to_container(load_config("lift", "tiny", []))
    hands = HandModel("auto")
    aug = LiftAugment(LiftAugmentConfig.from_dict(cfg["data"]["augment"]), seed=0, hands=hands)
    ds = ClipDataset(ClipStore(args.store), "lab_train", horizon=int(cfg["data"]["horizon"]), fields=LIFT_FIELDS,
                     random_crop=True, seed=0, rest_wrist=rest_wrist_of(hands))
    w = augmented_wrists([ds], aug, seed=0, items=args.items)
    codec = load_lift(args.ckpt or shipped_lift_checkpoint()).codec
    mean, std = codec.wrist_mean.numpy(), codec.wrist_std.numpy()
    np.set_printoptions(precision=3, suppress=True)
    print(f"training wrists (m, x y z): mean {w.mean(0)}, std {w.std(0)} ({len(w)} hand-frames, {args.items} windows)")
    print(f"codec statistics: mean {mean}, std {std}")
    q = np.quantile(np.abs((w - mean) / std), [0.5, 0.9, 0.99], axis=0)
    for name, row in zip(("median", "90th percentile", "99th percentile"), q):
        print(f"|normalised wrist| {name} (x y z): {row}")


if __name__ == "__main__":
    main()
