"""MULTI-LANE: a frozen timm ViT with one prompted pathway ("lane") per step; every lane runs at
test time and scores its own step's classes, so no prompt is selected at test time.

Paper: De Min et al., "Less is more: Summarizing Patch Tokens for efficient Multi-Label
Class-Incremental Learning", CoLLAs 2024. Code read: tdemin16/multi-lane (`multi_lane/blocks.py`
`PreT_Attention`, `multi_lane/vision_transformer.py` `forward_features` / `forward_head`
(`head_mode: concat`), `multi_lane/engine.py`, `multi_lane/configs/coco.py`).

A lane holds S selector tokens, K/V prefix prompts (P per layer) in the first L blocks, and a
linear head for its step's classes. Per block, as their `PreT_Attention` with drop-and-replace:
1. the frozen pass: the image's tokens x go through the block unchanged (computed once, shared);
2. the selectors (after the block's norm1) attend over norm1(x) (softmax over tokens, scale
   D^-1/2, x detached) and summarise them into S tokens;
3. [lane class token, S summaries] go through the block's frozen attention with the lane's
   prompts prepended to keys and values;
4. the class token takes the attention output, the selectors their own normalised value (the
   "replace"), both through the block's residuals and MLP.
The lane's class token, after the ViT's final norm, L2-normalised ("pre-head"), is classified by
the lane's head; the model's logits are the lanes' heads side by side (their `concat` mode).
A new step's lane starts from a copy of the previous lane's selectors and prompts (their
`next_task`), with a new head.

`model.options`: `selectors` (their 20), `prompts` (20), `prompt_layers` (5), `normalize_input`
(theirs: none, raw [0, 1] pixels; `INPUT_STATS`), and for a small ViT on small images
`patch_size` / `depth` (null: the backbone's own). The ViT is built at `data.image_size`.
Initialisation as their `init` (`Lane`: selector norm S^-1/2, prompts drawn for all steps, head
trunc-normal 0.02 with zero bias).

Deviations: old lanes are frozen (requires_grad off) instead of relying on logit masking, so they
stay bit-identical whatever the optimizer does; the loss is cml's (`train.loss`) over all seen
classes: old lanes' outputs are constants, so the gradient reaches only the new lane as in their
masked BCE, but the mean runs over the seen classes rather than all 80 (a scale of the
gradient, which Adam's update cancels but for its eps);
their optional token merging and task-identifier ablations are not built. Only a timm ViT whose
blocks have the parts a lane runs by hand is accepted (`unsupported`, checked when built).
"""

from __future__ import annotations

import torch
from avalanche.models import DynamicModule
from torch import nn
from torch.nn import functional as F

from cml.core.errors import UserError
from cml.models._base import IMAGENET_MEAN, IMAGENET_STD, MultiLabelModel
from cml.models._parts import Fp32Linear, create_backbone, head_size


class Lane(nn.Module):
    """A lane drawn as their `init` draws task 0's part (later tasks copy the previous one): their
    selectors (T, S, D) and each block's prompts (2, T, P, D) go through `orthogonal_`, which
    flattens every dimension after the first, so the S x D selectors of a task are one unit vector
    (a selector's norm about S^-1/2) and a block's keys (values) of all T steps one unit vector
    (task 0's P x D part of norm about T^-1/2). The head is timm's ViT head init: truncated normal,
    std 0.02, zero bias (their single 80-class head; a lane's rows are independent of the others)."""

    def __init__(
        self, dim: int, selectors: int, prompts: int, prompt_layers: int, heads: int, num_classes: int, steps: int = 1
    ):
        super().__init__()
        self.selectors = nn.Parameter(nn.init.orthogonal_(torch.empty(1, selectors * dim)).view(selectors, dim))
        n = prompts * dim
        kv = [nn.init.orthogonal_(torch.empty(2, steps * n))[:, :n] for _ in range(prompt_layers)]
        self.prompts = nn.Parameter(torch.stack(kv).view(prompt_layers, 2, prompts, dim))
        self.heads = heads
        self.head = Fp32Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def continue_from(self, previous: Lane) -> None:
        with torch.no_grad():
            self.selectors.copy_(previous.selectors)
            self.prompts.copy_(previous.prompts)


