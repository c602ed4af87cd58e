"""Plain ViT image encoder whose parameters carry the names and shapes of HaMeR's ViTPose backbone.

HaMeR (Pavlakos et al. 2024) encodes a 256 x 192 (H x W) hand crop with the ViT-H/16 of ViTPose. This
module re-implements that network with torch alone, so the ``backbone.*`` entries of a HaMeR checkpoint
load into :class:`ViT` unchanged once the ``backbone.`` prefix is stripped (:func:`load_backbone`).

Architecture facts that the parameter layout depends on (ViTPose / HaMeR):
  * ``patch_embed.proj``: Conv2d(3, C, kernel 16, stride 16, padding 2). With 2 pixels of zero padding
    a 256 x 192 image still gives a 16 x 12 grid (floor((256 + 4 - 16) / 16) + 1 = 16, same for 12).
  * ``pos_embed`` (1, 1 + 192, C): slot 0 belongs to a class token the backbone never uses; instead of
    being dropped it is ADDED to every patch token together with that patch's own position.
  * pre-norm blocks ``blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, LayerNorm eps
    1e-6, exact GELU, fused qkv laid out [q | k | v] with heads contiguous inside each; ``last_norm``.
  * no class token parameter, no head.

Tokens come out in row-major grid order: token ``r * 12 + c`` is the patch in grid row r (0 at the top)
and column c (0 at the left). ``tokens.transpose(1, 2).reshape(B, C, 16, 12)`` is HaMeR's feature map.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from handcast.errors import HandcastError
from handcast.models.checkpoint import check_finite_state, compare_state, name_list, sniff_checkpoint

LAYER_NORM_EPS = 1e-6
"""ViTPose builds every LayerNorm with eps 1e-6 (not torch's default 1e-5)."""


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of :class:`ViT`. ``huge()`` is HaMeR's ViT-H/16; ``tiny()`` is a CPU-sized stand-in.

    img_size is (H, W) in pixels; patch_padding is the zero padding of the patch convolution in pixels;
    drop_path_rate is the stochastic-depth rate of the last block (linearly 0 -> rate over the blocks).
    """

    img_size: tuple[int, int] = (256, 192)
    patch_size: int = 16
    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.55
    patch_padding: int = 2

    def __post_init__(self):
        object.__setattr__(self, "img_size", tuple(int(s) for s in self.img_size))
        if len(self.img_size) != 2 or min(self.img_size) < self.patch_size:
            raise HandcastError(f"ViTConfig.img_size must be (H, W) of at least one patch, got {self.img_size}")
        if self.embed_dim % self.num_heads:
            raise HandcastError(f"ViTConfig.embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        conv = tuple((s + 2 * self.patch_padding - self.patch_size) // self.patch_size + 1 for s in self.img_size)
        if conv != self.grid:
            raise HandcastError(
                f"ViTConfig patch_padding {self.patch_padding} gives a {conv[0]} x {conv[1]} grid, "
                f"not {self.grid[0]} x {self.grid[1]}"
            )
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise HandcastError(f"ViTConfig.drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (rows, columns): (16, 12) for 256 x 192 images."""
        return (self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @classmethod
    def huge(cls) -> "ViTConfig":
        """HaMeR's backbone: ViT-H/16, width 1280, 32 blocks, 16 heads, MLP ratio 4, drop path 0.55."""
        return cls()

    @classmethod
    def tiny(cls) -> "ViTConfig":
        return cls(embed_dim=128, depth=4, num_heads=4, drop_path_rate=0.0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["img_size"] = list(self.img_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ViTConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise HandcastError(f"unknown ViTConfig field(s): {', '.join(unknown)}")
        return cls(**d)


def _drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a residual branch per sample with probability p, rescale the survivors."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class PatchEmbed(nn.Module):
    """Images (B, 3, H, W) -> patch tokens (B, rows * cols, C) via one strided convolution ``proj``."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size,
                              padding=cfg.patch_padding)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection and an output ``proj``."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1 / sqrt(head width)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), each with stochastic depth."""

    def __init__(self, cfg: ViTConfig, drop_path: float):
        super().__init__()
        dim = cfg.embed_dim
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, cfg.num_heads, cfg.qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + _drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + _drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class ViT(nn.Module):
    """ViTPose/HaMeR backbone: normalised images (B, 3, H, W) -> patch tokens (B, rows * cols, C).

    Set ``grad_checkpointing = True`` to recompute block activations in the backward pass (saves memory
    when fine-tuning ViT-H; no effect in eval or under no_grad).
    """

    def __init__(self, cfg: ViTConfig | None = None):
        super().__init__()
        cfg = cfg or ViTConfig.huge()
        self.config = cfg
        self.grad_checkpointing = False
        self.patch_embed = PatchEmbed(cfg)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches + 1, cfg.embed_dim))
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(Block(cfg, r) for r in rates)
        self.last_norm = nn.LayerNorm(cfg.embed_dim, eps=LAYER_NORM_EPS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """ViTPose's initialisation: truncated normal (std 0.02) for linear weights and positions, zero
        biases, unit LayerNorms; the patch convolution keeps torch's default."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) float, RGB normalised with ImageNet mean/std (see handcast.data.images),
        (H, W) = config.img_size. Returns tokens (B, rows * cols, C) in row-major grid order."""
        h, w = self.config.img_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, h, w):
            raise HandcastError(f"ViT expects images of shape (B, 3, {h}, {w}), got {tuple(images.shape)}")
        x = self.patch_embed(images)
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return self.last_norm(x)


def state_shapes(cfg: ViTConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of every entry of ``ViT(cfg).state_dict()``, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = ViT(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------------------
# Loading a HaMeR (or ViTPose) checkpoint's backbone
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneLoadReport:
    """What :func:`load_backbone` did. ``loaded`` are model names (no prefix) that received file values;
    ``missing``/``unexpected``/``mismatched`` are only non-empty with ``strict=False``; ``ignored_globals``
    lists classes/functions the checkpoint's pickle named that were replaced by inert placeholders
    (never imported, never called)."""

    path: str
    format: str  # "safetensors" or "torch"
    prefix: str
    loaded: tuple[str, ...]
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()
    ignored_globals: tuple[str, ...] = ()

    def __str__(self) -> str:
        return (f"{self.path}: {len(self.loaded)} backbone tensors loaded ({self.format}, prefix "
                f"{self.prefix!r}); {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                f"{len(self.mismatched)} shape mismatches")


class _Inert:
    """Placeholder for any class or function a checkpoint's pickle names outside the tensor rebuilders.

    Constructing, calling, building or filling it does nothing, so no code from the named module runs."""

    __slots__ = ()

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass


# The only callables the lenient reader hands to the unpickler: torch's dense tensor rebuilders and
# OrderedDict (storages are resolved by torch.load itself). Everything else becomes _Inert.
_TENSOR_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
}


def _lenient_pickle_module(ignored: list[str]):
    """A stand-in for the ``pickle`` module whose Unpickler resolves only tensor rebuilders."""
    import collections
    import types

    import torch._utils as tu

    allowed = {("collections", "OrderedDict"): collections.OrderedDict}
    for mod, name in _TENSOR_GLOBALS:
        if mod == "torch._utils" and hasattr(tu, name):
            allowed[(mod, name)] = getattr(tu, name)

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) in allowed:
                return allowed[(module, name)]
            if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
                return getattr(torch, name)
            ignored.append(f"{module}.{name}")
            return _Inert

    def load(file, **kwargs):
        return Unpickler(file, **kwargs).load()

    return types.SimpleNamespace(__name__="handcast_lenient_pickle", Unpickler=Unpickler, load=load)


def _read_torch(path: Path, kind: str) -> tuple[object, list[str]]:
    mmap = kind == "zip"
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap), []
    except pickle.UnpicklingError:
        pass  # the file names classes outside torch's safe list (e.g. HaMeR's yacs config): read leniently
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError/EOFError/... for broken files
        raise HandcastError(f"cannot read torch checkpoint {path}: {_first_line(e)}") from None
    ignored: list[str] = []
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap,
                         pickle_module=_lenient_pickle_module(ignored))
    except Exception as e:  # noqa: BLE001
        raise HandcastError(f"cannot read torch checkpoint {path}: {_first_line(e)}") from None
    return obj, sorted(set(ignored))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _tensor_dict(obj) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, dict) and obj and all(isinstance(k, str) for k in obj):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        return tensors or None
    return None


