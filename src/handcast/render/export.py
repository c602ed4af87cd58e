"""Hand meshes of a result, one file per frame (OBJ, GLB or PLY) through trimesh.

The result is the one the viewer reads (docs/viewer.md): ``vertices`` + ``faces``, or MANO
parameters ``pose`` + ``transl`` + ``betas`` from which meshes are computed with
``HandModel(hand_model or "auto")``. Each file holds both hands of one frame (only the valid
ones), coloured with ``conventions.HAND_COLORS`` (right blue, left pink) as vertex colours.

Coordinates are metres. OBJ and PLY keep handcast's frame-0 camera frame (OpenCV: x right,
y down, z forward); GLB is written in glTF's y-up frame ``(x, -y, -z)`` (the same camera seen
by a y-up viewer), unless ``y_up`` says otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handcast.conventions import HAND_COLORS, HANDS
from handcast.errors import HandcastError
from handcast.io import atomic_outputs, check_output_dir
from handcast.render.viewer import read_result

__all__ = ["export_meshes", "FORMATS"]

FORMATS = ("obj", "glb", "ply")


def _frame_mesh(verts: np.ndarray, faces, valid: np.ndarray):
    """[(name, trimesh.Trimesh)] for the valid hands of one frame, in hand order (right, left)."""
    import trimesh

    out = []
    for h, name in enumerate(HANDS):
        if not valid[h]:
            continue
        v = np.asarray(verts[h], np.float64)
        color = np.array(list(HAND_COLORS[h]) + [255], np.uint8)
        m = trimesh.Trimesh(vertices=v, faces=np.asarray(faces[h], np.int64),
                            vertex_colors=np.broadcast_to(color, (len(v), 4)).copy(), process=False)
        out.append((f"{name}_hand", m))
    return out


def _export_bytes(parts, fmt: str) -> bytes:
    import trimesh

    if fmt == "glb":
        scene = trimesh.Scene()
        for name, m in parts:
            scene.add_geometry(m, geom_name=name, node_name=name)
        return trimesh.exchange.gltf.export_glb(scene)
    if len(parts) == 1:
        mesh = parts[0][1]
    else:
        mesh = trimesh.util.concatenate([m for _, m in parts])
    if fmt == "obj":
        text = trimesh.exchange.obj.export_obj(mesh, include_normals=False, include_color=True,
                                               include_texture=False, digits=7, header="handcast hand meshes")
        return text.encode("utf-8")
    return trimesh.exchange.ply.export_ply(mesh, encoding="binary", vertex_normal=False)


def export_meshes(result, out_dir: str | Path, fmt: str = "obj", frames=None, sample: int = 0, *,
                  clip: int = 0, y_up: bool | None = None, prefix: str = "frame") -> list[Path]:
    """Write one mesh file per frame (both hands, vertex-coloured) and return their paths.

    result: path to a result ``.npz`` or a mapping of arrays (docs/viewer.md): ``vertices``
    (.., T, 2, V, 3) + ``faces`` (F, 3) / (2, F, 3), or ``pose`` (.., T, 2, 16, 3) flat
    axis-angle + ``transl`` (.., T, 2, 3) + ``betas`` (2, 10); metres, frame-0 camera, hands
    (right, left); optional ``hand_valid`` (T, 2) / (S, T, 2). fmt: "obj", "glb" or "ply".
    frames: frame indices (negative counts from the end; default all). sample: which sample of
    an (S, T, ...) result. clip: which clip of a file with ``clip_ids``. y_up: convert to the
    y-up frame (x, -y, -z); default True for GLB, False for OBJ and PLY.
    Files are ``out_dir/{prefix}_{t:05d}.{fmt}`` with t the frame index, written into a temporary folder and
    all moved into place together when complete; frames where neither hand is valid are skipped (no file). On an error
    nothing is written. Raises HandcastError for bad input.
    """
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise HandcastError(f"unknown mesh format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not prefix or "/" in prefix or "\\" in prefix:
        raise HandcastError(f"prefix must be a plain file name prefix, got {prefix!r}")
    r = read_result(result, clip=clip, need_meshes=True)
    S, T = r.num_samples, r.num_frames
    if not -S <= int(sample) < S:
        raise HandcastError(f"sample {sample} out of range for {S} sample(s)")
    s = int(sample) % S
    if frames is None:
        idx = list(range(T))
    else:
        try:
            idx = [int(t) for t in np.atleast_1d(np.asarray(frames)).tolist()]
        except (TypeError, ValueError):
            raise HandcastError(f"frames must be integers, got {frames!r}") from None
        bad = [t for t in idx if not -T <= t < T]
        if bad:
            raise HandcastError(f"frame {bad[0]} out of range for {T} frames")
        idx = [t % T for t in idx]
    if y_up is None:
        y_up = fmt == "glb"
    flip = np.diag([1.0, -1.0, -1.0]) if y_up else np.eye(3)
    out_dir = check_output_dir(out_dir)
    written: list[Path] = []
    with atomic_outputs(out_dir) as tmp:  # all meshes appear together (a killed run leaves none)
        for t in idx:
            ok = r.valid[s, t]
            if not ok.any():
                continue
            verts = r.vertices[s, t] @ flip.T
            data = _export_bytes(_frame_mesh(verts, r.faces, ok), fmt)
            name = f"{prefix}_{t:05d}.{fmt}"
            (tmp / name).write_bytes(data)
            if out_dir / name not in written:
                written.append(out_dir / name)
        if not written:  # an empty folder reported as success would look like a finished export
            raise HandcastError(f"no mesh to write: no hand is valid in the {len(idx)} selected frame(s)")
    return written
