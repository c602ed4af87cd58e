"""Reading user images and cutting the 256 x 192 network input out of them.

Pixel coordinates follow docs/conventions.md: (u, v) = (column, row), the centre of the top-left pixel is
(0, 0), so a W x H image spans [-0.5, W - 0.5] x [-0.5, H - 0.5]. Crop boxes use the same coordinates.

* :func:`load_image` decodes any Pillow-readable file into RGB uint8 (H, W, 3), applying the EXIF
  orientation; it refuses non-images, corrupt files, tiny and huge images with a one-line HandcastError.
* :func:`exif_focal_px` reads a photo's camera from its EXIF (the 35 mm equivalent focal length that phones and
  most cameras record), for the commands that otherwise assume a field of view.
* :func:`crop_to_input` expands a box to the network's aspect (192 : 256, W : H) around its centre, resamples
  it to (3, 256, 192) with an antialiasing filter and normalises with ImageNet mean/std as HaMeR does.
  Where the box leaves the image the input is black (0, as HaMeR pads), i.e. -mean/std after
  normalisation. It also returns the affine map from input pixels to original pixels.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from handcast.errors import HandcastError

IMAGE_MEAN = (0.485, 0.456, 0.406)
"""ImageNet RGB mean of intensities in [0, 1] (HaMeR normalises its input with it)."""
IMAGE_STD = (0.229, 0.224, 0.225)
"""ImageNet RGB standard deviation of intensities in [0, 1]."""

INPUT_SIZE = (256, 192)
"""Network input (H, W) in pixels: 16 x 12 patches of 16 pixels."""

MIN_SIDE = 32
MAX_SIDE = 8192
MAX_PIXELS = 50_000_000

BACKGROUND_RGB = (255, 255, 255)
"""Colour transparent pixels are composited on by :func:`load_image` (white)."""


def _to_rgb8(img) -> np.ndarray:
    """Any Pillow image mode -> RGB uint8 (H, W, 3). Transparency is composited on white."""
    from PIL import Image

    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if mode == "F":
            hi = 1.0 if a.size and np.nanmax(a) <= 1.0 else 255.0
        elif mode == "I" and a.size and a.max() <= 255 and a.min() >= 0:
            hi = 255.0
        else:
            hi = 65535.0  # 16-bit samples (Pillow opens 16-bit greyscale PNG/TIFF as I;16 or I)
        g = np.clip(np.rint(np.nan_to_num(a) * (255.0 / hi)), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("L", "RGB") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND_RGB + (255,))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file -> RGB uint8 (H, W, 3), rows top to bottom, upright per its EXIF orientation.

    Greyscale, palette, CMYK and 16-bit images are converted to 8-bit RGB (16-bit samples scaled by 255 /
    65535); transparent pixels (RGBA, LA, palette transparency) are composited on white; of a multi-frame
    file (GIF, TIFF) the first frame is read. Raises HandcastError for a missing, unreadable, corrupt or
    non-image file and for images with a side below 32 or above 8192 pixels or more than 50 megapixels
    (the size is checked from the header, before decoding)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise HandcastError(f"image not found: {path}")
    if not path.is_file():
        raise HandcastError(f"not a file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                _check_size(path, w, h)
                img.seek(0)
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_rgb8(img)
    except HandcastError:
        raise
    except UnidentifiedImageError:
        if _is_heif(path):
            raise HandcastError(f"{path}: a HEIC/HEIF photo (an iPhone's default format), which this install cannot "
                                "decode; convert it to JPEG or PNG (e.g. heif-convert, or the phone's 'Most "
                                "Compatible' camera format)") from None
        raise HandcastError(f"not an image file (unrecognised format): {path}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise HandcastError(f"image too large: {path} (at most {MAX_PIXELS // 1_000_000} megapixels)") from None
    except PermissionError:
        raise HandcastError(f"cannot read image (permission denied): {path}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HandcastError(f"cannot decode image {path}: {msg}") from None


#: The diagonal of the 36 x 24 mm frame that "35 mm equivalent" focal lengths refer to, millimetres.
FULL_FRAME_DIAGONAL_MM = float(np.hypot(36.0, 24.0))
#: EXIF tags (Exif IFD 0x8769): FocalLengthIn35mmFilm (mm, an integer).
_EXIF_IFD, _FOCAL_35MM = 0x8769, 0xA405


def exif_focal_px(path: str | Path) -> tuple[float, float] | None:
    """The focal length in pixels of a photo's camera from its EXIF, or None where the file records none.

    Phones and most cameras record the lens as a 35 mm equivalent focal length (EXIF FocalLengthIn35mmFilm):
    the focal length that gives a full-frame camera the same diagonal field of view. So the focal length in
    pixels is f35 x (the image's diagonal in pixels) / 43.27 mm; it does not depend on the EXIF orientation
    or on a uniform resize of the photo (a crop changes it: a cropped photo keeps its original's EXIF, and then
    the focal length is too short). Returns (focal px, f35 mm), or None when the tag is absent, zero or
    unreadable, or implies a field of view across the longer side outside 5-170 degrees."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
            f35 = img.getexif().get_ifd(_EXIF_IFD).get(_FOCAL_35MM)
    except Exception:  # noqa: BLE001 -- an unreadable EXIF is a photo without a camera, not an error
        return None
    try:
        f35 = float(f35)
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(f35) and f35 > 0):
        return None
    f = f35 * float(np.hypot(w, h)) / FULL_FRAME_DIAGONAL_MM
    fov = float(np.degrees(2.0 * np.arctan(0.5 * max(w, h) / f)))
    if not 5.0 <= fov <= 170.0:
        return None
    return f, f35


