#!/usr/bin/env python3
"""The denoisers of the bundled diffusion models written again in PyTorch, layer for layer,
loaded with the same weights, so that `coalesce bench unet` has peers that compute the same
function: PyTorch eager and ONNX Runtime (the PyTorch network exported to ONNX).

The network is built from the config JSON in the safetensors metadata ("config"); module names
are the checkpoint keys of the Swift layers (Sources/Models/Components/UNet.swift, Layers/Blocks.swift,
Diffusion/NestedUNet.swift), so the weights load by name with strict=True:

  latent-diffusion, distilled-unet   LatentDiffusionModel.unet  (keys "unet.*")
  nested-unet                        NestedUNetModel.net        (keys "net.*")
  coalescer                          one jump of CoalescerModel.net and the decode of its end point
                                     (keys "net.*", "projection.*", "autoencoder.decoder.*")

What each Swift op is, and its PyTorch counterpart here:
  GroupNorm            biased variance, eps 1e-5           nn.GroupNorm(min(groups, C), C, eps=1e-5)
  SiLU                 x * sigmoid(x)                       F.silu
  timestep embedding   diffusers get_timestep_embedding(flip_sin_to_cos=True,
                       downscale_freq_shift=1): [cos | sin] of t * exp(-ln(1e4) j / (half - 1))
  attention            softmax(Q Kᵀ / sqrt(d_head)) V per head, heads side by side in the channels
  downsampling         3x3 conv, stride 2, padding 1 (odd sides round up: 7 -> 4)
  upsampling           nearest x2, cropped to the skip's size, then a 3x3 conv
  skip concatenation   [h, skip] along channels (h first)
  context              the condition vector as one token: cond.reshape(B, 1, dim)

Commands (see scripts/peers/bench-peers.sh):
  check   --dump DIR [--onnx FILE]     compare with a `coalesce bench unet --dump DIR` output,
                                       export to ONNX and compare ONNX Runtime too
  time    --runtime torch|ort ...      one round of timed calls, times to --json
  sgemm                                square sgemm GFLOP/s of torch at --threads
"""
import argparse
import json
import logging
import math
import os
import struct
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- weights --------------------------------------------------------------------------------

def read_safetensors(path):
    """(tensors as float32 numpy arrays by name, metadata dict) of a safetensors file: an
    8-byte little-endian header length, a JSON header, then the raw tensor bytes. F16 tensors
    (the coalescer's net, scripts/half-weights.py) widen to float32 exactly, as our loader does."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
    data = np.memmap(path, dtype=np.uint8, mode="r")
    meta = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, info in header.items():
        dtype = {"F32": "<f4", "F16": "<f2"}.get(info["dtype"])
        if dtype is None:
            raise SystemExit(f"{path}: tensor {name} is {info['dtype']}, only F32 and F16 are read")
        lo, hi = info["data_offsets"]
        raw = np.frombuffer(data[base + lo: base + hi], dtype=dtype).reshape(info["shape"])
        tensors[name] = raw.astype(np.float32)
    return tensors, meta


# ---- layers (names = the Swift layers' parameter names) -------------------------------------

def timestep_embedding(t, dim, max_period=10000.0):
    """t (B,) float32 -> (B, dim): [cos(t f_j) | sin(t f_j)], f_j = exp(-ln(max_period) j / (half - 1))."""
    half = dim // 2
    j = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * j / (half - 1)) if half > 1 else torch.ones(1)
    arg = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def group_norm(groups, channels):
    return nn.GroupNorm(min(groups, channels), channels, eps=1e-5)


class ResBlock(nn.Module):
    """h = conv1(silu(norm1(x))) + time_proj(temb); h = conv2(silu(norm2(h))); skip(x) + h."""

    def __init__(self, cin, cout, time_dim, groups):
        super().__init__()
        self.norm1 = group_norm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, cout)
        self.norm2 = group_norm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        # temb: (B, time_dim), already through SiLU
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_proj(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.skip(x) if self.skip is not None else x) + h


def attention(q, k, v, heads):
    """q (B, Tq, C), k and v (B, Tk, C) -> (B, Tq, C), heads side by side."""
    b, tq, c = q.shape
    tk = k.shape[1]
    dh = c // heads
    q = q.reshape(b, tq, heads, dh).transpose(1, 2)
    k = k.reshape(b, tk, heads, dh).transpose(1, 2)
    v = v.reshape(b, tk, heads, dh).transpose(1, 2)
    a = F.scaled_dot_product_attention(q, k, v)   # softmax(q kᵀ / sqrt(dh)) v
    return a.transpose(1, 2).reshape(b, tq, c)


class SpatialSelfAttention(nn.Module):
    def __init__(self, channels, heads, groups):
        super().__init__()
        self.norm = group_norm(groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        self.heads = heads

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)        # (B, HW, C)
        q, k, v = self.qkv(tokens).split(c, dim=2)
        a = attention(q, k, v, self.heads)
        return x + self.out(a).transpose(1, 2).reshape(b, c, h, w)


class CrossAttention(nn.Module):
    def __init__(self, channels, context_dim, heads, groups):
        super().__init__()
        self.norm = group_norm(groups, channels)
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(context_dim, channels)
        self.v = nn.Linear(context_dim, channels)
        self.out = nn.Linear(channels, channels)
        self.heads = heads

    def forward(self, x, context):
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        a = attention(self.q(tokens), self.k(context), self.v(context), self.heads)
        return x + self.out(a).transpose(1, 2).reshape(b, c, h, w)


class Level(nn.Module):
    """One resolution level: res.j, attn.j, cross.j and the level's down/upsampling conv."""

    def __init__(self):
        super().__init__()
        self.res = nn.ModuleList()
        self.attn = nn.ModuleList()
        self.cross = nn.ModuleList()


