"""2D hand detection on images and videos (mediapipe hands; optional extra ``detect``).

Install with ``pip install handcast[detect]`` (mediapipe 0.10.14, whose wheel ships the hand
models, so detection runs offline). Importing this package imports neither mediapipe nor PyAV;
they are loaded on the first call.

Conventions: keypoints are pixels (u, v) (u right, v down, pixel ``image[j, i]`` centred at
(i, j)) in the common 21-keypoint order, hand axis (right, left), NaN where a hand is absent.
Handedness is reported for the hand itself: by default images are taken as ordinary
(non-mirrored) photos; pass ``mirrored=True`` for selfie-style (horizontally flipped) images.

  detect_image(image, mirrored=False, min_confidence=None) -> HandDetections  (None: PHOTO_MIN_CONFIDENCE, 0.1;
      test-time variants averaged; tiles of a large photo where the whole photo finds no hand)
  detect_video(path_or_frames, mirrored=False, progress=True, ...) -> Tracks
  consistent_identities(uv, valid, score) -> (uv, valid, score)  (track-level sides; detect_video applies it)
  read_video(path, max_frames=None) -> (frames iterator, fps, (W, H), frame count or None)
"""

from handcast.detect.types import HandDetections, Tracks
from handcast.detect.hands import HandDetector, consistent_identities, detect_image, detect_video
from handcast.detect.video import read_video

__all__ = ["HandDetections", "Tracks", "HandDetector", "consistent_identities", "detect_image", "detect_video",
           "read_video"]