def read_backbone_state(
    path: str | Path, prefix: str = "backbone."
) -> tuple[dict[str, torch.Tensor], BackboneLoadReport]:
    """Read the backbone tensors of a checkpoint without unpickling untrusted objects.

    Accepts ``.safetensors`` files and torch files (a Lightning ``.ckpt`` with ``state_dict``, or a bare
    state dict), recognised by content, not by suffix. Entries under ``prefix`` are returned with the
    prefix stripped; a file without any such entry but with ``patch_embed.proj.weight`` is taken as a
    backbone-only state dict. Returns (name -> tensor on CPU, a report with ``loaded`` empty)."""
    path = Path(path)
    if not path.exists():
        raise HandcastError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise HandcastError(f"checkpoint is not a file: {path}")
    kind = sniff_checkpoint(path)
    ignored: list[str] = []
    if kind == "safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                keys = list(f.keys())
                use = _select(keys, prefix, path)
                state = {k[len(use):]: f.get_tensor(k) for k in keys if k.startswith(use)}
        except HandcastError:
            raise
        except Exception as e:  # noqa: BLE001
            raise HandcastError(f"cannot read safetensors checkpoint {path}: {_first_line(e)}") from None
        fmt = "safetensors"
    elif kind in ("zip", "legacy"):
        obj, ignored = _read_torch(path, kind)
        sd = obj.get("state_dict") if isinstance(obj, dict) and "state_dict" in obj else obj
        sd = _tensor_dict(sd)
        if sd is None:
            raise HandcastError(f"{path} holds no state dict of tensors (expected a Lightning .ckpt or a state dict)")
        use = _select(list(sd), prefix, path)
        state = {k[len(use):]: v for k, v in sd.items() if k.startswith(use)}
        fmt = "torch"
    else:
        raise HandcastError(f"not a checkpoint: {path} (neither a safetensors nor a torch file)")
    return state, BackboneLoadReport(str(path), fmt, use, (), ignored_globals=tuple(ignored))


