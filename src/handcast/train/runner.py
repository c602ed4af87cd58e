"""What every ``handcast train ...`` command shares: the run folder, the Lightning trainer, resuming.

A run folder holds Lightning's ``last.ckpt`` (weights + optimiser state, for ``--resume``), CSV logs and,
at the end, the handcast safetensors checkpoint ``<kind>.safetensors`` (weights + resolved config). A run
that trains several modules in turn (the pose cascade's stages) has a ``last_<name>.ckpt`` and
``logs/<name>/`` for each and writes its checkpoints itself.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from pathlib import Path

from handcast.diffusion import make_scheduler
from handcast.errors import HandcastError
from handcast.hand import HandModel
from handcast.io import file_in_the_way, make_dirs
from handcast.models.checkpoint import check_finite_state, read_training_state, safe_torch_load_env, save_checkpoint

#: the largest magnitude a training label may have (metres, pixels, intrinsics in pixels): anything above is
#: damage, not data
MAX_LABEL = 1e6


def cosine_lr_factor(total: int, warmup_frac: float = 0.05, floor: float = 0.1):
    """The learning-rate factor of optimiser step ``step`` (0-based) of a ``total``-step run: a linear warm-up
    over the first ``warmup_frac`` of the steps, then a cosine from 1 down to ``floor`` at the last step."""
    warm = max(1, int(total * warmup_frac))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        p = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))

    return f


def motion_lr_factor(t: dict):
    """The per-step learning-rate factor of a motion model's ``train`` section: None for ``lr_schedule:
    constant``, :func:`cosine_lr_factor` over ``max_steps`` down to ``lr_floor`` for ``cosine`` (the values
    are checked when the config is loaded)."""
    if t.get("lr_schedule", "constant") == "constant":
        return None
    return cosine_lr_factor(int(t["max_steps"]), floor=float(t.get("lr_floor", 0.1)))


def motion_module_base():
    """The LightningModule base of the motion diffusion models (lift, forecast): holds the model built from
    ``cfg["model"]`` by the subclass's ``build_model``, the hand model, the training (DDPM) scheduler and the
    ``train`` section; AdamW from ``train.lr`` / ``train.weight_decay``. Subclasses add the losses and steps."""
    import lightning as L
    import torch


    class MotionDiffusionModule(L.LightningModule):
        def __init__(self, cfg: dict, build_model):
            super().__init__()

            self.cfg = cfg
            self.model = build_model(cfg["model"])
            self.hands = HandModel("auto")
            self.scheduler_ = make_scheduler("ddpm", self.model.diffusion)
            self.tcfg = cfg["train"]

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.model.parameters(), lr=float(self.tcfg["lr"]),
                                    weight_decay=float(self.tcfg["weight_decay"]))
            factor = motion_lr_factor(self.tcfg)
            if factor is None:
                return opt
            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        def on_train_start(self):
            # a resumed run goes on with the config's learning rate (the restored optimiser and scheduler states
            # hold the old one); a schedule scales it by its factor at the restored step
            lr = float(self.tcfg["lr"])
            for c in self.trainer.lr_scheduler_configs:
                c.scheduler.base_lrs = [lr] * len(c.scheduler.base_lrs)
            factor = motion_lr_factor(self.tcfg)
            for opt in self.trainer.optimizers:
                for group in opt.param_groups:
                    group["lr"] = lr * (factor(self.trainer.global_step) if factor else 1.0)

    return MotionDiffusionModule


def check_run_folder(out: str | Path, resume: bool) -> Path:
    """The run folder ``out``, refused when it is not empty unless resuming (checked by the first process)."""
    run = Path(out)
    if run.exists() and not run.is_dir():
        raise HandcastError(f"run folder {run} is an existing file (give a folder for --out)")
    if (parent := file_in_the_way(run)) is not None:
        raise HandcastError(f"run folder {run}: {parent} is a file, not a folder")
    launched_rank = int(os.environ.get("LOCAL_RANK", "0")) + int(os.environ.get("NODE_RANK", "0"))
    if launched_rank == 0 and run.exists() and not resume and any(run.iterdir()):
        raise HandcastError(f"run folder {run} is not empty (pass --resume to continue it, or another --out)")
    return run


def prepare_run(out: str | Path, resume: bool, seed: int) -> Path:
    """Create the run folder (refusing a non-empty one unless resuming) and seed every generator."""
    import lightning as L

    run = check_run_folder(out, resume)
    make_dirs(run)
    if resume:  # the temporaries of a save a killed run left behind (last.ckpt itself is replaced atomically)
        for tmp in run.glob("last*.ckpt.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
    L.seed_everything(int(seed), workers=True, verbose=False)
    return run


def check_training_labels(view, fields=("pose", "transl", "joints3d", "kp2d", "kp2d_conf", "world_to_cam"),
                          clip_fields=("betas", "K")) -> None:
    """Refuse (one-line HandcastError naming the split, the array and the first bad clip) a store split
    (:class:`~handcast.data.store.SplitView`) whose float labels hold NaN, infinite or absurd (> ``MAX_LABEL``)
    values: a clip store has no NaN (unlabelled entries are 0), so these are damage. Streams the memory maps."""
    import numpy as np

    def first_bad(arr) -> int | None:
        flat = np.asarray(arr).reshape(len(arr), -1)
        for start in range(0, len(flat), 65536):
            chunk = flat[start:start + 65536]
            ok = np.isfinite(chunk) & (np.abs(chunk) <= MAX_LABEL)
            rows = np.flatnonzero(~ok.all(1))
            if rows.size:
                return start + int(rows[0])
        return None

    for name in clip_fields:
        row = first_bad(view.clip_field(name))
        if row is not None:
            raise HandcastError(f"split '{view.name}': labels '{name}' of clip {row} hold NaN, infinite or values "
                                f"beyond {MAX_LABEL:g}: the store is damaged (refusing to train on it)")
    offsets = view.frame_offsets
    for name in fields:
        base = 0
        for chunk in view.frame_chunks(name):
            row = first_bad(chunk)
            if row is not None:
                clip = int(np.searchsorted(offsets, base + row, side="right") - 1)
                raise HandcastError(f"split '{view.name}': labels '{name}' of clip {clip} hold NaN, infinite or "
                                    f"values beyond {MAX_LABEL:g}: the store is damaged (refusing to train on it)")
            base += len(chunk)


def finite_loss_callback():
    """A Lightning callback that stops training with a one-line HandcastError as soon as a training loss is
    NaN or infinite, before its backward pass and optimiser step (so nothing non-finite is saved)."""
    import lightning as L
    import torch

    class FiniteLoss(L.Callback):
        def on_before_backward(self, trainer, pl_module, loss):
            # before the gradients and the optimiser step: the weights in memory stay the last good ones
            if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
                raise HandcastError(f"training stopped: the loss became {float(loss.detach().float().mean())} "
                                    f"at step {trainer.global_step} (non-finite training labels or weights, or "
                                    "a learning rate too large); no checkpoint written for this step")

    return FiniteLoss()


def save_last_callback(path: str | Path, every_steps: int):
    """A Lightning callback that writes the full training state (weights, optimiser, loop) to ``path`` every
    ``every_steps`` optimiser steps and when training ends, atomically (temporary file, then rename), so a
    run killed at any moment resumes from its last save. (Lightning's ModelCheckpoint with ``save_top_k=0``
    writes ``last.ckpt`` only when it also saved a top-k checkpoint, i.e. never.)"""
    import lightning as L

    class SaveLast(L.Callback):
        def __init__(self):
            self.path, self.every, self.saved_at = Path(path), max(1, int(every_steps)), -1

        def _save(self, trainer):
            if trainer.global_step == self.saved_at:
                return
            tmp = self.path.with_name(self.path.name + ".tmp")
            trainer.save_checkpoint(tmp, weights_only=False)  # the optimiser state too, for --resume
            if trainer.is_global_zero:
                os.replace(tmp, self.path)
            trainer.strategy.barrier("save_last")
            self.saved_at = trainer.global_step

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step % self.every == 0:
                self._save(trainer)

        def on_train_end(self, trainer, pl_module):
            self._save(trainer)

    return SaveLast()


def fit(module, train_dl, val_dl, run: Path, t: dict, kind: str | None = None, model_cfg: dict | None = None,
        resume: bool = False, devices: int | str = 1, accelerator: str = "cpu", num_nodes: int = 1,
        strategy: str = "auto", progress: bool = True, name: str = "") -> Path | None:
    """Train ``module`` with the ``train`` config section ``t``: ``max_steps``, ``grad_clip``, ``val_every_steps``
    and optionally ``save_every_steps`` (how often the training state is saved; default ``val_every_steps``).

    kind: the module's ``.model`` is saved (by the global-zero process) with ``model_cfg`` as the handcast
    checkpoint ``<run>/<kind>.safetensors``, whose path is returned; None: the caller saves (None returned).
    name: for a run that trains several modules one after another (the pose cascade's stages), each one's
    training state is ``<run>/last_<name>.ckpt`` and its CSV logs ``<run>/logs/<name>/``."""
    import lightning as L

    last = run / (f"last_{name}.ckpt" if name else "last.ckpt")
    ckpt_cb = save_last_callback(last, int(t.get("save_every_steps", t["val_every_steps"])))
    with quiet_lightning(not progress):
        return _fit(L, module, train_dl, val_dl, run, t, kind, model_cfg, resume, devices, accelerator, num_nodes,
                    strategy, progress, last, ckpt_cb, name)


@contextlib.contextmanager
def quiet_lightning(quiet: bool = True):
    """While active (and ``quiet``), Lightning's informational lines ("GPU available", tips) and its
    warnings are not shown: ``--quiet`` means only handcast's own result lines and errors."""
    if not quiet:
        yield
        return
    names = ("lightning.pytorch", "lightning.fabric", "lightning")
    old = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"lightning(\.|$)")
            yield
    finally:
        for n, level in old.items():
            logging.getLogger(n).setLevel(level)