def lane_attention(attn: nn.Module, tokens: torch.Tensor, prompts: torch.Tensor | None) -> torch.Tensor:
    """The block's frozen attention over the lane's tokens, prompts prepended to keys and values."""
    b, n, d = tokens.shape
    q, k, v = attn.qkv(tokens).reshape(b, n, 3, attn.num_heads, d // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if prompts is not None:  # (2, P, D) -> keys and values of shape (B, heads, P, head_dim)
        pk, pv = (
            p.reshape(1, -1, attn.num_heads, d // attn.num_heads).transpose(1, 2).expand(b, -1, -1, -1) for p in prompts
        )
        k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
    return attn.proj(attn.norm(out))


# their build_transform: ToTensor only ([0, 1] pixels), ImageNet's statistics with --normalize_input;
# "backbone": None, the statistics of the backbone's pretrained_cfg as for cml's other models
INPUT_STATS = {"none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), "imagenet": (IMAGENET_MEAN, IMAGENET_STD), "backbone": None}

VIT_PARTS = ("patch_embed", "_pos_embed", "patch_drop", "norm_pre", "norm")  # read by forward_outputs
BLOCK_PARTS = ("norm1", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")  # by _lane_block
ATTENTION_PARTS = ("num_heads", "q_norm", "k_norm", "proj", "norm")  # by lane_attention, with a fused qkv
# what a lane's attention would silently leave out (it calls qkv, softmax and proj, nothing else)
FOREIGN = {
    "rope": "rotary position embeddings (rope)",
    "rel_pos_bias": "a shared relative position bias (rel_pos_bias)",
    "relative_position_bias_table": "a relative position bias",
    "rel_pos": "a relative position bias (rel_pos)",
    "temperature": "cross-covariance attention (XCiT)",
    "proj_l": "talking-heads attention (CaiT)",
}


def unsupported(vit: nn.Module) -> str | None:
    """What the lanes need of the ViT and it lacks, checked when the model is built: each lane
    runs every block's parts by hand (the class token, norm1, a fused qkv, ls1, ...), so a ViT
    variant without one (test_vit2 has no class token, EVA no fused qkv, BEiT, CaiT, XCiT and the
    relpos ViTs other attention) used to be an AttributeError at the first batch."""
    if getattr(vit, "cls_token", None) is None:
        return "it has no class token (cls_token), which each lane's pathway starts from"
    missing = [name for name in VIT_PARTS if getattr(vit, name, None) is None]
    if missing:
        return f"it lacks {', '.join(missing)} (timm's VisionTransformer has them)"
    found = [what for name, what in FOREIGN.items() if getattr(vit, name, None) is not None]
    for i, block in enumerate(vit.blocks):
        attn = block.attn
        missing = [f"blocks[{i}].{n}" for n in BLOCK_PARTS if getattr(block, n, None) is None]
        missing += [f"blocks[{i}].attn.{n}" for n in ATTENTION_PARTS if getattr(attn, n, None) is None]
        qkv = getattr(attn, "qkv", None)
        if not isinstance(qkv, nn.Linear) or qkv.out_features != 3 * vit.embed_dim:
            missing.append(f"blocks[{i}].attn.qkv (one fused query-key-value projection)")
        if missing:
            return f"it lacks {', '.join(missing)}"
        found += [what for name, what in FOREIGN.items() if getattr(attn, name, None) is not None]
    if found:
        return f"its attention has {found[0]}, which a lane's attention would leave out"
    return None


def stream_length(experience) -> int:
    """The steps of the run (their prompts are drawn for all T tasks at once, `Lane`); 1 for an
    experience outside a stream (a test's stand-in)."""
    try:
        return len(experience.origin_stream)
    except (AttributeError, TypeError):
        return 1


class Lanes(DynamicModule):
    """The lanes, one per training step that brought classes; grows like the other heads."""

    def __init__(self, dim: int, heads: int, selectors: int, prompts: int, prompt_layers: int):
        super().__init__()
        self.shape = dict(dim=dim, selectors=selectors, prompts=prompts, prompt_layers=prompt_layers, heads=heads)
        self.lanes = nn.ModuleList()
        self.register_buffer("anchor", torch.empty(0), persistent=False)  # the device new lanes go to

    @property
    def num_classes(self) -> int:
        return sum(lane.head.out_features for lane in self.lanes)

    def adaptation(self, experience) -> None:
        extra = head_size(experience) - self.num_classes
        if not self.training or extra <= 0:
            return
        lane = Lane(num_classes=extra, steps=stream_length(experience), **self.shape).to(self.anchor.device)
        if len(self.lanes):
            lane.continue_from(self.lanes[-1])
        for old in self.lanes:
            old.requires_grad_(False)
        self.lanes.append(lane)


class MultiLane(MultiLabelModel):
    def __init__(
        self,
        backbone: str,
        pretrained: bool | str = False,
        num_classes: int = 0,
        image_size: int = 224,
        selectors: int = 20,
        prompts: int = 20,
        prompt_layers: int = 5,
        patch_size: int | None = None,
        depth: int | None = None,
        normalize_input: str = "none",
    ):
        super().__init__()
        self.input_mean_std = INPUT_STATS[normalize_input]  # read by cml.models.input_stats
        shape = {k: v for k, v in (("patch_size", patch_size), ("depth", depth)) if v is not None}
        not_a_vit = UserError(f"model.backbone: multilane needs a timm VisionTransformer, got {backbone!r}")
        try:
            self.backbone = create_backbone(backbone, pretrained, img_size=image_size, **shape)
        except TypeError:  # a CNN's constructor takes no img_size / patch_size / depth
            raise not_a_vit from None
        if not hasattr(self.backbone, "blocks") or not hasattr(self.backbone.blocks[0], "attn"):
            raise not_a_vit
        problem = unsupported(self.backbone)
        if problem:
            raise UserError(
                f"model.backbone: multilane cannot run on {backbone!r}: {problem}; use a plain ViT (vit_*, deit_*)"
            )
        self.backbone.requires_grad_(False)
        if prompt_layers > len(self.backbone.blocks):
            raise UserError(
                f"model.options.prompt_layers: {prompt_layers} is more than the ViT's "
                f"{len(self.backbone.blocks)} blocks"
            )
        self.lanes = Lanes(
            self.backbone.embed_dim, self.backbone.blocks[0].attn.num_heads, selectors, prompts, prompt_layers
        )

    @property
    def num_classes(self) -> int:
        return self.lanes.num_classes

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: no dropout, the same features whatever the mode
        return self

    def forward_outputs(self, x: torch.Tensor) -> dict:
        vit = self.backbone
        with torch.no_grad():
            x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        cls = vit.cls_token.expand(x.shape[0], -1, -1)
        lanes = [torch.cat([cls, lane.selectors.expand(x.shape[0], -1, -1)], dim=1) for lane in self.lanes.lanes]
        for i, block in enumerate(vit.blocks):
            with torch.no_grad():
                context = block.norm1(x)
            for j, lane in enumerate(self.lanes.lanes):
                lanes[j] = self._lane_block(block, lane, lanes[j], context, i)
            with torch.no_grad():
                x = block(x)
        logits = [
            lane.head(F.normalize(vit.norm(tokens[:, 0]), dim=-1)) for lane, tokens in zip(self.lanes.lanes, lanes)
        ]
        return {"logits": torch.cat(logits, dim=1) if logits else x.new_zeros(len(x), 0), "label_features": None}

    @staticmethod
    def _lane_block(block: nn.Module, lane: Lane, tokens: torch.Tensor, context: torch.Tensor, index: int):
        normed = block.norm1(tokens)
        cls, selectors = normed[:, :1], normed[:, 1:]
        weights = (selectors @ context.transpose(1, 2) * context.shape[-1] ** -0.5).softmax(dim=-1)
        summaries = weights @ context
        prompts = lane.prompts[index] if index < len(lane.prompts) else None
        out = lane_attention(block.attn, torch.cat([cls, summaries], dim=1), prompts)
        update = torch.cat([out[:, :1], selectors], dim=1)  # drop the summaries, keep the selectors
        tokens = tokens + block.drop_path1(block.ls1(update))
        return tokens + block.drop_path2(block.ls2(block.mlp(block.norm2(tokens))))
