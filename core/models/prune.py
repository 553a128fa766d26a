"""A student cut out of the teacher: MobileNetV2 with fewer expanded channels.

Every inverted-residual block of MobileNetV2 widens its input ``t`` times (the *expanded*
layer), filters it depthwise and projects it back. Most of the network's arithmetic is in
those expanded layers, and their channels are not equally useful. :func:`prune_mobilenet_v2`
keeps, in every block, the expanded channels that contribute most to the block's output on
real photos and copies the teacher's weights for them: the result is a
``cukd_mnv2_pruned`` student with the teacher's block outputs, stem and final layer, a
fraction of its cost, and (before any training) features already close to the teacher's.
Distillation then recovers what the removed channels carried.

Importance of expanded channel ``j`` of a block: the mean absolute activation after the
depthwise layer on the calibration photos times the norm of the projection's column ``j``
scaled by the projection BatchNorm, a first-order estimate of how much of the block output
the channel carries.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from core.models.mobilenet_v2 import InvertedResidual, MobileNetV2
from core.models.students import Student
from core.preprocess import Preprocess

__all__ = ["channel_importance", "hidden_widths", "prune_mobilenet_v2"]


def _blocks(net: MobileNetV2) -> list[InvertedResidual]:
    return [m for m in net.features if isinstance(m, InvertedResidual)]


def _parts(block: InvertedResidual) -> tuple[nn.Sequential | None, nn.Sequential,
                                              nn.Conv2d, nn.BatchNorm2d]:
    layers = list(block.conv)
    expand = layers[0] if len(layers) == 4 else None
    return expand, layers[-3], layers[-2], layers[-1]


@torch.no_grad()
def channel_importance(net: MobileNetV2, images: torch.Tensor, preprocess: Preprocess,
                       batch_size: int = 32) -> list[torch.Tensor]:
    """Per block, the importance of each expanded channel (see the module docstring) on
    ``images`` (uint8 ``[N, 3, S, S]``)."""
    net.eval()
    blocks = _blocks(net)
    sums = [torch.zeros(_parts(b)[2].in_channels) for b in blocks]
    hooks = []
    for i, b in enumerate(blocks):
        dw = _parts(b)[1]

        def hook(_m, _inp, out, i=i) -> None:
            sums[i] += out.abs().mean((2, 3)).sum(0).float()

        hooks.append(dw.register_forward_hook(hook))
    try:
        for s in range(0, len(images), batch_size):
            net.forward_features(preprocess.normalize(images[s:s + batch_size]))
    finally:
        for h in hooks:
            h.remove()
    out = []
    for i, b in enumerate(blocks):
        _e, _dw, proj, bn = _parts(b)
        scale = (bn.weight.abs() * torch.rsqrt(bn.running_var + bn.eps)).view(-1, 1)
        col = (proj.weight[:, :, 0, 0] * scale).norm(dim=0)
        out.append(sums[i] / max(1, len(images)) * col)
    return out


def hidden_widths(net: MobileNetV2, keep: float, multiple: int = 8) -> list[int]:
    """Expanded widths keeping ``keep`` of every block's channels (rounded to ``multiple``);
    a block without expansion keeps its width (its expanded layer is its input)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    widths = []
    for b in _blocks(net):
        expand, _dw, proj, _bn = _parts(b)
        full = proj.in_channels
        if expand is None:
            widths.append(full)
        else:
            widths.append(min(full, max(multiple, round(full * keep / multiple) * multiple)))
    return widths


