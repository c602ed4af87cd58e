"""mediapipe hands (the legacy ``solutions.hands`` graph of mediapipe 0.10.14) behind a numpy API.

Handedness. mediapipe's handedness classifier assumes a mirrored (selfie) image: on an ordinary
photo its label "Left" belongs to a right hand, and handcast swaps the labels. ``mirrored=True`` says
that the image or video is a selfie view (flipped left to right, as front cameras show it): it is
un-mirrored before detection, so the keypoints are those of the un-mirrored image (u -> W - 1 - u of the
given one) and each hand gets its owner's handedness and its owner's shape. (Until 2026-12-08 the keypoints
stayed in the given image with the owner's label: a right hand model was then fitted to a hand that
looks like a left one, which 2D allows only with the hand turned over in depth.)

Two detections with the same label. mediapipe reports for each hand the probability ``p`` of its
label. handcast gives the two detections of a frame the one-to-one assignment to (right, left)
with the larger likelihood ``P(A is h_A) * P(B is h_B)``, i.e. the more confident detection keeps
its label and the other becomes the other hand (its ``score`` is then ``1 - p``). In a video, when
both carry the same label and the previous frame had hands, the assignment that keeps each hand
closest to where it was (mean keypoint distance) wins instead. mediapipe finds at most 2 hands.
A whole video then goes through :func:`consistent_identities`: one hand found twice in a frame is kept once, and
each hand keeps the side its track votes for, so a label that flips for some frames does not move the hand into
the other slot (:func:`detect_video`, ``consistent=True``).

Keypoints. mediapipe's landmark order is the common 21-keypoint order. Its normalised image
coordinates span the image (0 = left edge, 1 = right edge); handcast converts them to pixel
coordinates with pixel centres on integers: ``u = x W - 0.5``, ``v = y H - 0.5``. There is no
per-keypoint confidence (``visibility`` and ``presence`` are always 0 in this graph), so each
keypoint carries its hand's handedness probability.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from handcast.conventions import LEFT, NUM_KEYPOINTS, RIGHT
from handcast.detect.types import HandDetections, Tracks
from handcast.errors import HandcastError

__all__ = ["HandDetector", "detect_image", "detect_video", "tile_levels", "INSTALL_HINT", "PHOTO_VARIANTS"]

INSTALL_HINT = "pip install handcast[detect]"
MEDIAPIPE_VERSION = "0.10.14"

_STATIC_CACHE: dict[tuple[float, int, int], "HandDetector"] = {}

#: Test-time variants of a photo that :func:`detect_image` averages the detector over
#: (:meth:`HandDetector.detect_variants`; measured in docs/pose.md, "Real photos with the detector").
PHOTO_VARIANTS = ("as_is", "mirrored", "upscaled", "padded")
#: Every variant :meth:`HandDetector.detect_variants` knows: :data:`PHOTO_VARIANTS` and the photo turned a quarter
#: turn clockwise / anticlockwise (a hand whose fingers point sideways or down, where mediapipe's palm detector is
#: weakest).
DETECTOR_VARIANTS = PHOTO_VARIANTS + ("turned_cw", "turned_ccw")
#: "padded": a black border of this fraction of the photo's longer side on each side.
PAD_FRACTION = 0.2
#: "upscaled" is skipped for photos whose longer side is above this (px): mediapipe shrinks them anyway.
MAX_UPSCALED_SIDE = 2048
#: Tiles (:meth:`HandDetector.detect_tiles`): the smallest tile side (px) and the most tiles on one photo.
#: mediapipe's palm detector sees the whole photo shrunk to 192 x 192 px and misses a hand below about a tenth of the
#: photo's size (docs/detect.md, "Small hands in large photos"); in a tile of half or a quarter of the photo the same
#: hand is two or four times larger.
TILE_MIN_SIDE = 256
TILE_MAX_COUNT = 48
#: A hand found by tiles takes the detection in its window whose keypoints' centre is within this many of its box
#: diagonals of its own (the tiles can place a small hand beside itself; a detection further off is another hand).
WINDOW_MATCH = 0.75
#: Two variants' detections are one hand below this mean keypoint distance, in hand box diagonals.
SAME_HAND_FRACTION = 0.5
#: Landmark passes on a photo after the first (:class:`HandDetector` ``retrack``). mediapipe's landmark model
#: sees a crop placed from the palm detector's box on the first pass; on each further pass the crop is placed from
#: its own previous landmarks, as on every frame of a video after the first. Measured in docs/detect.md
#: ("Re-tracking a photo"): the keypoints settle, the second re-track moving them by about 1 % of the hand's size
#: (median over the sample photos) and a third by under 1 %.
PHOTO_RETRACK = 2


def _box_diagonal(uv: np.ndarray) -> float:
    return float(np.linalg.norm(uv.max(0) - uv.min(0)))


def _same_hand_cost(found: list[np.ndarray], refs: list[np.ndarray]) -> np.ndarray:
    """(len(found), len(refs)) mean keypoint distance of each detection (21, 2) to each reference hand (21, 2), in the
    reference's box diagonals; inf where not below :data:`SAME_HAND_FRACTION` (not the same hand)."""
    cost = np.full((len(found), len(refs)), np.inf)
    for i, uv in enumerate(found):
        for j, ref in enumerate(refs):
            d = float(np.linalg.norm(uv - ref, axis=-1).mean()) / max(_box_diagonal(ref), 1.0)
            if d < SAME_HAND_FRACTION:
                cost[i, j] = d
    return cost


