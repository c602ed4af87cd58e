"""Training subcommands: ``train lift``, ``train forecast``, ``train pose`` and ``impute``."""

from __future__ import annotations

import argparse

from handcast.cli.common import (add_device, add_lightning, add_quiet, add_sampler, add_train, check_device, check_lightning,
                                 device_name, float_range, int_range)


def _lightning_options(args: argparse.Namespace) -> dict:
    """The keyword arguments train_lift and train_forecast share (the Lightning flags checked first)."""
    check_lightning(args)
    return dict(store=args.store, out=args.out, resume=args.resume, devices=args.devices, accelerator=args.accelerator,
                num_nodes=args.num_nodes, strategy=args.strategy, max_steps=args.max_steps, progress=not args.quiet)


def _say(line: str) -> None:
    """Print a result line once: under DDP every rank runs the command, only rank zero speaks."""
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:
        print(line)


def _train_lift(args: argparse.Namespace) -> None:
    from handcast.train.lift import train_lift

    _say(f"wrote checkpoint {train_lift(args.config, args.overrides, init=args.init, **_lightning_options(args))}")


def _train_forecast(args: argparse.Namespace) -> None:
    from handcast.train.forecast import train_forecast

    ck = train_forecast(args.config, args.overrides, init_backbone=args.init_backbone, **_lightning_options(args))
    _say(f"wrote checkpoint {ck}")


def _train_pose(args: argparse.Namespace) -> None:
    from handcast.train.pose import train_pose

    check_device(args.device)
    check_lightning(args)
    for k, p in train_pose(args.config, args.overrides, crops=args.crops, out=args.out, stages=args.stages,
                           resume=args.resume, device=args.device, devices=args.devices,
                           accelerator=args.accelerator, num_nodes=args.num_nodes, strategy=args.strategy,
                           init=args.init, progress=not args.quiet).items():
        _say(f"wrote {k} checkpoint {p}")


def _impute(args: argparse.Namespace) -> None:
    import json

    from handcast.fit.impute import impute

    check_device(args.device)
    summary = impute(args.ckpt, args.data, args.split, args.out, out_split=args.out_split, batch_size=args.batch_size,
                     sampler=args.sampler, steps=args.steps, iterations=args.iterations, tol=args.tol,
                     use_3d_labels=args.use_3d_labels, device=args.device, progress=not args.quiet, samples=args.samples,
                     keep=args.keep)
    print(json.dumps(summary, indent=1, default=str))


def _lightning_model(tsub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """``handcast train NAME`` of a Lightning-trained model on a clip store."""
    t = tsub.add_parser(name, help=help)
    add_train(t, "continue an interrupted run in --out", "config overrides, e.g. train.lr=1e-4")
    t.add_argument("--store", default=None, help="clip store to train on (overrides data.store)")
    t.add_argument("--max-steps", type=int_range(1, 10**9), default=None, help="overrides train.max_steps")
    add_lightning(t)
    return t


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("train", help="train a model (Lightning; CPU by default, DDP with --devices/--num-nodes)")
    tsub = s.add_subparsers(dest="model", metavar="MODEL")
    tsub.required = True
    t = _lightning_model(tsub, "lift", "the lifting model L (2D tracks + cameras -> 3D bimanual MANO motion)")
    t.add_argument("--init", default=None, metavar="PATH",
                   help="start from the weights of this lift checkpoint (fine-tuning; same model config)")
    t.set_defaults(func=_train_lift)
    t = _lightning_model(tsub, "forecast", "the forecasting model F (one image -> futures of both hands) or a "
                         "regressor baseline (model.head=regression)")
    t.add_argument("--init-backbone", default=None, metavar="PATH",
                   help="initialise the ViT from a HaMeR checkpoint (.ckpt or .safetensors, 'backbone.' entries)")
    t.set_defaults(func=_train_forecast)

    t = tsub.add_parser("pose", help="the cascaded diffusion hand pose estimator and its regressor baseline")
    add_train(t, "continue a run folder, skipping finished stages", "config overrides")
    t.add_argument("--crops", default=None, help="crop set folder (overrides data.crops; built when missing)")
    t.add_argument("--stages", nargs="+", choices=["ae", "joint", "mesh", "regressor"], default=None,
                   help="train only these stages (default: all)")
    t.add_argument("--device", type=device_name, default=None, help="cpu, cuda or cuda:1: shorthand for --accelerator/--devices "
                   "(kept from older versions)")
    t.add_argument("--init", default=None, metavar="PATH",
                   help="fine-tune: start from this pose checkpoint or run folder (its model config; its stages not "
                   "in --stages are kept, e.g. --stages joint re-trains stage 1 only)")
    add_lightning(t)
    t.set_defaults(func=_train_pose)

    s = sub.add_parser("impute", help="turn 2D-only clips into 3D labels: lifting model L + reprojection refinement")
    s.add_argument("--ckpt", required=True, help="lifting checkpoint (.safetensors from handcast train lift)")
    s.add_argument("--data", required=True, help="clip store to read")
    s.add_argument("--split", required=True, help="split of --data to impute")
    s.add_argument("--out", required=True, help="clip store to write (created, or appended to; resumable)")
    s.add_argument("--out-split", default=None, help="split name in --out (default: <split>_imputed)")
    s.add_argument("--batch-size", type=int_range(1, 65536), default=64, help="clips refined together (default 64)")
    add_sampler(s)
    s.add_argument("--samples", type=int_range(1, 64), default=1,
                   help="samples of L averaged per clip before the refinement (default 1; handcast lift draws 16)")
    s.add_argument("--keep", type=int_range(1, 64), default=None,
                   help="of those, average only the KEEP most consistent with the 2D keypoints, per frame, finger and "
                        "orientation (default: all; handcast lift keeps 2)")
    s.add_argument("--iterations", type=int_range(0, 10**6), default=1000, help="refinement iterations (default 1000)")
    s.add_argument("--tol", type=float_range(0), default=1e-4, help="refinement early-stop loss (default 1e-4; 0 = never)")
    s.add_argument("--use-3d-labels", action="store_true", help="also fit 3D keypoints where a clip has them")
    add_device(s)
    add_quiet(s)
    s.set_defaults(func=_impute)