def photo_camera(path: str | Path | None, fov: float | None = None, K=None,
                 focal: float | None = None) -> tuple[float | None, str]:
    """Which camera a photo gets: (focal px or None, what it is, one line).

    The options as :func:`handcast.geometry.resolve_intrinsics` takes them (``K`` a matrix or a K.json path,
    ``fov`` degrees across the longer side, ``focal`` px; at most one: ``resolve_intrinsics`` checks them, this
    does not). With none of them
    the photo's EXIF focal length (:func:`exif_focal_px`; ``path`` None: none) becomes ``focal``; else the
    focal stays None, the default field of view. Pass the returned focal with the other two options on."""
    from handcast.conventions import DEFAULT_FOV_DEG

    if K is not None:
        return focal, f"intrinsics {K}" if isinstance(K, (str, Path)) else "the given intrinsics"
    if fov is not None:
        return focal, f"{fov:g} degrees across the longer side (--fov)"
    if focal is not None:
        return focal, f"focal length {focal:g} px"
    exif = exif_focal_px(path) if path is not None else None
    if exif is not None:
        f, f35 = exif
        return f, f"the photo's EXIF: {f35:g} mm 35 mm-equivalent focal length, f = {f:.0f} px"
    return None, f"default: {DEFAULT_FOV_DEG:g} degrees across the longer side"


def unmirror_photo(img: np.ndarray, kps=None, intrinsics=None):
    """A selfie (mirrored) photo as its un-mirrored self: (image flipped left to right, keypoints (uv, conf) or
    None with u -> W - 1 - u and their stated handedness kept (a keypoints file of a selfie names each hand's
    owner, as the detector does with ``mirrored``), intrinsics or None with cx -> W - 1 - cx (a K.json becomes its
    matrix))."""
    W = img.shape[1]
    img = np.ascontiguousarray(img[:, ::-1])
    if kps is not None:
        uv = np.array(kps[0], np.float64, copy=True)
        uv[..., 0] = (W - 1) - uv[..., 0]
        kps = (uv, kps[1])
    if intrinsics is not None:
        from handcast.geometry import resolve_intrinsics

        K = resolve_intrinsics((W, img.shape[0]), K=intrinsics).copy()
        K[0, 2] = (W - 1) - K[0, 2]
        intrinsics = K
    return img, kps, intrinsics


