"""The forecasting anchor (:func:`handcast.fit.anchor.lift_prefix` on frame 0) against the 3D truth, with one
orientation start (L's own) and with the default 24:
``python scripts/bench_anchor_cameras.py [--store out/synth_tiny] [--split lab_test] [--clips 32]
[--cameras real|store] [--seed 1000] [--samples N] [--keep K]``.

Each of the first ``--clips`` clips of the split is seen through the store's own camera or through one camera
like those of real photos (``--cameras real``: :class:`handcast.train.augment.CameraAugment`, seed ``--seed``,
exact 2D keypoints, as ``handcast bench forecasting --cameras real``); frame 0's 2D keypoints are lifted as
``handcast forecast`` anchors a photo (the shipped L, mean shape). Printed per setting, over the hands the anchor
places: the wrist error (cm, median and mean), the relative depth error (mean of |z / z_true - 1|), the
root-relative keypoint error (cm, mean), the mean reprojection error (px), and how many hands took a start other
than L's.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="out/synth_tiny")
    ap.add_argument("--split", default="lab_test")
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--cameras", choices=("real", "store"), default="real")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=None, help="L's samples drawn (default: AnchorConfig's)")
    ap.add_argument("--keep", type=int, default=-1,
                    help="of those, the most 2D-consistent averaged (default: AnchorConfig's; 0: all)")
    a = ap.parse_args()

    from handcast.data import collate
    from handcast.data.store import ClipStore
    from handcast.fit.anchor import AnchorConfig, _hand_errors, lift_prefix
    from handcast.hand import HandModel
    from handcast.models.checkpoint import shipped_checkpoint
    from handcast.models.forecast import forecast_dataset
    from handcast.models.lifting import load_lift
    from handcast.train.augment import CameraAugment

    hands = HandModel("auto")
    lift = load_lift(shipped_checkpoint("lift_tiny.safetensors", "handcast train lift"))
    tf = CameraAugment(1.0, seed=a.seed, labelled_only=False) if a.cameras == "real" else None
    ds = forecast_dataset(ClipStore(a.store), a.split, 64, False, indices=list(range(a.clips)), transform=tf)
    b = collate([ds[i] for i in range(len(ds))])
    gt = b["joints3d"][:, 0].double()  # (B, 2, 21, 3)
    n = len(gt)
    zeros = torch.zeros(n, 2, 10)
    j0 = hands.rest_joints(zeros)[..., 0, :][:, None]
    first = None
    samples = AnchorConfig.samples if a.samples is None else a.samples
    keep = AnchorConfig.keep if a.keep < 0 else (a.keep or None)
    print(f"{a.split}, {a.clips} clips, cameras {a.cameras}, {samples} sample(s) of L, {keep or 'all'} kept and averaged")
    for starts in (1, 24):
        pose, wrist, known, _ = lift_prefix(lift, hands, b["kp2d"][:, :1], b["kp2d_conf"][:, :1], b["K"],
                                            b["image_size"], b["world_to_cam"][:, :1],
                                            config=AnchorConfig(orientation_starts=starts, samples=samples, keep=keep),
                                            generator=torch.Generator().manual_seed(0))
        k = known[:, 0]
        px = _hand_errors(hands, pose, wrist - j0, zeros, b["kp2d"][:, :1].float(),
                          (b["kp2d_conf"][:, :1] * known[..., None]).float(), b["K"].float(),
                          torch.eye(4).expand(n, 1, 4, 4))[k]
        J = hands.keypoints(pose, zeros[:, None], wrist - j0, rep="aa", convention="flat")[:, 0].double()
        werr = (J[..., 0, :] - gt[..., 0, :]).norm(dim=-1)[k]
        depth = (J[..., 0, 2] / gt[..., 0, 2] - 1).abs()[k]
        rel = ((J - J[..., :1, :]) - (gt - gt[..., :1, :])).norm(dim=-1).mean(-1)[k]
        switched = "" if first is None else f", {int((pose[:, 0, :, 0] - first).norm(dim=-1)[k].gt(1e-6).sum())} switched"
        first = pose[:, 0, :, 0] if first is None else first
        print(f"  {starts:2d} start(s): {int(k.sum())} hands; wrist {100 * werr.median():.1f} cm median, "
              f"{100 * werr.mean():.1f} mean; depth {depth.mean():.3f}; root-relative {100 * rel.mean():.2f} cm; "
              f"reprojection {px.mean():.2f} px{switched}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
