"""Where a model looked: attention rollout, pooling weights, Grad-CAM-1D and input-gradient
saliency for a batch of windows, plus the bookkeeping that maps tokens back to seconds.

    spans = token_spans(n_tokens=32, n_steps=126, step_seconds=64 / 8000)   # (32, 2) seconds
    layers = attention_summary(maps)            # per layer: heads, shape, received, rollout
    cam, layer = grad_cam(model, x, targets)    # (B, T') in [0, 1] + the conv block's name
    sal = input_saliency(model, x, targets)     # (B, T) in [0, 1]
    times, values = stitch(per_window, spans, window_starts, duration)   # one curve per file

Every curve is first computed per window on the model's own token axis; `token_spans` says
which seconds of the window each token covers (the token axis is assumed to cover the
model input evenly, after dropping a CLS token at index 0); `stitch` averages overlapping
windows onto one time grid for the whole recording.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.models.attention import AttentionMap

_CONVS = (nn.Conv1d, nn.Conv2d)


# ---- time mapping ------------------------------------------------------------------------
def token_spans(n_tokens: int, n_steps: int, step_seconds: float, offset: float = 0.0,
                window_seconds: float | None = None) -> np.ndarray:
    """(n_tokens, 2) [start, end) seconds of each token inside one window.

    n_steps input steps (samples, or feature frames) of `step_seconds` each are covered
    evenly by the tokens: token i spans steps [i * n_steps / n_tokens, (i + 1) * n_steps / n_tokens).
    `offset` shifts every span (centered STFT frames start half a hop early); spans are
    clipped to [0, window_seconds] when given.
    """
    if n_tokens < 1 or n_steps < 1:
        raise ValueError(f"token_spans: n_tokens={n_tokens} and n_steps={n_steps} must be positive")
    edges = np.arange(n_tokens + 1) * (n_steps / n_tokens) * step_seconds + offset
    spans = np.stack([edges[:-1], edges[1:]], axis=1)
    if window_seconds is not None:
        spans = np.clip(spans, 0.0, window_seconds)
    return spans


def stitch(values: np.ndarray, spans: np.ndarray, starts: np.ndarray, duration: float,
           max_points: int = 2000, step: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-window curves (N, T') on the same token spans (T', 2) -> one curve over the file.

    The grid step is one token unless `step` (seconds) is given, coarsened so there are at
    most `max_points` points;
    each grid point averages every window token that covers its centre. Points no window
    covers get NaN. Returns (times (G,) grid centres in seconds, values (G,))."""
    values = np.asarray(values, dtype=np.float64)
    widths = spans[:, 1] - spans[:, 0]
    if step is None:
        step = float(np.median(widths[widths > 0])) if np.any(widths > 0) else max(duration, 1e-3)
    step = max(step, duration / max_points)
    n = max(1, int(np.ceil(duration / step)))
    centres = np.minimum((np.arange(n) + 0.5) * step, duration)  # the last cell may be partial
    total = np.zeros(n)
    count = np.zeros(n)
    edges = np.concatenate([spans[:, 0], spans[-1:, 1]])
    for start, row in zip(starts, values):
        rel = centres - start
        inside = (rel >= edges[0]) & (rel < edges[-1])
        token = np.clip(np.searchsorted(edges, rel[inside], side="right") - 1, 0, len(row) - 1)
        total[inside] += row[token]
        count[inside] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return centres, np.where(count > 0, total / np.maximum(count, 1), np.nan)


# ---- attention ---------------------------------------------------------------------------
@dataclass
class LayerAttention:
    """One attention layer over a batch of windows, summarized.

    kind "self":    heads H, matrix shape (T', T'); `received` (B, H, T) the attention each
                    input token receives, averaged over queries (CLS query and key dropped);
                    `rollout` (B, T) attention rolled out from the input up to this layer and
                    read at the model's summary (CLS row, pooling weights or the mean of rows),
                    scaled so a uniform spread is 1.
    kind "pooling": `weights` (B, T) temporal pooling weights, scaled so uniform is 1.
    `weights_full` keeps the raw (B, H, T', T') or (B, T') tensor when asked for.
    """

    layer: str
    kind: str
    heads: int
    shape: tuple[int, ...]
    has_cls: bool
    n_tokens: int  # tokens that map to input time (CLS excluded)
    received: np.ndarray | None = None
    rollout: np.ndarray | None = None
    weights: np.ndarray | None = None
    weights_full: np.ndarray | None = None


def _summary_weights(maps: list[AttentionMap], n_tokens: int, has_cls: bool, batch: int) -> torch.Tensor:
    """How the model's summary reads the last token sequence: (B, T_all) rows summing to 1."""
    pooling = [m for m in maps if m.kind == "pooling" and m.weights.shape[-1] == n_tokens + int(has_cls)]
    if has_cls:
        out = torch.zeros(batch, n_tokens + 1)
        out[:, 0] = 1.0  # the CLS token is the summary
        return out
    if pooling:
        return pooling[-1].weights.float().cpu()
    return torch.full((batch, n_tokens), 1.0 / n_tokens)  # mean pooling