def _best_assignment(cost: np.ndarray) -> list[int | None]:
    """Detections (rows) to groups (columns), at most one detection per group, minimising the total cost with
    each unassigned detection costing :data:`SAME_HAND_FRACTION` (inf: not allowed). Exhaustive: a variant has
    at most two detections."""
    best: tuple[float, list[int | None]] = (np.inf, [None] * len(cost))

    def walk(i: int, used: frozenset, total: float, picked: list) -> None:
        nonlocal best
        if i == len(cost):
            if total < best[0]:
                best = (total, picked)
            return
        walk(i + 1, used, total + SAME_HAND_FRACTION, picked + [None])
        for g in range(cost.shape[1]):
            if g not in used and np.isfinite(cost[i, g]):
                walk(i + 1, used | {g}, total + float(cost[i, g]), picked + [g])

    walk(0, frozenset(), 0.0, [])
    return best[1]


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send file descriptor 2 to /dev/null for the duration: mediapipe's C++ (absl, TFLite) writes log lines
    ("INFO: Created TensorFlow Lite XNNPACK delegate", "W0000 ... inference_feedback_manager") straight to
    descriptor 2, past every Python logging setting. It is descriptor 2 itself that is silenced, not
    ``sys.stderr.fileno()``: under a capture (pytest's, a caller's redirect) sys.stderr is another descriptor
    and the native lines would still reach the terminal. Python's sys.stderr is flushed first and works
    again after."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 at all: nothing to silence
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


@contextlib.contextmanager
def _silenced_with_stream():
    """:func:`_native_stderr_silenced` for a long run, yielding a text stream for what must still be seen (a progress
    bar): Python's ``sys.stderr`` where it is not descriptor 2 (a capture), else a stream on the original descriptor 2.
    mediapipe's graph threads may log after a call returns (the video graph creates a model's delegate when it first
    needs it), so a per-call silence lets a line through now and then."""
    try:
        own = sys.stderr.fileno() != 2
    except (AttributeError, OSError, ValueError):
        own = True
    if own:
        with _native_stderr_silenced():
            yield sys.stderr
        return
    try:
        fd = os.dup(2)
    except OSError:
        yield sys.stderr
        return
    stream = os.fdopen(fd, "w", buffering=1)
    try:
        with _native_stderr_silenced():
            yield stream
    finally:
        stream.close()


def _hands_module():
    """mediapipe's legacy hands solution, imported on first use."""
    os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ log lines (set before its import)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import mediapipe as mp
    except ImportError as e:
        raise HandcastError(f"hand detection needs mediapipe {MEDIAPIPE_VERSION}, which is not installed ({e}); "
                            f"install it with `{INSTALL_HINT}`") from None
    except Exception as e:  # a broken install (binary incompatibility ...)
        raise HandcastError(f"mediapipe failed to import ({type(e).__name__}: {e}); reinstall it with "
                            f"`{INSTALL_HINT}`") from None
    try:
        from mediapipe.python.solutions import hands
    except Exception as e:
        raise HandcastError(f"mediapipe {getattr(mp, '__version__', '?')} has no legacy solutions.hands ({e}); "
                            f"handcast needs mediapipe=={MEDIAPIPE_VERSION}: `{INSTALL_HINT}`") from None
    return hands


def _check_image(image) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or a.shape[0] < 1 or a.shape[1] < 1:
        raise HandcastError(f"image must be an (H, W, 3) uint8 RGB array, got {a.shape} {a.dtype}")
    return np.ascontiguousarray(a)


#: palm detection threshold for photos (``video=False``): mediapipe's landmark stage checks every palm candidate
#: again (its hand-presence score), so a low threshold mostly adds hands; on the 16 annotated hands of the real sample
#: photos 0.1 finds all 16 with no extra hand (0.5: 14) and nothing on 30 hand-free crops of the real video
#: (``python scripts/real_detector_limits.py --detector-only`` and ``--hand-free``, docs/detect.md)
PHOTO_MIN_CONFIDENCE = 0.1
#: palm detection threshold for videos (mediapipe's default; the tracking graph re-detects when it loses a hand)
VIDEO_MIN_CONFIDENCE = 0.5