def _is_heif(path: Path) -> bool:
    """The file starts as an ISO-BMFF HEIF/AVIF image does (an 'ftyp' box of an image brand)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1",
                                                    b"msf1", b"avif")


def _check_size(path: Path, w: int, h: int) -> None:
    if min(w, h) < MIN_SIDE:
        raise HandcastError(f"image too small: {path} is {w} x {h} pixels (each side must be at least {MIN_SIDE})")
    if max(w, h) > MAX_SIDE or w * h > MAX_PIXELS:
        raise HandcastError(
            f"image too large: {path} is {w} x {h} pixels (at most {MAX_SIDE} per side and "
            f"{MAX_PIXELS // 1_000_000} megapixels; downscale it first)"
        )


def expand_box(box, size: tuple[int, int] = INPUT_SIZE, scale: float = 1.0) -> np.ndarray:
    """Grow box (x0, y0, x1, y1) (pixels, conventions above) about its centre to the W : H aspect of size
    (H, W), then scale both sides by ``scale``. Returns (4,) float64 (x0, y0, x1, y1)."""
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.all(np.isfinite(b)):
        raise HandcastError(f"box must be 4 finite numbers (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = b
    if x1 <= x0 or y1 <= y0:
        raise HandcastError(f"box must have x1 > x0 and y1 > y0, got {tuple(float(v) for v in b)}")
    if not (np.isfinite(scale) and scale > 0):
        raise HandcastError(f"box scale must be positive, got {scale}")
    aspect = size[1] / size[0]  # W / H
    w, h = x1 - x0, y1 - y0
    if w / h > aspect:
        h = w / aspect
    else:
        w = h * aspect
    w, h = w * scale, h * scale
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def crop_to_input(image: np.ndarray, box=None, size: tuple[int, int] = INPUT_SIZE, *, scale: float = 1.0):
    """Cut the network input out of an image.

    image: (H, W, 3) uint8 RGB (from :func:`load_image`; (H, W) greyscale and (H, W, 4) RGBA are accepted,
    alpha composited on white). box: (x0, y0, x1, y1) in original pixels (conventions above), expanded to
    the input aspect about its centre and scaled by ``scale`` (:func:`expand_box`); None = the whole image,
    centred and padded (letterboxed) to the input aspect, never distorted. size: input (H, W).

    Returns (tensor (3, H_in, W_in) float32 on CPU, RGB normalised as (x / 255 - IMAGE_MEAN) / IMAGE_STD;
    affine (2, 3) float64 mapping input pixel (u, v, 1) -> original pixel (u, v), both in the pixel
    convention above). Resampling is Pillow's antialiased bicubic filter; outside the image the input is
    black before normalisation."""
    import torch
    from PIL import Image

    img = _as_rgb_array(image)
    ih, iw = img.shape[:2]
    oh, ow = int(size[0]), int(size[1])
    if oh < 1 or ow < 1:
        raise HandcastError(f"input size must be positive (H, W), got {size}")
    if box is None:
        box = (-0.5, -0.5, iw - 0.5, ih - 0.5)
    x0, y0, x1, y1 = expand_box(box, (oh, ow), scale)
    s = (x1 - x0) / ow  # original pixels per input pixel (equal in x and y after expand_box)

    # Pillow works in corner coordinates (pixel i covers [i, i + 1)): add 0.5 to our centre coordinates.
    X0, Y0 = x0 + 0.5, y0 + 0.5
    # output pixels whose footprint meets the image
    eps = 1e-9
    k0 = max(0, int(np.floor((0.0 - X0) / s + eps)))
    k1 = min(ow, int(np.ceil((iw - X0) / s - eps)))
    r0 = max(0, int(np.floor((0.0 - Y0) / s + eps)))
    r1 = min(oh, int(np.ceil((ih - Y0) / s - eps)))
    if k1 <= k0 or r1 <= r0:
        raise HandcastError(f"crop box {tuple(round(float(v), 2) for v in box)} does not overlap the "
                            f"{iw} x {ih} image")
    # source rectangle of those output pixels, then an integer window around it with room for the filter
    # tails; Pillow's crop fills outside the image with black.
    sx0, sx1 = X0 + k0 * s, X0 + k1 * s
    sy0, sy1 = Y0 + r0 * s, Y0 + r1 * s
    margin = int(np.ceil(2 * max(s, 1.0))) + 2
    wx0, wy0 = int(np.floor(sx0)) - margin, int(np.floor(sy0)) - margin
    wx1, wy1 = int(np.ceil(sx1)) + margin, int(np.ceil(sy1)) + margin
    window = Image.fromarray(img).crop((wx0, wy0, wx1, wy1))
    part = window.resize((k1 - k0, r1 - r0), Image.Resampling.BICUBIC,
                         box=(sx0 - wx0, sy0 - wy0, sx1 - wx0, sy1 - wy0))
    out = np.zeros((oh, ow, 3), dtype=np.uint8)
    out[r0:r1, k0:k1] = np.asarray(part)

    x = out.astype(np.float32) / 255.0
    x = (x - np.asarray(IMAGE_MEAN, np.float32)) / np.asarray(IMAGE_STD, np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
    # input pixel centre u_in covers corner coords [u_in, u_in + 1) -> original corner X0 + (u_in + 0.5) s
    affine = np.array([[s, 0.0, x0 + 0.5 * s], [0.0, s, y0 + 0.5 * s]])
    return tensor, affine


def _as_rgb_array(image) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise HandcastError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got shape {np.shape(image)}")
    if a.dtype != np.uint8:
        raise HandcastError(f"image must be uint8 (0..255), got {a.dtype} (load files with load_image)")
    if min(a.shape[:2]) < 1:
        raise HandcastError(f"image is empty: shape {a.shape}")
    if a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    if a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        rgb = a[..., :3].astype(np.float32) * alpha + np.asarray(BACKGROUND_RGB, np.float32) * (1.0 - alpha)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def _check_affine(affine) -> np.ndarray:
    A = np.asarray(affine, dtype=np.float64)
    if A.shape != (2, 3) or not np.all(np.isfinite(A)):
        raise HandcastError(f"affine must be a finite (2, 3) matrix, got shape {np.shape(affine)}")
    return A


def uncrop_points(uv_crop, affine) -> np.ndarray:
    """Input-crop pixels (..., 2) (u, v) -> original-image pixels (..., 2), via ``affine`` (2, 3) from
    :func:`crop_to_input`. Accepts numpy arrays or anything array-like; returns float64."""
    A = _check_affine(affine)
    p = np.asarray(uv_crop, dtype=np.float64)
    if p.shape[-1:] != (2,):
        raise HandcastError(f"points must have shape (..., 2), got {p.shape}")
    return p @ A[:, :2].T + A[:, 2]


def crop_points(uv, affine) -> np.ndarray:
    """Inverse of :func:`uncrop_points`: original-image pixels (..., 2) -> input-crop pixels (..., 2)."""
    A = _check_affine(affine)
    M = A[:, :2]
    if abs(np.linalg.det(M)) < 1e-12:
        raise HandcastError("affine is singular")
    p = np.asarray(uv, dtype=np.float64)
    if p.shape[-1:] != (2,):
        raise HandcastError(f"points must have shape (..., 2), got {p.shape}")
    return (p - A[:, 2]) @ np.linalg.inv(M).T


def input_to_image(tensor) -> np.ndarray:
    """Undo the normalisation: (3, H, W) float tensor/array -> RGB uint8 (H, W, 3), e.g. for overlays."""
    x = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
    if x.ndim != 3 or x.shape[0] != 3:
        raise HandcastError(f"input must have shape (3, H, W), got {x.shape}")
    rgb = x.transpose(1, 2, 0) * np.asarray(IMAGE_STD) + np.asarray(IMAGE_MEAN)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