@torch.no_grad()
def prune_mobilenet_v2(net: MobileNetV2, hidden: Sequence[int],
                       importance: Sequence[torch.Tensor], input_size: int) -> Student:
    """A ``cukd_mnv2_pruned`` student of input ``input_size`` holding ``net``'s weights for the
    ``hidden[i]`` most important expanded channels of each block ``i`` (everything else, stem,
    block outputs and final 1×1 layer, copied unchanged; the classifier dropped)."""
    student = Student("cukd_mnv2_pruned", Preprocess(input_size), hidden=[int(h) for h in hidden],
                      last_channel=net.last_channel)
    dst: MobileNetV2 = student.backbone
    src_blocks, dst_blocks = _blocks(net), _blocks(dst)
    if len(src_blocks) != len(dst_blocks) or len(importance) != len(src_blocks):
        raise ValueError("hidden and importance need one entry per block")
    # everything outside the expanded layers is copied by name
    dst_sd = dst.state_dict()
    src_sd = net.state_dict()
    kept: dict[str, torch.Tensor] = {}
    for k, v in dst_sd.items():
        if src_sd[k].shape == v.shape:
            kept[k] = src_sd[k].clone()
    dst.load_state_dict(kept, strict=False)

    def copy_bn(d: nn.BatchNorm2d, s: nn.BatchNorm2d, idx: torch.Tensor) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(d, name).copy_(getattr(s, name)[idx])

    for sb, db, imp, h in zip(src_blocks, dst_blocks, importance, hidden, strict=True):
        se, sdw, sproj, sbn = _parts(sb)
        de, ddw, dproj, dbn = _parts(db)
        idx = torch.sort(torch.topk(imp, int(h)).indices).values
        if se is not None:
            de[0].weight.copy_(se[0].weight[idx])
            copy_bn(de[1], se[1], idx)
        elif int(h) != sproj.in_channels:
            raise ValueError("a block without expansion cannot be pruned")
        ddw[0].weight.copy_(sdw[0].weight[idx])
        copy_bn(ddw[1], sdw[1], idx)
        dproj.weight.copy_(sproj.weight[:, idx])
        copy_bn(dbn, sbn, torch.arange(sbn.num_features))
    return student


@torch.no_grad()
def reconstruct_projections(student: Student, teacher: MobileNetV2, images: torch.Tensor,
                            *, max_rows: int = 120_000, ridge: float = 1e-3,
                            batch_size: int = 32, seed: int = 0) -> list[float]:
    """Refit, block by block, each pruned block's projection so that the *student's* block
    output (on the student's own input, so earlier errors are corrected too) matches the
    teacher's block output on the teacher's input: a ridge least-squares problem per block
    (the projection and its BatchNorm are linear), solved in closed form on up to
    ``max_rows`` sampled pixel positions of ``images`` (uint8 ``[N, 3, S, S]``).

    The BatchNorm after the projection is set to the fitted map's own statistics, so the
    block computes the fitted map in eval mode and (nearly) in training mode too.

    Returns the relative squared error of every refitted block after the fit.
    """
    student.eval()
    teacher.eval()
    g = torch.Generator().manual_seed(seed)
    x0 = torch.cat([student.preprocess.normalize(images[i:i + batch_size])
                    for i in range(0, len(images), batch_size)])
    x_t = x_s = x0
    errors: list[float] = []
    for lt, ls in zip(teacher.features, student.backbone.features, strict=True):
        y_t = torch.cat([lt(x_t[i:i + batch_size]) for i in range(0, len(x_t), batch_size)])
        if (isinstance(lt, InvertedResidual) and isinstance(ls, InvertedResidual)
                and _parts(ls)[2].in_channels < _parts(lt)[2].in_channels):
            expand, dw, proj, bn = _parts(ls)
            pre = nn.Sequential(*([expand] if expand is not None else []), dw)
            h = torch.cat([pre(x_s[i:i + batch_size]) for i in range(0, len(x_s), batch_size)])
            target = y_t - x_s if ls.use_res_connect else y_t
            k, cout = h.shape[1], target.shape[1]
            hr = h.permute(0, 2, 3, 1).reshape(-1, k)
            tr = target.permute(0, 2, 3, 1).reshape(-1, cout)
            if len(hr) > max_rows:
                pick = torch.randperm(len(hr), generator=g)[:max_rows]
                hr, tr = hr[pick], tr[pick]
            hr64, tr64 = hr.double(), tr.double()
            mu_h, mu_t = hr64.mean(0), tr64.mean(0)
            hc, tc = hr64 - mu_h, tr64 - mu_t
            gram = hc.T @ hc
            gram += ridge * gram.diagonal().mean() * torch.eye(k, dtype=gram.dtype)
            w = torch.linalg.solve(gram, hc.T @ tc)  # [k, cout]
            b = mu_t - mu_h @ w
            z = hr64 @ w  # the projection's output before its BatchNorm
            mu_z, var_z = z.mean(0), z.var(0, unbiased=False)
            proj.weight.copy_(w.T.reshape(cout, k, 1, 1).float())
            bn.running_mean.copy_(mu_z.float())
            bn.running_var.copy_(var_z.float())
            bn.weight.copy_(torch.sqrt(var_z + bn.eps).float())
            bn.bias.copy_((b + mu_z).float())
            fit = hr64 @ w + b
            errors.append(float(((fit - tr64) ** 2).sum() / (tc ** 2).sum().clamp_min(1e-12)))
        y_s = torch.cat([ls(x_s[i:i + batch_size]) for i in range(0, len(x_s), batch_size)])
        x_t, x_s = y_t, y_s
    return errors