def _select(keys: list[str], prefix: str, path: Path) -> str:
    if prefix and any(k.startswith(prefix) for k in keys):
        return prefix
    if "patch_embed.proj.weight" in keys:
        return ""
    roots = sorted({k.split(".", 1)[0] for k in keys})
    raise HandcastError(f"no '{prefix}*' entries in {path} (top-level names: {name_list(roots, 6) or 'none'})")


def _describe(state: dict[str, torch.Tensor]) -> str:
    w = state.get("patch_embed.proj.weight")
    depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    if w is None or w.ndim != 4:
        return ""
    return f" (the file holds a ViT of width {w.shape[0]} with {depth} blocks)"


def load_backbone(
    model: ViT, path: str | Path, *, strict: bool = True, prefix: str = "backbone."
) -> BackboneLoadReport:
    """Copy a checkpoint's backbone weights into ``model`` (in place, on the model's device and dtype).

    With ``strict`` every model entry must be present with the same shape and the file may hold nothing
    else under the prefix; otherwise only matching names and shapes are copied (at least one must match)
    and the report lists the rest. Raises HandcastError (one line) for a missing or unreadable file, a
    file that is not a checkpoint, or entries that do not match."""
    state, report = read_backbone_state(path, prefix)
    expected = model.state_dict()
    missing, unexpected, mismatched, problems = compare_state(expected, state)
    if strict and problems:
        cfg = model.config
        raise HandcastError(
            f"backbone in {path} does not fit ViT(width {cfg.embed_dim}, {cfg.depth} blocks): {problems}"
            + _describe(state)
        )
    ok = [k for k in expected if k in state and k not in mismatched]
    if not ok:
        raise HandcastError(f"no backbone entry of {path} matches the model by name and shape{_describe(state)}")
    for k in ok:
        if not (state[k].is_floating_point() or state[k].dtype == expected[k].dtype):
            raise HandcastError(f"backbone entry {k} in {path} has dtype {state[k].dtype}, expected floating point")
    check_finite_state({k: state[k] for k in ok}, f"backbone in {path}")
    model.load_state_dict({k: state[k] for k in ok}, strict=False)
    return dataclasses.replace(report, loaded=tuple(ok), missing=tuple(missing), unexpected=tuple(unexpected),
                               mismatched=tuple(mismatched))
