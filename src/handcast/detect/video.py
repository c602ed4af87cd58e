"""Reading video frames with PyAV, with one-line errors for files that cannot be decoded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from handcast.errors import HandcastError

__all__ = ["read_video"]


def _open(path: Path):
    import av

    try:
        container = av.open(str(path), mode="r")
    except Exception as e:  # av.error.InvalidDataError, FileNotFoundError, PermissionError ...
        raise HandcastError(f"{path}: cannot open as a video ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise HandcastError(f"{path}: no video stream found (not a video, or a video with no frames)")
    return container


def _quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns (0-3) that show a decoded PyAV frame as a player shows it, from the rotation
    of its display matrix (PyAV's ``VideoFrame.rotation``, counter-clockwise degrees); 0 where it has none."""
    degrees = float(getattr(frame, "rotation", 0) or 0)  # a PyAV without it: frames as stored
    return int(round(degrees / 90.0)) % 4 if np.isfinite(degrees) else 0


def upright(frame: np.ndarray, turns: int) -> np.ndarray:
    """An (H, W, 3) frame turned ``turns`` quarter turns counter-clockwise (contiguous)."""
    return np.ascontiguousarray(np.rot90(frame, int(turns) % 4)) if int(turns) % 4 else frame


def read_video(path: str | os.PathLike, max_frames: int | None = None
               ) -> tuple[Iterator[np.ndarray], float, tuple[int, int], int | None]:
    """Open a video and decode its first frame (so an empty or undecodable file fails here).

    Returns (frames, fps, (W, H), count): ``frames`` yields uint8 (H, W, 3) RGB arrays in order
    (at most ``max_frames``; the first one already decoded); ``fps`` from the stream's average
    rate (30 if unknown); ``count`` the stream's frame count when the container knows it, else
    None. Frames come upright: a video whose display matrix turns it (a phone's portrait video is stored
    landscape with a quarter turn in its metadata) is turned as a player shows it, and (W, H) is the upright
    size (:func:`upright`; mirroring in the display matrix is not applied). Raises HandcastError for a
    missing file, a file that is not a video, a video without frames, or a decoding error later
    on (raised by the iterator, naming the frame).
    """
    path = Path(path)
    if not path.is_file():
        raise HandcastError(f"video not found: {path}")
    if max_frames is not None and int(max_frames) < 1:
        raise HandcastError(f"max_frames must be at least 1, got {max_frames}")
    container = _open(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 30.0
    if not np.isfinite(fps) or fps <= 0:
        fps = 30.0
    count = int(stream.frames) if stream.frames else None
    if count is not None and max_frames is not None:
        count = min(count, int(max_frames))
    decoder = container.decode(stream)
    try:
        first_frame = next(decoder)
        turns = _quarter_turns(first_frame)
        first = upright(first_frame.to_ndarray(format="rgb24"), turns)
    except StopIteration:
        container.close()
        raise HandcastError(f"{path}: the video has no frames") from None
    except Exception as e:
        container.close()
        raise HandcastError(f"{path}: cannot decode the video ({type(e).__name__}: {e})") from None
    size = (int(first.shape[1]), int(first.shape[0]))

    def frames() -> Iterator[np.ndarray]:
        n = 0
        try:
            yield first
            n = 1
            while max_frames is None or n < int(max_frames):
                try:
                    frame = next(decoder)
                except StopIteration:
                    return
                except Exception as e:
                    raise HandcastError(f"{path}: decoding failed after frame {n} ({type(e).__name__}: {e})") from None
                yield upright(frame.to_ndarray(format="rgb24"), turns)
                n += 1
        finally:
            container.close()

    return frames(), fps, size, count
