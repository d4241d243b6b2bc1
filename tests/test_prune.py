"""Structured pruning on torch-pruning: the custom pruners (GDN, pixel shuffle / unshuffle,
channel shuffle, depthwise, contexts, entropy heads, ShuffleNetV2 branches, latent), their
profiler counts against hand counts, zero-channel invariance, config rebuild and real
bitstreams, importance, the budget search, and ``python -m prune`` end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch_pruning as tp
from hydra import compose, initialize_config_module

from codec.checkpoint import load_checkpoint, save_checkpoint
from codec.engine import RateDistortion
from codec.registry import create_codec
from profiling.counter import profile_codec
from prune.graph import PruningGraph, trace_view
from prune.importance import make_importance
from prune.plan import apply_plan, make_plan, prune_to, rebuild, score_units, smallest_reachable
from prune.pruners import CUSTOM_PRUNERS, PhaseContextPruner, SubPixelUpPruner
from prune.run import RateMismatch, run, step_budget
from student.blocks import PixelUnshuffleDown, SubPixelUp
from student.context import PhaseContext
from student.zoo import CONTEXTS, TINY_WIDTHS, TRANSFORMS
from tests.conftest import live_latents

REPO = Path(__file__).resolve().parents[1]
RES = (768, 512)
PIXELS = 768 * 512
# positions per resolution level at 768x512 (H/2 .. H/64) and on the checkerboard grid of the latent
P2, P4, P8, P16, P32, P64 = 98304, 24576, 6144, 1536, 384, 96
#: depthwise transform without stage blocks except one at H/4 (the depthwise case), and the
#: shuffle transform without ShuffleNetV2 units (grouped resampling + channel shuffle everywhere)
FLAT_DW = dict(TRANSFORMS["depthwise"], depths=[0, 1, 0, 0], synthesis_depths=[0, 0, 0, 0])
FLAT_SHUFFLE = dict(TRANSFORMS["shuffle"], depths=[0, 0, 0, 0], synthesis_depths=[0, 0, 0, 0])
CKBD = dict(CONTEXTS["checkerboard"], width=8)


def student(transform=FLAT_DW, context=CKBD, seed=0, **over):
    torch.manual_seed(seed)
    return create_codec("student", transform=transform, context=context, **{**TINY_WIDTHS, **over})


def kmac(model) -> tuple[float, float]:
    p = profile_codec(model.eval(), RES, wall_runs=0, strict=True)
    return p["encoder"]["kmac_per_px"], p["decoder"]["kmac_per_px"]


def outputs(model, seed=1):
    """Every part's output without quantization (what the pruner traces)."""
    x = torch.rand(1, 3, model.stride, model.stride, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return trace_view(model.eval(), x)


def root_of(model, member: str, latent=False) -> str:
    """The root of the allowed group holding ``member``'s output channels (the same channel
    indices: every case below names a layer in the group's own channel space)."""
    return PruningGraph(model, latent=latent).group_with(member).root


def cut(model, member: str, idxs: list[int], latent=False):
    return apply_plan(model, {root_of(model, member, latent): idxs}, latent=latent)


def zero_channels(model, member: str, idxs: list[int]) -> None:
    """Make channels ``idxs`` of ``member``'s group exactly zero wherever they are produced (the
    weights and biases of every member that outputs them), so that cutting them cannot change
    any output."""
    pg = PruningGraph(model)
    group = pg.group_with(member)
    dg = pg.graphs[group.graph][0]
    with torch.no_grad():
        for item in pg.tp_group(group, idxs):
            layer, out, ids = item.dep.target.module, dg.is_out_channel_pruning_fn(item.dep.handler), list(item.idxs)
            if not out:
                continue
            convs = []
            if isinstance(layer, torch.nn.Conv2d):
                convs = [(layer, ids)]
            elif isinstance(layer, SubPixelUp):
                convs = [(layer.conv_pw, SubPixelUpPruner()._conv_rows(layer, ids))]
                if isinstance(layer.conv_dw, torch.nn.Conv2d):
                    convs.append((layer.conv_dw, ids))
            elif isinstance(layer, PixelUnshuffleDown):
                n = layer.conv_pw.out_channels
                convs = [(layer.conv_pw, [(o % layer.groups) * (n // layer.groups) + o // layer.groups for o in ids])]
            elif isinstance(layer, PhaseContext):
                convs = [(layer.conv_pw, PhaseContextPruner()._rows(layer, ids))]
            for conv, rows in convs:
                conv.weight[rows] = 0.0
                if conv.bias is not None:
                    conv.bias[rows] = 0.0


def group_of(model, member: str, latent=False):
    return PruningGraph(model, latent=latent).group_with(member)


# ------------------------------------------------------------------ hand counts, per pruner
#: (model factory, a layer whose output channels are cut, channels, encoder MACs removed, decoder MACs
#: removed) at 768x512;
#: every count is written out in the comment above its case.
HAND = {
    # Simplified GDN (full, inverse) after g_s's 1x1 at H/16, 16 -> 12: the 1x1's rows 4 x 16 (M),
    # gamma 16^2 - 12^2, the next sub-pixel conv's input columns 4 x (12 x 4 rows), per H/16 position.
    "gdn": (student, "g_s.0.0", [1, 5, 6, 9], 0, (4 * 16 + 16**2 - 12**2 + 4 * 48) * P16),
    # Sub-pixel up 16 -> 12 (H/16 -> H/8) cut to 8: its 1x1 loses 4 x 4 rows of 16 inputs at H/16,
    # its depthwise 3x3 4 x 9 and its IGDN 12^2 - 8^2 at H/8; the next up's 1x1 (12 -> 8 x 4)
    # loses 4 input columns of its 32 rows at H/8.
    "pixel_shuffle": (student, "g_s.1.0", [0, 3, 4, 11], 0, 16 * 16 * P16 + (36 + 144 - 64 + 32 * 4) * P8),
    # Pixel-unshuffle down 8 -> 12 (H/4 -> H/8) cut to 8: its 1x1 loses 4 rows of 8 x 4 inputs and
    # its GDN 12^2 - 8^2 at H/8; the next down's depthwise 3x3 loses 4 x 9 at H/8 and its 1x1
    # (12 x 4 -> 16) loses 4 x 4 input columns of its 16 rows at H/16.
    "pixel_unshuffle": (student, "g_a.3.0", [2, 3, 7, 8], (4 * 32 + 144 - 64 + 36) * P8 + 16 * 16 * P16, 0),
    # Level H/4 with a depthwise-separable block (residual), 8 -> 6: the down's 1x1 rows 2 x 16,
    # its GDN 8^2 - 6^2, the block's depthwise 2 x 9 (input tied to output) and pointwise
    # 8^2 - 6^2, the next down's depthwise 2 x 9, all at H/4; its 1x1 loses 2 x 4 columns of 12 rows at H/8.
    "depthwise": (student, "g_a.2.0", [0, 5],
                  (2 * 16 + 64 - 36 + 2 * 9 + 64 - 36 + 2 * 9) * P4 + 8 * 12 * P8, 0),
    # Checkerboard step 1 context 8 -> 4 (M = 16, 2 known and 2 coded phases, 24 x 16 grid): the
    # grouped 1x1 loses 2 x 4 rows of 2 x 16 inputs per grid position; the head of step 1 loses
    # 4 input columns of its 16 rows at each of its 768 coded elements. Both sides.
    "context": (student, "context.nets.1", [0, 2, 5, 7], 8 * 32 * P32 + 4 * 16 * 768, 8 * 32 * P32 + 4 * 16 * 768),
    # Hidden width of the step-0 entropy head 16 -> 8 (anchors: 768 elements; 16 hyper channels
    # in, 2M = 32 out): 8 x 16 + 8 x 32 per element. Both sides.
    "entropy_head": (student, "entropy_parameters.nets.0.0", list(range(8)), 384 * 768, 384 * 768),
    # Hyper features 16 -> 12 (h_s's last up, H/32 -> H/16, read by both heads): its 1x1 loses
    # 4 x 4 rows of 12 inputs at H/32, its depthwise 4 x 9 at H/16; each head loses 4 columns of
    # its 16 rows per coded element (768 each). Both sides.
    "hyper_features": (student, "h_s.2", [1, 2, 3, 4], 16 * 12 * P32 + 36 * P16 + 2 * 64 * 768,
                       16 * 12 * P32 + 36 * P16 + 2 * 64 * 768),
    # Channel shuffle: grouped (g = 2) sub-pixel up 16 -> 12 with a channel shuffle, cut to 8 by
    # one unit {0, 1, 6, 7} (its shuffle blocks {0, 1}, {6, 7}; the same local channels 0, 1 of
    # both groups of the next grouped conv): its 1x1 (48 rows of 8 inputs) loses 16 rows at H/16,
    # its depthwise 4 x 9 and diagonal IGDN 4 at H/8; the next grouped up's 1x1 (32 rows of 6
    # inputs) loses 2 columns of each group: 32 x 2 at H/8.
    "channel_shuffle": (lambda: student(FLAT_SHUFFLE), "g_s.1.0", [0, 1, 6, 7], 0, 16 * 8 * P16 + (36 + 4 + 64) * P8),
    # A ShuffleNetV2 unit's branch at H/4 (width 8: 4 in, 4 hidden, 4 out), hidden 4 -> 2:
    # pointwise rows 2 x 4, depthwise 2 x 9, pointwise columns 2 x 4, at H/4.
    "shuffle_branch": (lambda: student(TRANSFORMS["shuffle"]), "g_a.2.1.right.2", [1, 3], (8 + 18 + 8) * P4, 0),
}


@pytest.mark.parametrize("case", sorted(HAND))
def test_each_pruner_cuts_to_the_hand_counted_kmac(case):
    make, member, idxs, enc_macs, dec_macs = HAND[case]
    model = make()
    before = kmac(model)
    pruned = cut(model, member, idxs)  # forward + rebuild from config + strict load, checked inside
    after = kmac(pruned)
    assert before[0] - after[0] == pytest.approx(enc_macs / PIXELS / 1000, abs=1e-12)
    assert before[1] - after[1] == pytest.approx(dec_macs / PIXELS / 1000, abs=1e-12)
    assert all(p.shape[0] > 0 for p in pruned.parameters())
    x = torch.rand(1, 3, 64, 128)
    assert pruned.eval()(x)["x_hat"].shape == x.shape


def test_codec_gdn_is_cut_as_gamma_keep_keep_with_the_hand_count():
    """codec.layers.GDN (the factorized baseline's g_a) through a torch-pruning graph with the custom
    pruner: cutting 2 of 8 channels after the first 5x5 stride-2 conv removes its rows 2 x 75 and
    gamma 8^2 - 6^2 at H/2 and the next conv's columns 2 x 8 x 25 at H/4 (encoder side)."""
    torch.manual_seed(0)
    model = create_codec("factorized", N=8, M=12).eval()
    x = torch.rand(1, 3, 64, 64)
    before = kmac(model)
    dg = tp.DependencyGraph().build_dependency(model.g_a, x, customized_pruners=dict(CUSTOM_PRUNERS), verbose=False)
    keep = [0, 2, 3, 4, 6, 7]
    gamma = model.g_a[1].gamma.detach().clone()
    dg.get_pruning_group(model.g_a[0], tp.prune_conv_out_channels, [1, 5]).prune()
    assert model.g_a[1].beta.shape == (6,) and model.g_a[1].gamma.shape == (6, 6)
    torch.testing.assert_close(model.g_a[1].gamma.detach(), gamma[keep][:, keep])
    after = kmac(model)
    macs = (2 * 75 + 64 - 36) * P2 + 2 * 8 * 25 * P4
    assert before[0] - after[0] == pytest.approx(macs / PIXELS / 1000, abs=1e-12)
    assert before[1] == after[1]


def test_codec_gdn_cut_of_zero_channels_leaves_the_output_unchanged():
    torch.manual_seed(0)
    model = create_codec("factorized", N=8, M=12).eval()
    with torch.no_grad():
        model.g_a[0].weight[[1, 5]] = 0.0
        model.g_a[0].bias[[1, 5]] = 0.0
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.g_a(x)
    dg = tp.DependencyGraph().build_dependency(model.g_a, x, customized_pruners=dict(CUSTOM_PRUNERS), verbose=False)
    dg.get_pruning_group(model.g_a[0], tp.prune_conv_out_channels, [1, 5]).prune()
    with torch.no_grad():
        torch.testing.assert_close(model.g_a(x), expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------- zero channels cut: nothing changes
ZERO = {
    "gdn": (student, "g_s.0.0", [1, 5, 6, 9]),
    "gdn_diag": (student, "g_a.1.1", [0, 3]),
    "pixel_shuffle": (student, "g_s.1.0", [0, 3, 4, 11]),
    "pixel_unshuffle": (student, "g_a.3.0", [2, 3, 7, 8]),
    "depthwise": (student, "g_a.2.1.conv_dw", [0, 5]),
    "context": (student, "context.nets.1", [0, 2, 5, 7]),
    "context_msp": (lambda: student(context=dict(CONTEXTS["msp"], width=8)), "context.nets.4", [1, 6]),
    "entropy_head": (student, "entropy_parameters.nets.1.0", [0, 4, 15]),
    "hyper_features": (student, "h_s.2", [1, 2, 3, 4]),
    "channel_shuffle_up": (lambda: student(FLAT_SHUFFLE), "g_s.1.0", [2, 3, 8, 9]),
    "channel_shuffle_down": (lambda: student(FLAT_SHUFFLE), "g_a.3.0", [2, 3, 8, 9]),
    "grouped_down_input": (lambda: student(FLAT_SHUFFLE), "g_a.1.1", [0, 2]),
    "shuffle_branch": (lambda: student(TRANSFORMS["shuffle"]), "g_a.3.1.right.2", [0, 4]),
}


@pytest.mark.parametrize("case", sorted(ZERO))
def test_cutting_channels_whose_weights_are_zero_changes_no_output(case):
    make, member, idxs = ZERO[case]
    model = make()
    zero_channels(model, member, idxs)
    expected = outputs(model)
    pruned = cut(model, member, idxs)
    got = outputs(pruned)
    assert [t.shape for t in got] != [] and len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_channel_shuffle_blocks_are_units_and_a_partial_block_is_refused():
    """g_s's H/8 width (12) leaves a grouped up behind a channel shuffle (blocks {2n, 2n + 1}) and
    enters a grouped up (the same local channel of both groups, {c, c + 6}): units of 4."""
    group = group_of(student(FLAT_SHUFFLE), "g_s.1.0")
    assert sorted(map(sorted, group.units)) == [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10, 11]]
    down_in = group_of(student(FLAT_SHUFFLE), "g_a.1.1")  # feeds a grouped down only: {c, c + w0/2}
    assert sorted(map(sorted, down_in.units)) == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="must be pruned together"):
        cut(student(FLAT_SHUFFLE), "g_s.1.0", [0, 6])  # the same local channels, half a shuffle block
    with pytest.raises(ValueError, match="must be pruned together"):
        cut(student(FLAT_SHUFFLE), "g_s.1.0", [0, 1])  # a shuffle block, one group of the next conv


def test_shufflenet_unit_ends_are_kept_out_and_their_branches_pruned():
    pg = PruningGraph(student(TRANSFORMS["shuffle"]))
    kept = dict(pg.refused)
    assert any("ShuffleNetV2" in why for why in kept.values())
    roots = {g.root for g in pg.groups}
    assert not any(r.startswith(("g_a.2.0", "g_a.3.0", "g_a.4.0", "g_s.0.0", "g_s.1.0", "g_s.2.0")) for r in roots)
    assert {"g_a.2.1.right.2", "g_s.0.2.right.2", "h_a.1.right.2"} <= roots
    # g_a's H/2 level has no unit: still prunable, through the grouped down-sampling's input sets
    assert "g_a.1.1" in roots


def test_latent_groups_are_refused_by_default_and_cut_with_every_reader_when_asked():
    model = live_latents(student())
    kept = dict(PruningGraph(model).refused)
    assert "latent y" in kept["g_a.5"] and "hyper latent z" in kept["h_a.2"]
    z = group_of(model, "h_a.2", latent=True)
    assert ("h_s.0", "in") in z.members and z.root == "h_a.2"
    y = group_of(model, "g_a.5", latent=True)
    assert y.root == "g_a.5"
    assert {("g_s.0.0", "in"), ("h_a.0", "in"), ("context.nets.1", "in"), ("entropy_parameters.nets.0.2", "out"),
            ("entropy_parameters.nets.1.2", "out")} <= set(y.members)
    before = kmac(model)
    # z 8 -> 6: h_a's last down loses 2 rows of 12 x 4 inputs, h_s's first up 2 input columns of its
    # 12 x 4 rows, at H/64 (96 positions); the encoder runs both, the decoder only h_s.
    pruned = apply_plan(model, {"h_a.2": [0, 7], "g_a.5": [3, 4, 10, 15]}, latent=True)
    assert (pruned.latent, pruned.hyper) == (12, 6)
    assert pruned.config["latent"] == 12 and pruned.config["hyper"] == 6
    assert pruned.entropy_bottleneck.matrices[0].shape[0] == 6
    only_z = kmac(apply_plan(model, {"h_a.2": [0, 7]}, latent=True))
    assert before[0] - only_z[0] == pytest.approx(2 * 2 * 48 * P64 / PIXELS / 1000, abs=1e-12)
    assert before[1] - only_z[1] == pytest.approx(2 * 48 * P64 / PIXELS / 1000, abs=1e-12)
    x = torch.rand(1, 3, 70, 45)
    data = pruned.compress(x)
    assert torch.equal(pruned.decompress(data), pruned.reconstruct(x)[0])


def test_latent_pruning_of_a_variable_rate_model_cuts_each_rate_gains_with_y():
    """prune.latent on a variable-rate student: the gain and inverse-gain columns of the removed
    y channels go with them, the kept ones are the original columns, and the pruned model is
    rebuilt from its config and codes a stream that decodes to its reconstruction at every rate."""
    model = live_latents(student(rates=[0.002, 0.02]))
    before_gain = model.gain.log_gain.detach().clone()
    before_inverse = model.gain.log_inverse_gain.detach().clone()
    cut_y = [3, 4, 10, 15]
    pruned = apply_plan(model, {"g_a.5": cut_y}, latent=True)
    keep = [j for j in range(model.latent) if j not in cut_y]
    assert pruned.latent == model.latent - len(cut_y) and pruned.config["latent"] == pruned.latent
    assert pruned.gain.log_gain.shape == (2, pruned.latent)
    assert torch.equal(pruned.gain.log_gain, before_gain[:, keep])
    assert torch.equal(pruned.gain.log_inverse_gain, before_inverse[:, keep])
    x = torch.rand(1, 3, 70, 45)
    sizes = []
    for rate in (0, 1):
        data = pruned.compress(x, rate=rate)
        assert torch.equal(pruned.decompress(data), pruned.reconstruct(x, rate=rate)[0])
        sizes.append(len(data))
    assert sizes[1] > sizes[0]


# ---------------------------------------------------------------- checkpoints and bitstreams
@pytest.mark.parametrize("transform,context", [("depthwise", "checkerboard"), ("shuffle", "msp"),
                                               ("inverted_residual", "checkerboard")])
def test_pruned_checkpoint_reloads_weights_only_and_round_trips_a_real_bitstream(transform, context, tmp_path):
    model = live_latents(student(TRANSFORMS[transform], dict(CONTEXTS[context], width=8)))
    pg = PruningGraph(model)
    pruned = apply_plan(model, make_plan(score_units(pg, make_importance("l2")), 0.6, round_to=2))
    assert pruned.config["layer_widths"] != model.layer_widths().as_config()
    save_checkpoint(tmp_path / "p.ckpt", pruned)
    blob = torch.load(tmp_path / "p.ckpt", weights_only=True)
    assert blob["config"]["layer_widths"] == pruned.layer_widths().as_config()
    loaded, _ = load_checkpoint(tmp_path / "p.ckpt")
    x = torch.rand(1, 3, 70, 45)
    data = loaded.compress(x)
    y_symbols = pruned.eval().compress(x)
    assert data == y_symbols
    assert torch.equal(loaded.decompress(data), loaded.reconstruct(x)[0])


def test_a_model_not_described_by_its_config_is_caught():
    model = student()
    bad = cut(model, "g_s.1.0", [0, 3, 4, 11])
    with torch.no_grad():  # a cut the config cannot describe: one SubPixelUp row block short
        bad.g_s[1][0].conv_pw.weight = torch.nn.Parameter(bad.g_s[1][0].conv_pw.weight[:-4])
        bad.g_s[1][0].conv_pw.out_channels -= 4
    with pytest.raises(Exception, match="not described by its config"):
        rebuild(bad)


# ---------------------------------------------------------------------- importance and plans
@pytest.mark.parametrize("kind", ["l1", "l2", "taylor", "random"])
def test_every_importance_gives_a_valid_plan(kind):
    model = student(TRANSFORMS["inverted_residual"])
    if kind == "taylor":
        model.train()
        RateDistortion({"lmbda": 0.01})(model, torch.rand(2, 3, 64, 64))["loss"].backward()
    torch.manual_seed(0)
    rankings = score_units(PruningGraph(model), make_importance(kind))
    pruned = apply_plan(model, make_plan(rankings, 0.5, round_to=2))
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("kind", ["l1", "l2", "taylor"])
def test_channels_without_weights_are_the_least_important(kind):
    model = student()
    root, idxs = root_of(model, "g_s.1.0"), [3, 9]
    zero_channels(model, "g_s.1.0", idxs)
    with torch.no_grad():  # and what reads them
        model.g_s[2][0].conv_pw.weight[:, idxs] = 0.0
    if kind == "taylor":
        model.train()
        RateDistortion({"lmbda": 0.01})(model, torch.rand(2, 3, 64, 64))["loss"].backward()
    ranking = score_units(PruningGraph(model), make_importance(kind))[root]
    assert sorted(i for u in ranking.units[:2] for i in u) == idxs


def test_plans_respect_round_to_minimum_and_are_monotone():
    rankings = score_units(PruningGraph(student(widths=[8, 16, 24, 32], hyper_width=24, entropy_width=32)),
                           make_importance("l1"))
    sizes = {root: r.group.size for root, r in rankings.items()}
    previous = {root: 0 for root in rankings}
    for scope in ("uniform", "global"):
        previous = {root: 0 for root in rankings}
        for ratio in (0.0, 0.2, 0.5, 0.8, 1.0):
            plan = make_plan(rankings, ratio, round_to=8, min_channels=1, scope=scope)
            for root, cut in plan.items():
                left = sizes[root] - len(cut)
                assert left >= 8 and left % 8 == 0
            for root in rankings:
                assert len(plan.get(root, [])) >= previous[root]
                previous[root] = len(plan.get(root, []))
        assert all(previous[root] == sizes[root] - 8 for root in rankings if sizes[root] >= 16)


def test_the_budget_search_meets_a_budget_measured_by_the_profiler():
    model = student()
    rankings = score_units(PruningGraph(model), make_importance("l1"))

    def measure(m):
        e, d = kmac(m)
        return {"encoder": e, "decoder": d}

    start = measure(model)
    floor, _ = smallest_reachable(model, rankings, measure, round_to=1)
    budget = {"encoder": None, "decoder": (start["decoder"] + floor["decoder"]) / 2}
    result = prune_to(model, rankings, budget, measure, round_to=1, iters=6)
    assert result.met and result.kmac["decoder"] <= budget["decoder"] < start["decoder"]
    assert measure(result.model) == result.kmac
    assert not prune_to(model, rankings, {"encoder": None, "decoder": floor["decoder"] * 0.9}, measure, round_to=1,
                        iters=2).met


def test_step_budgets_are_geometric_and_end_at_the_target():
    start, target = {"encoder": 8.0, "decoder": 4.0}, {"encoder": None, "decoder": 1.0}
    b = [step_budget(start, target, k, 2)["decoder"] for k in (1, 2)]
    assert b == pytest.approx([2.0, 1.0])
    assert step_budget(start, {"encoder": 16.0, "decoder": None}, 1, 2)["encoder"] == 16.0


# ------------------------------------------------------------------------------ the command
FAST = ["prune.round_to=2", "prune.bisection_iters=3", "trainer.batch_size=2", "data.crop_size=64",
        "trainer.progress=false", "data.max_eval_images=1", "trainer.threads=1", "trainer.log_every=1"]


@pytest.fixture(scope="module")
def source_ckpt(tmp_path_factory) -> Path:
    """An untrained student_tiny recorded at the default rate point (beta 0.0067)."""
    path = tmp_path_factory.mktemp("src") / "student.ckpt"
    torch.manual_seed(0)
    save_checkpoint(path, create_codec("student_tiny"), meta={"config": {"loss": {"lmbda": 0.0067}}})
    return path


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def test_an_unreachable_target_is_refused_with_one_line(source_ckpt, tmp_path):
    cmd = [sys.executable, "-m", "prune", f"checkpoint={source_ckpt}", "target.decoder_kmac=0.001", *FAST,
           "logger=none", f"hydra.run.dir={tmp_path / 'run'}"]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("prune: target decoder 0.001 kMAC/px is below the smallest reachable decoder ")
    floor = float(lines[0].split("smallest reachable decoder ")[1].split()[0])
    assert 0.001 < floor < 0.05  # the student_tiny figure is 0.053: pruning can go well below it
    assert not (tmp_path / "run" / "step_1").exists()


def test_a_checkpoint_of_another_rate_point_is_refused(source_ckpt, tmp_path):
    with initialize_config_module(config_module="conf", version_base=None):
        cfg = compose("prune", overrides=[f"checkpoint={source_ckpt}", "target.decoder_kmac=0.03", "loss.beta=0.013",
                                          *FAST, "logger=none"])
    with pytest.raises(RateMismatch, match="trained at lmbda/beta=0.0067"):
        run(cfg, tmp_path)


def test_python_m_prune_end_to_end_then_the_profiler_measures_the_result(source_ckpt, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "prune", f"checkpoint={source_ckpt}", "target.decoder_kmac=0.03", "prune.steps=2",
           "prune.finetune_steps=2", *FAST, f"hydra.run.dir={out}"]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "prune.json").read_text())
    rows = summary["rows"]
    assert [row["step"] for row in rows] == [0, 1, 2] and summary["met"]
    dec = [row["decoder_kmac_per_px"] for row in rows]
    assert dec[0] > dec[1] > dec[2] and dec[2] <= 0.03 < dec[1]
    assert rows[1]["step_budget"]["decoder"] == pytest.approx((dec[0] * 0.03) ** 0.5)
    for row in rows:
        assert row["bpp"] > 0 and row["psnr_rgb"] > 0 and row["params"] > 0
    assert rows[2]["params"] < rows[1]["params"] < rows[0]["params"]
    model, blob = load_checkpoint(out / "last.ckpt")
    assert set(blob) == {"format", "codec", "config", "state_dict", "meta"}  # a plain checkpoint
    assert blob["config"]["layer_widths"] == rows[2]["widths"]
    assert list((out / "step_1" / "wandb").glob("offline-run-*"))  # the engine's logger, one run per step
    prof = subprocess.run([sys.executable, "-m", "profiling", f"checkpoint={out / 'last.ckpt'}", "wall_runs=0",
                           "strict=true", f"hydra.run.dir={tmp_path / 'prof'}"], env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert prof.returncode == 0, prof.stderr[-2000:]
    profile = json.loads((tmp_path / "prof" / "profile.json").read_text())
    assert profile["decoder"]["kmac_per_px"] == pytest.approx(dec[2], abs=1e-12)


def test_an_interrupted_run_resumes_its_unfinished_step(source_ckpt, tmp_path):
    with initialize_config_module(config_module="conf", version_base=None):
        cfg = compose("prune", overrides=[f"checkpoint={source_ckpt}", "target.decoder_kmac=0.03", "prune.steps=2",
                                          "prune.finetune_steps=2", *FAST, "logger=none"])
    first = run(cfg, tmp_path)
    cut_1 = (tmp_path / "step_1" / "pruned.ckpt").stat().st_mtime_ns
    (tmp_path / "step_2" / "row.json").unlink()  # as if killed after step 2's fine-tuning
    (tmp_path / "last.ckpt").unlink()
    again = run(cfg, tmp_path)
    assert (tmp_path / "step_1" / "pruned.ckpt").stat().st_mtime_ns == cut_1  # step 1 not redone
    keys = ("step", "ratio", "encoder_kmac_per_px", "decoder_kmac_per_px", "params", "widths")
    assert [{k: r[k] for k in keys} for r in again["rows"]] == [{k: r[k] for k in keys} for r in first["rows"]]
    assert (tmp_path / "last.ckpt").exists()


def test_fine_tuning_distils_from_a_teacher_when_given(source_ckpt, tmp_path):
    torch.manual_seed(0)
    teacher = tmp_path / "teacher.ckpt"
    save_checkpoint(teacher, create_codec("vmuc_tiny"), meta={"config": {"loss": {"lmbda": 0.0067}}})
    with initialize_config_module(config_module="conf", version_base=None):
        cfg = compose("prune", overrides=[f"checkpoint={source_ckpt}", "target.decoder_kmac=0.045", "prune.steps=1",
                                          "prune.finetune_steps=2", f"teacher={teacher}", "distill/loss=output", *FAST,
                                          "logger=none"])
    summary = run(cfg, tmp_path / "run")
    assert summary["met"]
    step = json.loads((tmp_path / "run" / "step_1" / "summary.json").read_text())
    assert step["teacher_path"] == str(teacher) and step["distill_loss"]["name"] == "output"
    metrics = [json.loads(line) for line in (tmp_path / "run" / "step_1" / "metrics.jsonl").read_text().splitlines()]
    assert any("kd_output" in row for row in metrics)
