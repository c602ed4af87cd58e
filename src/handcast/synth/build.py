"""Building a benchmark store: every split of a preset, written through ``ClipStoreWriter``.

Determinism: group ``g`` of split ``s`` (index ``i`` in :data:`SPLITS`) is generated from the seed
``(seed, i, g)`` alone, clips are written in (split, group, future) order, and torch runs
single-threaded while generating, so the same seed and preset give byte-identical data files
whatever the number of workers (``manifest.json`` differs only in its timestamps).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from handcast.data import ClipStoreWriter
from handcast.data.store import encode_image
from handcast.errors import HandcastError
from handcast.synth.generate import generate_futures
from handcast.synth.presets import SPLITS, Preset, get_preset

__all__ = ["build_benchmark", "make_group"]

JPEG_QUALITY = 95


@contextlib.contextmanager
def _torch_single_thread():
    """Run torch single-threaded inside the block (results then do not depend on the thread count)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def make_group(job: tuple) -> tuple[str, list]:
    """Generate one group: ``job = (seed, split, split_index, group, domain, futures, n_frames,
    image_size, hand_model)`` -> (split, [(clip without image, JPEG bytes or None), ...])."""
    seed, split, split_idx, g, domain, futures, n_frames, image_size, hand_model = job

    cid = f"{split}-{g:05d}"
    clips = generate_futures((seed, split_idx, g), domain, futures, n_frames=n_frames, image_size=image_size,
                             hand_model=hand_model, clip_id=cid)
    data = None
    out = []
    for c in clips:
        if c.image is not None and data is None:
            data = encode_image(c.image, "jpeg", JPEG_QUALITY)  # all futures share the first frame
        c.image = None
        out.append((c, data))
    return split, out


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _jobs(p: Preset, seed: int, hand_model: str) -> list[tuple]:
    jobs = []
    for i, split in enumerate(SPLITS):
        spec = p.splits[split]
        for g in range(spec.groups):
            jobs.append((int(seed), split, i, g, spec.domain, spec.futures, p.n_frames, p.image_size, hand_model))
    return jobs


def build_benchmark(
    preset: str | Preset,
    out: str | os.PathLike,
    seed: int = 0,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
    hand_model: str = "open",
) -> Path:
    """Generate the synthetic benchmark ``preset`` into the clip store ``out``; returns its path.

    Args:
        preset: a key of :data:`handcast.synth.PRESETS` ("smoke", "tiny", "paper"), or a :class:`Preset`
            (e.g. one of them with more training groups, :func:`handcast.synth.with_groups`).
        out: store folder (must not exist unless ``overwrite``).
        seed: non-negative int; the same seed and preset give byte-identical data files.
        overwrite: replace an existing store (only once the new one is complete).
        workers: processes generating clips (each with its own GL context, spawn start method);
            None = 1 for small presets, else min(2, CPU count). 0 or 1 = in this process.
        progress: show a tqdm progress bar (clips written).
        hand_model: "open" (default) or "mano" (needs the MANO files).
    Splits: lab_train, lab_val, lab_test, diverse_train, diverse_test, wild_test (test splits hold
    groups of several futures per first frame, sharing ``group_id``).
    """
    from tqdm import tqdm


    p = get_preset(preset)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise HandcastError(f"seed must be a non-negative integer, got {seed!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise HandcastError(f"output folder already exists: {out} (remove it or pass --overwrite)")
    jobs = _jobs(p, seed, hand_model)
    if workers is None:
        workers = 1 if p.n_clips < 100 else min(2, os.cpu_count() or 1)
    workers = max(1, int(workers))

    with ClipStoreWriter(out, overwrite=overwrite, image_format="jpeg", jpeg_quality=JPEG_QUALITY) as writer, \
            tqdm(total=p.n_clips, desc=f"synth {p.name}", unit="clip", disable=not progress) as bar:

        def write(result):
            split, items = result
            for clip, data in items:
                writer.add(split, clip, image_bytes=data)
                bar.update(1)

        if workers == 1:
            with _torch_single_thread():
                for job in jobs:
                    write(make_group(job))
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, initializer=_worker_init) as pool:
                for result in pool.imap(make_group, jobs, chunksize=2):
                    write(result)
    return out