class Middle(nn.Module):
    def __init__(self, c, cfg, time_dim):
        super().__init__()
        g = cfg["groups"]
        self.res1 = ResBlock(c, c, time_dim, g)
        self.attn = SpatialSelfAttention(c, cfg["heads"], g) if cfg.get("mid_attention", True) else None
        self.res2 = ResBlock(c, c, time_dim, g)

    def forward(self, h, te):
        h = self.res1(h, te)
        if self.attn is not None:
            h = self.attn(h)
        return self.res2(h, te)


class UNet(nn.Module):
    """Sources/Models/Components/UNet.swift: conv_in; down levels (res, self-attention, cross-attention,
    strided conv); middle (res, attention, res) or a replacement; up levels concatenating the
    skip of the same level, nearest upsampling + conv; norm_out, SiLU, conv_out."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        ch, g, heads = cfg["channels"], cfg["groups"], cfg["heads"]
        layers, ctx = cfg["layers_per_level"], cfg.get("context_dim", 0)
        c0 = ch[0]
        self.time_dim = td = 4 * c0
        self.conv_in = nn.Conv2d(cfg["in_channels"], c0, 3, padding=1)
        self.time_1 = nn.Linear(c0, td)
        self.time_2 = nn.Linear(td, td)
        self.cond_proj = nn.Linear(cfg["cond_dim"], td) if cfg.get("cond_dim", 0) > 0 else None
        self.down = nn.ModuleList()
        cin = c0
        for i, c in enumerate(ch):
            lv = Level()
            for _ in range(layers):
                lv.res.append(ResBlock(cin, c, td, g))
                if cfg["attention_levels"][i]:
                    lv.attn.append(SpatialSelfAttention(c, heads, g))
                    if ctx > 0:
                        lv.cross.append(CrossAttention(c, ctx, heads, g))
                cin = c
            if i < len(ch) - 1:
                lv.downsample = nn.Conv2d(c, c, 3, stride=2, padding=1)
            self.down.append(lv)
        cm = ch[-1]
        self.mid = Middle(cm, cfg, td) if cfg.get("mid_block", True) else None
        self.up = nn.ModuleList()
        cin = cm
        for i in range(len(ch) - 1, -1, -1):
            c = ch[i]
            lv = Level()
            for j in range(layers):
                lv.res.append(ResBlock(cin + c if j == 0 else c, c, td, g))
                if cfg["attention_levels"][i]:
                    lv.attn.append(SpatialSelfAttention(c, heads, g))
                    if ctx > 0:
                        lv.cross.append(CrossAttention(c, ctx, heads, g))
            if i > 0:
                lv.upsample = nn.Conv2d(c, ch[i - 1], 3, padding=1)
            self.up.append(lv)
            cin = ch[i - 1] if i > 0 else c
        self.norm_out = group_norm(g, c0)
        self.conv_out = nn.Conv2d(c0, cfg["out_channels"], 3, padding=1)

    @staticmethod
    def _level(lv, h, te, context):
        for j, block in enumerate(lv.res):
            h = block(h, te)
            if j < len(lv.attn):
                h = lv.attn[j](h)
            if j < len(lv.cross) and context is not None:
                h = lv.cross[j](h, context)
        return h

    def forward(self, x, t, cond=None, context=None, inject=None, middle=None):
        """x (B, C, H, W), t (B,), cond (B, cond_dim), context (B, T, context_dim).
        Returns (output, features of the last up level before norm_out)."""
        temb = self.time_2(F.silu(self.time_1(timestep_embedding(t, self.cfg["channels"][0]))))
        if self.cond_proj is not None and cond is not None:
            temb = temb + self.cond_proj(cond)
        te = F.silu(temb)
        h = self.conv_in(x)
        if inject is not None:
            h = h + inject
        skips = []
        for i, lv in enumerate(self.down):
            h = self._level(lv, h, te, context)
            skips.append(h)
            if i < len(self.down) - 1:
                h = lv.downsample(h)
        if middle is not None:
            h = middle(h)
        elif self.mid is not None:
            h = self.mid(h, te)
        n = len(self.down)
        for i, lv in enumerate(self.up):
            level = n - 1 - i
            h = torch.cat([h, skips[level]], dim=1)
            h = self._level(lv, h, te, context)
            if i < n - 1:
                nxt = skips[level - 1]
                h = F.interpolate(h, scale_factor=2, mode="nearest")
                h = h[:, :, : nxt.shape[2], : nxt.shape[3]]
                h = lv.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h))), h


class NestedUNet(nn.Module):
    """Sources/Models/NestedUNet/NestedUNet.swift: the outer UNet's middle is in_adapter, the
    whole inner UNet on the low-resolution input (in_adapter's output added after its conv_in),
    and out_adapter of the inner features added back to the outer bottleneck."""

    def __init__(self, outer, inner):
        super().__init__()
        self.outer = UNet(outer)
        self.inner = UNet(inner) if inner else None
        if inner:
            co, ci = outer["channels"][-1], inner["channels"][0]
            self.in_adapter = nn.Conv2d(co, ci, 3, padding=1)
            self.out_adapter = nn.Conv2d(ci, co, 3, padding=1)

    def forward(self, x0, x1, t, cond, context):
        low = []

        def middle(h):
            out, feats = self.inner(x1, t, cond, context, inject=self.in_adapter(h))
            low.append(out)
            return h + self.out_adapter(feats)

        high, _ = self.outer(x0, t, cond, context, middle=middle)
        return high, low[0]


class CoalescerNet(nn.Module):
    """The coalescer's net (Sources/Models/Coalescer/CoalescerNet.swift): [r | desc | level] ->
    1 + latent_dim values; a plain MLP (blocks 0: `depth` Linear + SiLU) or a residual one
    (Linear in, blocks h += W2 silu(W1 LayerNorm(h)), LayerNorm, Linear out)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        width = cfg["latent_dim"] + cfg["desc_dim"] + (1 if cfg.get("level_input") else 0)
        h, blocks = cfg["hidden"], cfg.get("blocks", 0)
        if blocks == 0:
            self.layers = nn.ModuleList(nn.Linear(width if i == 0 else h, h) for i in range(cfg.get("depth", 3)))
        else:
            self.layers = nn.ModuleList([nn.Linear(width, h)])
            self.norms = nn.ModuleList(nn.LayerNorm(h, eps=1e-5) for _ in range(blocks))
            self.blocks = nn.ModuleList(nn.Linear(h, h) for _ in range(2 * blocks))
            self.out_norm = nn.LayerNorm(h, eps=1e-5)
        self.out = nn.Linear(h, 1 + cfg["latent_dim"])

    def forward(self, r, desc, level):
        parts = [r, desc] + ([level] if self.cfg.get("level_input") else [])
        h = torch.cat(parts, dim=1)
        if self.cfg.get("blocks", 0) == 0:
            for layer in self.layers:
                h = F.silu(layer(h))
        else:
            h = self.layers[0](h)
            for b in range(len(self.norms)):
                h = h + self.blocks[2 * b + 1](F.silu(self.blocks[2 * b](self.norms[b](h))))
            h = self.out_norm(h)
        o = self.out(h)
        return o[:, :1], o[:, 1:]


class Projection(nn.Module):
    """Whitened PCA (LatentProjection.swift): latents = (y * scales) @ components + mean."""

    def __init__(self, dim, latent_dim):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(latent_dim))
        self.components = nn.Parameter(torch.zeros(dim, latent_dim))
        self.scales = nn.Parameter(torch.ones(dim))

    def forward(self, y):
        return (y * self.scales) @ self.components + self.mean