def _fit(L, module, train_dl, val_dl, run, t, kind, model_cfg, resume, devices, accelerator, num_nodes, strategy,
         progress, last, ckpt_cb, name):
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
        max_steps=int(t["max_steps"]), gradient_clip_val=float(t["grad_clip"]),
        val_check_interval=min(int(t["val_every_steps"]), int(t["max_steps"])), check_val_every_n_epoch=None,
        callbacks=[finite_loss_callback(), ckpt_cb], default_root_dir=str(run), enable_progress_bar=progress, enable_checkpointing=False,
        logger=L.pytorch.loggers.CSVLogger(str(run), name=f"logs/{name}" if name else "logs"),
        enable_model_summary=False, num_sanity_val_steps=0,
    )
    ckpt_path = None
    if resume and last.is_file():
        # handcast reads the state itself first (tensors and plain data only; one-line errors for a damaged,
        # planted or mismatched file), then Lightning restores it, again with weights_only=True
        read_training_state(last, module.state_dict())
        ckpt_path = str(last)
    with safe_torch_load_env():
        trainer.fit(module, train_dl, val_dl, ckpt_path=ckpt_path, weights_only=True)
    if kind is None:
        return None
    final = run / f"{kind}.safetensors"
    check_finite_state(module.model.state_dict(), f"training of {run}: the trained model")
    if trainer.is_global_zero:
        save_checkpoint(final, module.model, kind, model_cfg)
    return final