def attention_summary(maps: list[AttentionMap], keep_full: bool = False) -> list[LayerAttention]:
    """Summaries of every captured attention layer, in forward order, with cumulative rollout.

    Rollout (Abnar & Zuidema 2020): per layer A' = 0.5 * mean_heads(A) + 0.5 * I, rows
    renormalized, multiplied from the first layer up; read at the summary (CLS row,
    attention-pooling weights, or uniform for mean pooling)."""
    out: list[LayerAttention] = []
    rolled: torch.Tensor | None = None
    for m in maps:
        w = m.weights.float().cpu()
        if m.kind == "pooling":
            b, t = w.shape
            out.append(LayerAttention(m.layer, "pooling", 1, (t,), False, t, weights=(w * t).numpy(),
                                      weights_full=w.numpy() if keep_full else None))
            continue
        b, h, t, _ = w.shape
        cls = int(bool(m.has_cls))
        n = t - cls
        received = w[:, :, cls:, cls:].mean(dim=2) * n  # (B, H, n) uniform = 1
        step = 0.5 * w.mean(dim=1) + 0.5 * torch.eye(t)
        step = step / step.sum(dim=-1, keepdim=True)
        rolled = step if rolled is None or rolled.shape != step.shape else step @ rolled
        summary = _summary_weights(maps, n, bool(m.has_cls), b)  # (B, t)
        reading = torch.einsum("bt,bts->bs", summary, rolled)[:, cls:]  # (B, n)
        reading = reading / reading.sum(dim=-1, keepdim=True).clamp_min(1e-12) * n
        out.append(LayerAttention(m.layer, "self", h, (t, t), bool(m.has_cls), n, received=received.numpy(),
                                  rollout=reading.numpy(), weights_full=w.numpy() if keep_full else None))
    return out


# ---- gradients ---------------------------------------------------------------------------
def last_conv_block(model: nn.Module, x: torch.Tensor) -> str | None:
    """Name of the last module, in forward order, that contains a convolution and outputs a
    channels-first map (B, C, T) or (B, C, F, T) — the "last conv block" Grad-CAM reads."""
    candidates = {name: m for name, m in model.named_modules()
                  if name and any(isinstance(sub, _CONVS) for sub in m.modules())}
    # a channels-first output has as many channels as one of the block's convs makes, or as the
    # block says it makes (an Inception module concatenates its branches: 4 x filters, no conv's width)
    conv_widths = {name: {s.out_channels for s in m.modules() if isinstance(s, _CONVS)}
                   | ({m.out_channels} if isinstance(getattr(m, "out_channels", None), int) else set())
                   for name, m in candidates.items()}
    finished: list[str] = []
    hooks = []

    def hook(name):
        def fn(_module, _inputs, output):
            if (isinstance(output, torch.Tensor) and output.ndim in (3, 4) and output.shape[0] == 1
                    and output.shape[1] in conv_widths[name] and output.shape[-1] > 1):
                finished.append(name)
        return fn

    for name, m in candidates.items():
        hooks.append(m.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hooks:
            h.remove()
    return finished[-1] if finished else None


def grad_cam(model: nn.Module, x: torch.Tensor, targets: torch.Tensor,
             layer: str | None = None) -> tuple[np.ndarray, str | None]:
    """Grad-CAM-1D (Selvaraju et al. 2017) on the last conv block: (B, T') in [0, 1].

    cam = ReLU(sum_c alpha_c A_c), alpha_c = mean gradient of the target logit over the
    map; a 2-D map (B, C, F, T) is averaged over frequency after the ReLU. Each window's
    cam is scaled to max 1 (all zero when no evidence). (None, None) when the model has no
    conv block."""
    layer = layer or last_conv_block(model, x)
    if layer is None:
        return np.zeros((len(x), 0)), None
    module = dict(model.named_modules())[layer]
    store: dict[str, torch.Tensor] = {}

    def keep(_m, _i, output):
        output.retain_grad()
        store["act"] = output

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(x)
            logits.gather(1, targets[:, None]).sum().backward()
    finally:
        handle.remove()
    act, grad = store["act"].detach(), store["act"].grad.detach()
    dims = tuple(range(2, act.ndim))
    alpha = grad.mean(dim=dims, keepdim=True)
    cam = torch.relu((alpha * act).sum(dim=1))  # (B, T') or (B, F', T')
    if cam.ndim == 3:
        cam = cam.mean(dim=1)
    peak = cam.amax(dim=-1, keepdim=True)
    cam = torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.zeros_like(cam))
    model.zero_grad(set_to_none=True)
    return cam.cpu().numpy(), layer


def input_saliency(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Input-gradient saliency (Simonyan et al. 2014): |d logit / d x| summed over every
    axis but time, (B, T) scaled to max 1 per window."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        logits.gather(1, targets[:, None]).sum().backward()
    sal = x.grad.detach().abs()
    sal = sal.sum(dim=tuple(range(1, sal.ndim - 1)))  # (B, T)
    peak = sal.amax(dim=-1, keepdim=True)
    model.zero_grad(set_to_none=True)
    return torch.where(peak > 0, sal / peak.clamp_min(1e-12), torch.zeros_like(sal)).cpu().numpy()