class Decoder(nn.Module):
    """The autoencoder's decoder (ImageAutoencoder.swift): conv0, conv1 at the latent side,
    x2 nearest, conv2, x2 nearest, conv3, out; SiLU after each but the last, sigmoid on it."""

    def __init__(self, ae):
        super().__init__()
        d = ae.get("decoder_channels") or ae["channels"]
        lc, ic = ae["latent_channels"], ae.get("image_channels", 1)
        self.conv0 = nn.Conv2d(lc, d[2], 3, padding=1)
        self.conv1 = nn.Conv2d(d[2], d[2], 3, padding=1)
        self.conv2 = nn.Conv2d(d[2], d[1], 3, padding=1)
        self.conv3 = nn.Conv2d(d[1], d[0], 3, padding=1)
        self.out = nn.Conv2d(d[0], ic, 3, padding=1)

    def forward(self, z):
        h = F.silu(self.conv0(z))
        h = F.silu(self.conv1(h))
        h = F.silu(self.conv2(F.interpolate(h, scale_factor=2, mode="nearest")))
        h = F.silu(self.conv3(F.interpolate(h, scale_factor=2, mode="nearest")))
        return torch.sigmoid(self.out(h))


class CoalescerStep(nn.Module):
    """One coalescer sampler step and the decode, as `coalesce bench unet --model coalescer`
    times it: (d, u) = net(x, desc, level); x' = x + relu(d) u / sqrt(|u|² + 1e-12)
    (CoalescerNet.jump); pixels = decoder(unproject(x') * latent_scale)."""

    def __init__(self, config):
        super().__init__()
        ae = config["autoencoder"]
        self.net = CoalescerNet(config["net"])
        self.projection = Projection(config["net"]["latent_dim"], ae["latent_channels"] * (ae["image_size"] // 4) ** 2)
        self.autoencoder = nn.Module()
        self.autoencoder.decoder = Decoder(ae)
        self.ae = ae

    def forward(self, x, level, desc):
        d, u = self.net(x, desc, level[:, None])
        norm = torch.sqrt((u * u).sum(dim=1, keepdim=True) + 1e-12)
        y = x + u * (F.relu(d) / norm)
        s = self.ae["image_size"] // 4
        z = (self.projection(y) * self.ae.get("latent_scale", 1.0)).reshape(-1, self.ae["latent_channels"], s, s)
        return self.autoencoder.decoder(z).reshape(x.shape[0], -1)


class Denoiser(nn.Module):
    """A model's denoiser as its `predictV` calls it: inputs (x..., t, cond), outputs one v per
    resolution; the context is the condition as one token. For a coalescer: inputs (x, level,
    desc), output the pixels of one jump from x, decoded."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        if "net" in config and "unet" not in config and "outer" not in config:
            self.kind, self.prefix = "coalescer", ""      # CoalescerConfig: keys net.*, projection.*, autoencoder.decoder.*
            self.step = CoalescerStep(config)
            self.use_context = False
            self.input_shapes = [(config["net"]["latent_dim"],)]
            self.cond_dim = config["net"]["desc_dim"]
            return
        if "unet" in config:                     # LatentDiffusionConfig
            self.kind, self.prefix = "unet", "unet."
            self.unet = UNet(config["unet"])
            self.use_context = config["unet"].get("context_dim", 0) > 0
            ae = config["autoencoder"]
            side = ae["image_size"] // 4
            self.input_shapes = [(ae["latent_channels"], side, side)]
        else:                                    # NestedUNetConfig
            self.kind, self.prefix = "nested-unet", "net."
            self.net = NestedUNet(config["outer"], config.get("inner"))
            if config.get("inner") is None:
                raise SystemExit("a nested-unet model without an inner network is not supported here")
            self.use_context = config["outer"].get("context_dim", 0) > 0
            s, c = config["image_size"], config.get("image_channels", 1)
            low = s >> (len(config["outer"]["channels"]) - 1)
            self.input_shapes = [(c, s, s), (c, low, low)]
        self.cond_dim = config["text_encoder"]["dim"]

    def forward(self, *args):
        *xs, t, cond = args
        context = cond[:, None, :] if self.use_context else None
        if self.kind == "unet":
            return self.unet(xs[0], t, cond, context)[0]
        if self.kind == "coalescer":
            return self.step(xs[0], t, cond)
        return self.net(xs[0], xs[1], t, cond, context)

    def core(self):
        return {"unet": lambda: self.unet, "coalescer": lambda: self.step}.get(self.kind, lambda: self.net)()

    def load_weights(self, tensors):
        """Loads every `prefix*` tensor by name (strict: no key missing or left over) and
        returns the number of scalars in them."""
        if self.kind == "coalescer":
            keep = ("net.", "projection.", "autoencoder.decoder.")
            sd = {k: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(keep)}
            self.core().load_state_dict(sd, strict=True)
            return sum(v.numel() for v in sd.values())
        sd = {k[len(self.prefix):]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(self.prefix)}
        self.core().load_state_dict(sd, strict=True)
        return sum(v.numel() for v in sd.values())

    def parameter_count(self):
        return sum(p.numel() for p in self.core().parameters())


def model_weights(args):
    """The weights file of --model in --models-dir (its config.json names it), or --weights."""
    if args.weights:
        return args.weights
    d = args.model if os.path.isdir(args.model) else os.path.join(args.models_dir, args.model)
    with open(os.path.join(d, "config.json")) as f:
        return os.path.join(d, json.load(f)["weights"])


def load_denoiser(path):
    tensors, meta = read_safetensors(path)
    if "config" not in meta:
        raise SystemExit(f"{path} has no \"config\" metadata")
    net = Denoiser(json.loads(meta["config"]))
    stored = net.load_weights(tensors)
    count = net.parameter_count()
    assert count == stored, f"PyTorch network has {count} parameters, the checkpoint {stored}"
    net.eval()
    return net


def seeded_inputs(net, batch, seed=1):
    """Fixed inputs like `coalesce bench unet`'s (not the same draws: timing needs only shapes)."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn((batch,) + s, generator=g) for s in net.input_shapes]
    if net.kind == "coalescer":
        t = torch.ones(batch)                               # the noise level of a prior start
    else:
        t = torch.tensor([float(999 - (i * 379) % 1000) for i in range(batch)], dtype=torch.float32)
    cond = torch.randn((batch, net.cond_dim), generator=g) / math.sqrt(net.cond_dim)
    return xs + [t, cond]


# ---- ONNX ------------------------------------------------------------------------------------

def export_onnx(net, inputs, path):
    """torch.onnx.export at opset 17 with the batch dimension dynamic. The TorchScript exporter
    writes opset 17 directly; torch's newer torch.export-based exporter builds opset 18 and its
    conversion down to 17 wrote Split nodes ONNX Runtime rejects (torch 2.15), so it is used, at
    its own opset 18, only where the TorchScript exporter is missing or fails."""
    import onnx
    names = [f"x{i}" for i in range(len(inputs) - 2)] + ["t", "cond"]
    outs = [f"out{i}" for i in range(len(net.input_shapes))]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(net, tuple(inputs), path, input_names=names, output_names=outs, opset_version=17,
                              dynamo=False, dynamic_axes={n: {0: "batch"} for n in names + outs})
            how = "TorchScript exporter"
        except Exception as e:
            print(f"  TorchScript ONNX export failed ({type(e).__name__}: {str(e)[:200]}); using torch.export at opset 18")
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(net, tuple(inputs), path, input_names=names, output_names=outs, opset_version=18,
                              dynamo=True, external_data=False, verbose=False,
                              dynamic_shapes=(tuple({0: batch} for _ in inputs),))  # forward(*args)
            how = "torch.export exporter"
    model = onnx.load(path)
    onnx.checker.check_model(model)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    print(f"  exported {path} ({how}, opset {opsets.get('ai.onnx')}, batch dynamic)")
    return path


def ort_session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_feed(sess, inputs):
    return {i.name: np.ascontiguousarray(x.numpy()) for i, x in zip(sess.get_inputs(), inputs)}


# ---- FLOPs -----------------------------------------------------------------------------------

def counted_flops(net, inputs):
    """Forward FLOPs as torch's FlopCounterMode counts them (convolutions, matrix products,
    attention), or None where it is missing."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(*inputs)
    return fc.get_total_flops()


# ---- commands --------------------------------------------------------------------------------

def cmd_check(args):
    with open(os.path.join(args.dump, "meta.json")) as f:
        meta = json.load(f)
    weights = args.weights or meta["weights"]
    net = load_denoiser(weights)
    torch.set_num_threads(args.threads)
    count = net.parameter_count()
    print(f"{meta['model']}: {weights}")
    print(f"  parameters: PyTorch {count}, Coalesce {meta['params']}")
    ok = count == meta["params"]

    def read(entry):
        a = np.fromfile(os.path.join(args.dump, entry["file"]), dtype="<f4")
        return torch.from_numpy(a.reshape(entry["shape"]).copy())

    inputs = [read(e) for e in meta["inputs"] if e["name"] != "cond"]
    inputs.append(torch.tensor(meta["t"], dtype=torch.float32))
    inputs.append(read(next(e for e in meta["inputs"] if e["name"] == "cond")))
    refs = [read(e).numpy() for e in meta["outputs"]]
    with torch.inference_mode():
        outs = net(*inputs)
    outs = [outs] if isinstance(outs, torch.Tensor) else list(outs)
    result = {"model": meta["model"], "batch": meta["batch"], "params_torch": count, "params_coalesce": meta["params"]}

    def compare(label, got):
        worst = 0.0
        parts = []
        for i, (g, r) in enumerate(zip(got, refs)):
            d = float(np.max(np.abs(g - r)))
            scale = float(np.max(np.abs(r)))
            rel = d / max(scale, 1e-30)
            worst = max(worst, rel)
            parts.append(f"out{i} {tuple(r.shape)}: max |diff| {d:.3g} (max |ref| {scale:.3g}, relative {rel:.2g})")
            result[f"{label}_out{i}_max_abs_diff"] = d
            result[f"{label}_out{i}_relative"] = rel
        good = worst <= args.tolerance
        print(f"  {label:8s} vs Coalesce: " + "; ".join(parts) + ("  OK" if good else f"  DIFFERS (tolerance {args.tolerance:g})"))
        return good

    ok &= compare("torch", [o.numpy() for o in outs])
    flops = counted_flops(net, inputs)
    ours = 2 * meta["multiply_adds_per_image"] * meta["batch"]
    if flops is not None:
        print(f"  forward FLOPs: Coalesce's count {ours}, torch FlopCounterMode {flops} ({flops / ours:.4f}x)")
        result["flops_coalesce"], result["flops_torch_counter"] = ours, flops
    if args.onnx:
        export_onnx(net, inputs, args.onnx)
        sess = ort_session(args.onnx, args.threads)
        got = sess.run(None, ort_feed(sess, inputs))
        ok &= compare("onnx", got)
        # The batch dimension is dynamic: one more batch size through the same file.
        more = [torch.cat([x, x[:1]]) for x in inputs]
        got3 = sess.run(None, ort_feed(sess, more))
        with torch.inference_mode():
            ref3 = net(*more)
        ref3 = [ref3] if isinstance(ref3, torch.Tensor) else list(ref3)
        d3 = max(float(np.max(np.abs(g - r.numpy()))) for g, r in zip(got3, ref3))
        print(f"  onnx at batch {more[0].shape[0]} (dynamic batch) vs PyTorch: max |diff| {d3:.3g}")
        result["onnx_dynamic_batch_max_abs_diff"] = d3
    result["ok"] = bool(ok)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if not ok:
        sys.exit(1)


def timed_round(call, seconds):
    """One warm-up call, then calls until `seconds` have passed (at least 2); their seconds."""
    call()
    times, spent = [], 0.0
    while len(times) < 2 or spent < seconds:
        t0 = time.perf_counter()
        call()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
    return times


def cmd_time(args):
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    net = load_denoiser(model_weights(args))
    inputs = seeded_inputs(net, args.batch)
    mode = "train" if args.train else "inference"
    if args.runtime == "ort":
        if args.train:
            raise SystemExit("ONNX Runtime is timed for inference only")
        if not args.onnx or not os.path.exists(args.onnx):
            raise SystemExit("--onnx FILE (written by `check --onnx`) is needed")
        sess = ort_session(args.onnx, args.threads)
        feed = ort_feed(sess, inputs)
        call = lambda: sess.run(None, feed)
    elif args.train:
        net.train()
        params = list(net.core().parameters())
        # As the Swift AdamW: weight decay on weights (rank >= 2) only.
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.01},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
        weights = net.config.get("loss_weights", [1.0] * len(net.input_shapes))
        g = torch.Generator().manual_seed(2)
        targets = [torch.randn((args.batch,) + s, generator=g) for s in net.input_shapes]

        def call():
            outs = net(*inputs)
            outs = [outs] if isinstance(outs, torch.Tensor) else list(outs)
            loss = sum(w * F.mse_loss(o, y) for o, y, w in zip(outs, targets, weights) if w > 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
    else:
        def call():
            with torch.inference_mode():
                net(*inputs)
    times = []
    for _ in range(args.rounds):
        times += timed_round(call, args.seconds)
    s = sorted(times)
    median = float(np.median(s))
    result = {"runtime": args.runtime, "model": args.model, "batch": args.batch, "mode": mode, "threads": args.threads,
              "ms_median": median * 1e3, "ms_min": s[0] * 1e3, "calls": len(times), "rounds": args.rounds,
              "params": net.parameter_count(), "times_ms": [x * 1e3 for x in times],
              "torch": torch.__version__}
    if args.runtime == "ort":
        import onnxruntime
        result["onnxruntime"] = onnxruntime.__version__
    print(f"{args.runtime} {args.model} {mode}, batch {args.batch}, {args.threads} threads: "
          f"{result['ms_median']:.3f} ms per call (median; min {result['ms_min']:.3f}) over {len(times)} calls")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)


def cmd_sgemm(args):
    torch.set_num_threads(args.threads)
    n = 1024
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    c = torch.empty(n, n)
    best = min(timed_round(lambda: torch.mm(a, b, out=c), args.seconds))
    gflops = 2 * n ** 3 / best / 1e9
    print(f"torch sgemm {n}x{n}x{n}, {args.threads} threads: {gflops:.1f} GFLOP/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runtime": "torch", "n": n, "threads": args.threads, "gflops": gflops}, f)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(q):
        q.add_argument("--threads", type=int, default=2)
        q.add_argument("--json", help="write the result as JSON to this file")

    c = sub.add_parser("check", help="compare with a `coalesce bench unet --dump DIR` output (and ONNX Runtime)")
    c.add_argument("--dump", required=True)
    c.add_argument("--weights", help="safetensors file (default: the one in DIR/meta.json)")
    c.add_argument("--onnx", help="export the network to this ONNX file and check ONNX Runtime too")
    c.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted max|diff| / max|reference|")
    common(c)
    t = sub.add_parser("time", help="time one denoiser call (or training step)")
    t.add_argument("--runtime", choices=["torch", "ort"], default="torch")
    t.add_argument("--model", default="latent-diffusion")
    t.add_argument("--models-dir", default="models")
    t.add_argument("--weights")
    t.add_argument("--onnx", help="the ONNX file (ort)")
    t.add_argument("--batch", type=int, default=2)
    t.add_argument("--train", action="store_true")
    t.add_argument("--seconds", type=float, default=3.0)
    t.add_argument("--rounds", type=int, default=1)
    common(t)
    s = sub.add_parser("sgemm", help="torch square sgemm GFLOP/s")
    s.add_argument("--seconds", type=float, default=1.0)
    common(s)
    args = p.parse_args()
    {"check": cmd_check, "time": cmd_time, "sgemm": cmd_sgemm}[args.cmd](args)


if __name__ == "__main__":
    main()