class HandDetector:
    """A mediapipe hands graph kept open for many images (``video=False``) or the frames of one
    video in order (``video=True``: detection, then tracking from frame to frame).

    min_confidence: palm detection threshold in [0, 1] (default :data:`PHOTO_MIN_CONFIDENCE` for photos,
    :data:`VIDEO_MIN_CONFIDENCE` for videos); min_tracking_confidence: below it the
    video graph re-runs palm detection; model_complexity: 0 (lite) or 1 (full landmark model).
    retrack (photos only; default :data:`PHOTO_RETRACK`): landmark passes after the first, each on a crop placed
    from the previous pass's landmarks; a hand the first pass found keeps its last landmarks, and a hand that
    appears only in a later pass is ignored. 0: one pass, mediapipe's static-image result.
    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, *, video: bool = False, mirrored: bool = False, min_confidence: float | None = None,
                 min_tracking_confidence: float = 0.5, model_complexity: int = 1, retrack: int | None = None):
        if min_confidence is None:
            min_confidence = VIDEO_MIN_CONFIDENCE if video else PHOTO_MIN_CONFIDENCE
        if retrack is None:
            retrack = 0 if video else PHOTO_RETRACK
        if isinstance(retrack, bool) or not isinstance(retrack, (int, np.integer)) or retrack < 0:
            raise HandcastError(f"retrack must be a whole number >= 0, got {retrack!r}")
        if video and retrack:
            raise HandcastError("retrack is for photos: a video's frames are tracked from the previous frame already")
        for name, v in (("min_confidence", min_confidence), ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= float(v) <= 1.0:
                raise HandcastError(f"{name} must be in [0, 1], got {v}")
        if model_complexity not in (0, 1):
            raise HandcastError(f"model_complexity must be 0 or 1, got {model_complexity}")
        hands = _hands_module()
        self.video = bool(video)
        self.mirrored = bool(mirrored)
        self.retrack = int(retrack)
        # a photo with re-tracking runs the tracking graph, reset before each photo: its first pass is the
        # static-image result (palm detection, then landmarks), the further passes track the same photo
        with _native_stderr_silenced():
            self._graph = hands.Hands(static_image_mode=not (self.video or self.retrack), max_num_hands=2,
                                      model_complexity=int(model_complexity),
                                      min_detection_confidence=float(min_confidence),
                                      min_tracking_confidence=float(min_tracking_confidence))
        self._prev: np.ndarray | None = None  # (2, 21, 2) previous frame's keypoints (video)

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None

    def __enter__(self) -> "HandDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self, image: np.ndarray):
        if self._graph is None:
            raise HandcastError("this HandDetector was closed")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protobuf deprecation warnings from inside mediapipe
            with _native_stderr_silenced():
                return self._graph.process(image)

    def _found(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """mediapipe on one image -> [(uv (21, 2) px, probability that it is a RIGHT hand)]; a photo is re-tracked
        :attr:`retrack` times."""
        if self.video or not self.retrack:
            return self._parse(self._run(image), image.shape)
        # the restarted graph's calculators log as they open, from its own threads: silence it until the first
        # result is back, by when every calculator has opened
        with _native_stderr_silenced():
            self._graph.reset()  # forget the previous photo's hands
            found = self._parse(self._run(image), image.shape)
        for _ in range(self.retrack):
            if not found:
                break
            later = self._parse(self._run(image), image.shape)
            cost = _same_hand_cost([uv for uv, _ in later], [uv for uv, _ in found]).T  # (found, later)
            found = [f if j is None else later[j] for f, j in zip(found, _best_assignment(cost))]
        return found

    @staticmethod
    def _parse(res, shape) -> list[tuple[np.ndarray, float]]:
        """One graph result of an ordinary (un-mirrored) image -> [(uv (21, 2) px, probability that it is a RIGHT
        hand)]."""
        H, W = shape[:2]
        found = []
        for lms, handed in zip(res.multi_hand_landmarks or (), res.multi_handedness or ()):
            uv = np.array([[p.x * W - 0.5, p.y * H - 0.5] for p in lms.landmark], np.float64)
            if uv.shape != (NUM_KEYPOINTS, 2) or not np.isfinite(uv).all():
                continue
            c = handed.classification[0]
            p = float(np.clip(c.score, 0.0, 1.0))
            # mediapipe labels as if the image were mirrored: its "Left" is a right hand here
            found.append((uv, p if c.label == "Left" else 1.0 - p))
        return found

    def _detections(self, found: list[tuple[np.ndarray, float]], size: tuple[int, int]) -> HandDetections:
        """Up to two found hands (most decided first) in their (right, left) slots."""
        out = HandDetections.empty(size)
        found = sorted(found, key=lambda d: -abs(d[1] - 0.5))[:2]  # most decided first
        slots = self._assign(found)
        for (uv, pr), h in zip(found, slots):
            out.uv[h] = uv
            out.present[h] = True
            out.score[h] = pr if h == RIGHT else 1.0 - pr
            out.confidence[h] = out.score[h]
        if self.video:
            if out.present.any():
                prev = self._prev if self._prev is not None else np.full((2, NUM_KEYPOINTS, 2), np.nan)
                self._prev = np.where(out.present[:, None, None], out.uv, prev)
        return out

    def detect(self, image: np.ndarray, mirrored: bool | None = None) -> HandDetections:
        """Detect up to two hands in an (H, W, 3) uint8 RGB image -> :class:`HandDetections`.

        mirrored: override the detector's setting for this image (a selfie view: the keypoints are those of
        the un-mirrored image; see the module docstring). In video mode, call it on consecutive frames of one video.
        """
        image = self._unmirrored(_check_image(image), mirrored)
        return self._detections(self._found(image), (image.shape[1], image.shape[0]))

    def _unmirrored(self, image: np.ndarray, mirrored: bool | None) -> np.ndarray:
        """The image to detect on: a selfie view (``mirrored``, else the detector's setting) flipped left to right."""
        if self.mirrored if mirrored is None else bool(mirrored):
            return np.ascontiguousarray(image[:, ::-1])
        return image

    def detect_variants(self, image: np.ndarray, variants: tuple[str, ...] = PHOTO_VARIANTS,
                        mirrored: bool | None = None) -> HandDetections:
        """Detect up to two hands in one photo, averaged over test-time variants of it.

        The detector runs on each variant (:data:`PHOTO_VARIANTS`: the photo as is; mirrored left to right,
        where a right hand appears as a left one; upscaled 2x by pixel repetition, skipped for photos over
        :data:`MAX_UPSCALED_SIDE` px; with a black border of :data:`PAD_FRACTION` of the longer side), and
        its keypoints are mapped back into the photo. The detections of all variants are grouped into
        hands, in the order of ``variants`` (:func:`_grouped_hands`: a variant's detections join the hands found by
        earlier variants, one detection per hand, by the assignment with the least total distance, mean keypoint
        distance in that hand's box diagonals, among pairs closer than :data:`SAME_HAND_FRACTION`). Each hand gets
        the mean of its keypoints and of its right-hand probabilities; the two hands seen by the most
        variants (then the most decided) go to their (right, left) slots as in :meth:`detect`. A hand
        seen by any one variant counts. Static-image graphs only.
        """
        if self.video:
            raise HandcastError("detect_variants is for photos; this HandDetector tracks a video")
        image = self._unmirrored(_check_image(image), mirrored)
        return self._detections(self._variants_found(image, _checked_variants(variants)),
                                (image.shape[1], image.shape[0]))

    def _variants_found(self, image: np.ndarray, variants: tuple[str, ...]) -> list[tuple[np.ndarray, float]]:
        """Up to two hands [(uv (21, 2) px, P(right))] of an (un-mirrored) photo from its ``variants``, grouped and
        averaged as :meth:`detect_variants` describes."""
        return _grouped_hands(self._variant_found(image, name) for name in dict.fromkeys(variants))

    def detect_tiles(self, image: np.ndarray, mirrored: bool | None = None,
                     variants: tuple[str, ...] | None = None) -> HandDetections:
        """Detect up to two hands in one photo from overlapping tiles of it: for hands too small for the whole photo.

        Tiles are squares of half the photo's longer side, then a quarter, and so on (at least
        :data:`TILE_MIN_SIDE` px, at most :data:`TILE_MAX_COUNT` tiles over all levels), each overlapping its
        neighbours by half, so that a hand up to half a tile across lies whole in one of them. The detector runs on
        every tile of a level (the tile as is, re-tracked as :meth:`detect`); the keypoints are mapped back into the
        photo and the tiles' detections grouped into hands as :meth:`detect_variants` groups its variants'. The first
        level that finds a hand gives the result: the two hands seen by the most tiles (then the most decided), each the
        mean of its tiles' keypoints. A photo whose longer side is under two :data:`TILE_MIN_SIDE` has no tiles, and
        gets no hands.

        variants: each hand found is detected again with these test-time variants in its own window of the photo
        (:meth:`_redetect_in_windows`); None: the tiles' own keypoints. Static-image graphs only."""
        if self.video:
            raise HandcastError("detect_tiles is for photos; this HandDetector tracks a video")
        image = self._unmirrored(_check_image(image), mirrored)
        H, W = image.shape[:2]
        found: list[tuple[np.ndarray, float]] = []
        for side, xs, ys in tile_levels(W, H):
            found = _grouped_hands(
                [(uv + np.array([x, y], np.float64), pr)
                 for uv, pr in self._found(np.ascontiguousarray(image[y:y + side, x:x + side]))]
                for y in ys for x in xs)
            if found:
                break
        if found and variants is not None:
            found = self._redetect_in_windows(image, found, _checked_variants(variants))
        return self._detections(found, (W, H))

    def _redetect_in_windows(self, image: np.ndarray, found: list[tuple[np.ndarray, float]],
                             variants: tuple[str, ...]) -> list[tuple[np.ndarray, float]]:
        """The hands ``found`` [(uv (21, 2) px, P(right))] in an (un-mirrored) photo, each detected again with the
        test-time ``variants`` in its own window of the photo (its keypoints' box widened by the box's longer side on
        each side, so that the hand fills about a third of it, as in an ordinary photo): the window's detection whose
        keypoints' centre is nearest the hand's, within :data:`WINDOW_MATCH` of its size, replaces its keypoints and
        right-hand probability (tiles can place a small hand beside itself; its window holds it); a hand its window
        does not find stays as found; a hand that two windows found is kept once, from the window where it moved
        least."""
        H, W = image.shape[:2]
        hands: list[tuple[np.ndarray, float, float]] = []  # (keypoints, P(right), how far its window moved it)
        for uv, pr in found:
            lo, hi = uv.min(0), uv.max(0)
            c, half = (lo + hi) / 2.0, 1.5 * float((hi - lo).max())
            x0, y0 = (int(np.clip(np.floor(v - half), 0, n)) for v, n in zip(c, (W, H)))
            x1, y1 = (int(np.clip(np.ceil(v + half) + 1, 0, n)) for v, n in zip(c, (W, H)))
            corner = np.array([x0, y0], np.float64)
            # the centres, not keypoint by keypoint: a tile may have read the hand as the other side, whose
            # landmarks run the other way across the palm
            near = [(float(np.linalg.norm((u + corner).mean(0) - uv.mean(0))), u + corner, p)
                    for u, p in self._variants_found(np.ascontiguousarray(image[y0:y1, x0:x1]), variants)]
            near = [m for m in near if m[0] < WINDOW_MATCH * _box_diagonal(uv)]
            moved = 0.0
            if near:
                moved, uv, pr = min(near, key=lambda m: m[0])
            hands.append((uv, pr, moved))
        kept: list[tuple[np.ndarray, float, float]] = []
        for uv, pr, moved in sorted(hands, key=lambda x: x[2]):  # one hand found by two windows: where it moved least
            size = _box_diagonal(uv)
            if all(float(np.linalg.norm(uv.mean(0) - u.mean(0))) >= SAME_HAND_FRACTION * size for u, _, _ in kept):
                kept.append((uv, pr, moved))
        return [(uv, pr) for uv, pr, _ in kept]

    def _variant_found(self, image: np.ndarray, name: str) -> list[tuple[np.ndarray, float]]:
        """The detector on one variant of the photo, keypoints in the photo's pixels, P(right) of the photo's hand."""
        H, W = image.shape[:2]
        if name == "as_is":
            return self._found(image)
        if name == "mirrored":
            out = []
            for uv, pr in self._found(np.ascontiguousarray(image[:, ::-1])):
                uv = uv.copy()
                uv[:, 0] = W - 1 - uv[:, 0]
                out.append((uv, 1.0 - pr))  # a mirrored right hand is a left hand
            return out
        if name == "turned_cw":  # np.rot90(k=-1): photo (x, y) -> (H - 1 - y, x)
            return [(np.stack([uv[:, 1], H - 1 - uv[:, 0]], -1), pr)
                    for uv, pr in self._found(np.ascontiguousarray(np.rot90(image, -1)))]
        if name == "turned_ccw":  # np.rot90(k=1): photo (x, y) -> (y, W - 1 - x)
            return [(np.stack([W - 1 - uv[:, 1], uv[:, 0]], -1), pr)
                    for uv, pr in self._found(np.ascontiguousarray(np.rot90(image, 1)))]
        if name == "upscaled":
            if max(H, W) > MAX_UPSCALED_SIDE:
                return []
            big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
            return [((uv + 0.5) / 2.0 - 0.5, pr) for uv, pr in self._found(big)]
        pad = max(1, round(PAD_FRACTION * max(H, W)))
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
        return [(uv - pad, pr) for uv, pr in self._found(padded)]

    def _assign(self, found) -> list[int]:
        if not found:
            return []
        if len(found) == 1:
            return [RIGHT if found[0][1] >= 0.5 else LEFT]
        (uva, pa), (uvb, pb) = found
        same_label = (pa >= 0.5) == (pb >= 0.5)
        if self.video and same_label and self._prev is not None:
            def cost(ha: int, hb: int) -> float:
                c = 0.0
                for uv, h in ((uva, ha), (uvb, hb)):
                    if np.isfinite(self._prev[h]).all():
                        c += float(np.linalg.norm(uv - self._prev[h], axis=-1).mean())
                return c
            return [RIGHT, LEFT] if cost(RIGHT, LEFT) <= cost(LEFT, RIGHT) else [LEFT, RIGHT]
        return [RIGHT, LEFT] if pa * (1.0 - pb) >= (1.0 - pa) * pb else [LEFT, RIGHT]


def _checked_variants(variants) -> tuple[str, ...]:
    """``variants`` as a tuple, or a one-line error unless they are a non-empty subset of :data:`DETECTOR_VARIANTS`."""
    variants = tuple(variants)
    unknown = [v for v in variants if v not in DETECTOR_VARIANTS]
    if unknown or not variants:
        raise HandcastError(f"detector variants must be a non-empty subset of {', '.join(DETECTOR_VARIANTS)}; "
                            f"got {', '.join(variants) or 'none'}")
    return variants


def _grouped_hands(batches: Iterable[list[tuple[np.ndarray, float]]]) -> list[tuple[np.ndarray, float]]:
    """Detections [(uv (21, 2) px, P(right))] of one photo from several passes (variants, tiles) grouped into hands:
    each pass's detections join the hands of the passes before, one detection per hand, by the assignment with the least
    total distance among pairs closer than :data:`SAME_HAND_FRACTION` (:func:`_same_hand_cost`), a detection left over
    starting a hand. Returns the two hands seen by the most passes (then the most decided), each the mean of its
    keypoints and of its right-hand probabilities."""
    groups: list[list[tuple[np.ndarray, float]]] = []
    for found in batches:
        cost = _same_hand_cost([uv for uv, _ in found], [np.mean([m[0] for m in g], 0) for g in groups])
        for hit, g in zip(found, _best_assignment(cost)):
            if g is None:
                groups.append([hit])
            else:
                groups[g].append(hit)
    groups.sort(key=lambda g: (-len(g), -abs(np.mean([m[1] for m in g]) - 0.5)))
    return [(np.mean([m[0] for m in g], 0), float(np.mean([m[1] for m in g]))) for g in groups[:2]]


def tile_levels(width: int, height: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """The tiles of :meth:`HandDetector.detect_tiles` on a ``width`` x ``height`` photo: per level (coarse to fine)
    the tile side (px) and the left and top edges (px) of its tiles, which cover the photo and overlap by half."""
    levels, total = [], 0
    side = max(width, height) // 2
    while side >= TILE_MIN_SIDE:
        s = min(side, width, height)
        side //= 2
        if s < TILE_MIN_SIDE:  # a strip narrower than the smallest tile
            break
        if levels and s == levels[-1][0]:  # a long, narrow photo: tiles as tall as the photo until the side is below
            continue
        edges = []
        for n in (width, height):
            k = int(np.ceil(max(n - s, 0) / (s / 2))) + 1
            edges.append(np.unique(np.round(np.linspace(0, n - s, k)).astype(int)))
        total += len(edges[0]) * len(edges[1])
        if total > TILE_MAX_COUNT:
            break
        levels.append((s, edges[0], edges[1]))
    return levels


def detect_image(image: np.ndarray, *, mirrored: bool = False, min_confidence: float | None = None,
                 model_complexity: int = 1, variants: tuple[str, ...] | None = PHOTO_VARIANTS,
                 retrack: int | None = None, tiles: bool = True) -> HandDetections:
    """Detect up to two hands in one image.

    image: uint8 (H, W, 3) RGB. mirrored: False for ordinary photos (handedness as seen by the
    camera), True for selfie-style flipped images (the keypoints are then those of the un-mirrored image, with
    their owners' handedness; see the module docstring). min_confidence: palm detection threshold (default
    :data:`PHOTO_MIN_CONFIDENCE`).
    variants: the test-time variants of the photo whose detections are averaged
    (:meth:`HandDetector.detect_variants`; default all of :data:`PHOTO_VARIANTS`, each detected and re-tracked);
    None or ``("as_is",)``: the photo as is only. retrack: landmark passes after the first on each variant
    (default :data:`PHOTO_RETRACK`; :class:`HandDetector`). tiles: where the photo finds no hand, look again in
    overlapping tiles of it (:meth:`HandDetector.detect_tiles`: hands too small for the detector in the whole
    photo, such as a hand in a whole phone photo), each hand found detected again with the ``variants`` in its own
    window of the photo.
    Returns :class:`HandDetections`: ``uv`` float32 (2, 21, 2) pixels, hands (right, left),
    common keypoint order, NaN where absent; ``present`` (2,); ``score`` (2,); ``confidence``
    (2, 21). The photo graph is created on the first call and reused (per threshold, model and ``retrack``).
    Raises HandcastError if mediapipe is not installed (``pip install handcast[detect]``) or the
    image is not (H, W, 3) uint8.
    """
    image = _check_image(image)
    min_confidence = PHOTO_MIN_CONFIDENCE if min_confidence is None else float(min_confidence)
    retrack = PHOTO_RETRACK if retrack is None else retrack
    key = (float(min_confidence), int(model_complexity), retrack)
    det = _STATIC_CACHE.get(key)
    if det is None:
        det = HandDetector(video=False, min_confidence=min_confidence, model_complexity=model_complexity,
                           retrack=retrack)
        _STATIC_CACHE[key] = det
    variants = None if variants is None or tuple(variants) == ("as_is",) else tuple(variants)
    out = det.detect(image, mirrored=mirrored) if variants is None else det.detect_variants(image, variants, mirrored)
    if tiles and not out.present.any():
        out = det.detect_tiles(image, mirrored=mirrored, variants=variants)
    return out


def _frames_source(path_or_frames, fps, max_frames):
    """-> (iterator of frames, fps, count or None)."""
    if isinstance(path_or_frames, (str, os.PathLike)):
        from handcast.detect.video import read_video

        frames, vfps, _, count = read_video(Path(path_or_frames), max_frames=max_frames)
        return frames, float(fps) if fps is not None else vfps, count
    if isinstance(path_or_frames, np.ndarray):
        if path_or_frames.ndim != 4:
            raise HandcastError(f"frames must be a video path, a (T, H, W, 3) uint8 array or a sequence of "
                                f"(H, W, 3) arrays, got an array of shape {path_or_frames.shape}")
        arr = path_or_frames if max_frames is None else path_or_frames[: int(max_frames)]
        return iter(arr), float(fps) if fps is not None else 30.0, len(arr)
    if isinstance(path_or_frames, Iterable):
        it = iter(path_or_frames)
        if max_frames is not None:
            import itertools

            it = itertools.islice(it, int(max_frames))
        count = len(path_or_frames) if hasattr(path_or_frames, "__len__") else None
        if count is not None and max_frames is not None:
            count = min(count, int(max_frames))
        return it, float(fps) if fps is not None else 30.0, count
    raise HandcastError(f"detect_video needs a video path or frames, got {type(path_or_frames).__name__}")


#: Two detections of one video frame with the same label and closer than this (mean keypoint distance, hand box
#: diagonals) are one hand found twice (:func:`consistent_identities`).
DUPLICATE_FRACTION = 0.25
#: A hand lost for more frames than this starts a new track (:func:`consistent_identities`).
TRACK_GAP = 10
#: A detection starts a new track when another track (or another detection) is within this factor of the distance
#: that links it to its track: where hands meet or cross, which is which is left to the labels of the new tracks.
AMBIGUOUS_RATIO = 2.0


def _log_odds(p: float) -> float:
    p = min(max(float(p), 0.02), 0.98)
    return float(np.log(p / (1.0 - p)))


def consistent_identities(uv: np.ndarray, valid: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, ...]:
    """Hands of a video kept in their (right, left) slots by their tracks, not by each frame's label.

    mediapipe labels each frame's hands afresh; in a video its label can flip for a few frames, or the same hand
    can be found twice in one frame, the less confident copy then put in the other slot (rendered synthetic videos,
    ``scripts/bench_lift_rendered.py``). A hand cannot change sides within a track, so:

    1. of two detections of a frame that mediapipe gave the same label and that lie closer than
       :data:`DUPLICATE_FRACTION` (one hand found twice), the more decided one stays;
    2. detections are linked into tracks frame by frame: each joins the track whose last detection (at most
       :data:`TRACK_GAP` frames back) is nearest, below :data:`SAME_HAND_FRACTION`, one detection per track,
       unless the link is ambiguous (another track or detection within :data:`AMBIGUOUS_RATIO` of that distance,
       as where hands meet or cross), when it starts a new track;
    3. each track takes the side that the sum of its frames' handedness log-odds favours; the most decided
       tracks choose first, and a track whose side is taken in any of its frames takes the other side if that
       is free throughout, else keeps its side where free and loses the rest.

    uv (T, 2, 21, 2) px, valid (T, 2) bool, score (T, 2) the probability that each detection is its slot's hand
    (0 where absent); a valid hand may lack some keypoints (NaN). Returns (uv, valid, score) of the same shapes; a
    detection that changes slot keeps its keypoints, and its score becomes its track's mean probability of the new
    side."""
    uv = np.asarray(uv, np.float32)
    valid = np.asarray(valid, bool)
    score = np.asarray(score, np.float32)
    T = uv.shape[0]
    # per frame: (keypoints to match by, a missing keypoint standing at the hand's mean; P(right); the keypoints
    # as given)
    dets: list[list[tuple[np.ndarray, float, np.ndarray]]] = []
    for t in range(T):
        fin = np.isfinite(uv[t]).all(-1)  # (2, 21)
        found = [(uv[t, h] if fin[h].all() else np.where(fin[h, :, None], uv[t, h], uv[t, h][fin[h]].mean(0)),
                  float(score[t, h]) if h == RIGHT else 1.0 - float(score[t, h]), uv[t, h])
                 for h in (RIGHT, LEFT) if valid[t, h] and fin[h].any()]
        if len(found) == 2:
            d = float(np.linalg.norm(found[0][0] - found[1][0], axis=-1).mean())
            same_label = (found[0][1] >= 0.5) == (found[1][1] >= 0.5)
            if same_label and d < DUPLICATE_FRACTION * max(_box_diagonal(found[0][0]), _box_diagonal(found[1][0]), 1.0):
                found = [max(found, key=lambda f: abs(f[1] - 0.5))]
        dets.append(found)
    tracks: list[dict] = []  # "items" [(frame, keypoints, P(right))], "last" frame, its keypoints "uv", "odds"
    live: list[int] = []  # tracks seen within TRACK_GAP frames
    for t, found in enumerate(dets):
        live = [k for k in live if t - tracks[k]["last"] <= TRACK_GAP]
        cost = _same_hand_cost([f[0] for f in found], [tracks[k]["uv"] for k in live])
        new_tracks: list[int] = []
        for i, (f, g) in enumerate(zip(found, _best_assignment(cost))):
            if g is not None:  # ambiguous (hands meeting or crossing): another track or detection nearly as close
                others = np.concatenate([np.delete(cost[i], g), np.delete(cost[:, g], i)])
                if (others < AMBIGUOUS_RATIO * cost[i, g]).any():
                    g = None
            if g is None:
                tracks.append({"items": [], "last": t, "uv": f[0]})
                tr = tracks[-1]
                new_tracks.append(len(tracks) - 1)
            else:
                tr = tracks[live[g]]
            tr["items"].append((t, f[2], f[1]))
            tr["last"], tr["uv"] = t, f[0]
        live += new_tracks
    for tr in tracks:
        tr["odds"] = sum(_log_odds(p) for _, _, p in tr["items"])
    out_uv = np.full_like(uv, np.nan)
    out_valid = np.zeros_like(valid)
    out_score = np.zeros_like(score)
    for tr in sorted(tracks, key=lambda tr: -abs(tr["odds"])):
        side = RIGHT if tr["odds"] >= 0 else LEFT
        frames = [t for t, _, _ in tr["items"]]
        if out_valid[frames, side].any() and not out_valid[frames, 1 - side].any():
            side = 1 - side
        mean_p = float(np.mean([p if side == RIGHT else 1.0 - p for _, _, p in tr["items"]]))
        for t, k, p in tr["items"]:
            if out_valid[t, side]:
                continue
            ps = p if side == RIGHT else 1.0 - p
            out_uv[t, side], out_valid[t, side] = k, True
            out_score[t, side] = ps if ps >= 0.5 else mean_p
    return out_uv, out_valid, out_score


def detect_video(path_or_frames, *, mirrored: bool = False, progress: bool = True,
                 min_confidence: float = VIDEO_MIN_CONFIDENCE,
                 min_tracking_confidence: float = 0.5, model_complexity: int = 1, fps: float | None = None,
                 max_frames: int | None = None, consistent: bool = True) -> Tracks:
    """Detect and track both hands through a video -> :class:`Tracks`.

    path_or_frames: a video file (decoded with PyAV), a uint8 (T, H, W, 3) RGB array, or an
    iterable of (H, W, 3) uint8 RGB frames of one size. Frames are processed in order by
    mediapipe's video graph (tracking between frames). Identity is by handedness (corrected for
    ``mirrored``, see the module docstring), voted over each hand's track (``consistent``); frames where a hand is not found have
    ``hand_valid`` false, NaN ``uv`` and 0 ``confidence``. fps: frames per second (default: the
    video's, or 30 for frames). max_frames: only the first frames. progress: a tqdm bar on stderr.
    consistent: keep each hand in its slot along its track (:func:`consistent_identities`; False: each frame's
    own labels). A video where no hand is ever found gives tracks with ``hand_valid`` all false.
    Raises HandcastError for an unreadable, undecodable or empty video, bad frames, or a missing
    mediapipe.
    """
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise HandcastError(f"fps must be positive, got {fps}")
    if max_frames is not None and int(max_frames) < 1:
        raise HandcastError(f"max_frames must be at least 1, got {max_frames}")
    _hands_module()  # fail early, before decoding, if mediapipe is missing
    frames, fps_used, count = _frames_source(path_or_frames, fps, max_frames)
    from tqdm import tqdm

    uv, valid, score = [], [], []
    size = None
    with _silenced_with_stream() as terminal, HandDetector(
            video=True, mirrored=mirrored, min_confidence=min_confidence,
            min_tracking_confidence=min_tracking_confidence, model_complexity=model_complexity) as det:
        for frame in tqdm(frames, total=count, disable=not progress, unit="frame", desc="detecting hands",
                          leave=False, file=terminal):
            frame = _check_image(frame)
            if size is None:
                size = (int(frame.shape[1]), int(frame.shape[0]))
            elif (frame.shape[1], frame.shape[0]) != size:
                raise HandcastError(f"all frames must have the same size: frame {len(uv)} is "
                                    f"{frame.shape[1]}x{frame.shape[0]}, the first {size[0]}x{size[1]}")
            d = det.detect(frame)
            uv.append(d.uv)
            valid.append(d.present)
            score.append(d.score)
    if not uv:
        raise HandcastError("the video has no frames")
    uv_t, valid_t, score_t = np.stack(uv).astype(np.float32), np.stack(valid), np.stack(score).astype(np.float32)
    if consistent:
        uv_t, valid_t, score_t = consistent_identities(uv_t, valid_t, score_t)
    conf_t = np.where(valid_t[..., None], score_t[..., None], 0.0).repeat(NUM_KEYPOINTS, -1).astype(np.float32)
    return Tracks(uv=uv_t, hand_valid=valid_t, confidence=conf_t, score=score_t, fps=float(fps_used),
                  image_size=size, mirrored=bool(mirrored))
