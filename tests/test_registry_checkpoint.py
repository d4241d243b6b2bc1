"""Registry, checkpoints and entropy models of the spine."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from codec.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from codec.entropy import FactorizedPrior, GaussianConditional, default_scale_table
from codec.registry import config_hash, create_codec, list_codecs, register_codec


def test_list_codecs_pattern():
    assert {"factorized", "hyperprior", "mean_scale_hyperprior"} <= set(list_codecs())
    assert list_codecs("*hyperprior") == ["hyperprior", "mean_scale_hyperprior"]


def test_duplicate_registration_rejected():
    @register_codec("_test_dup")
    def one():  # pragma: no cover - never called
        ...

    with pytest.raises(ValueError, match="already registered"):
        @register_codec("_test_dup")
        def two():  # pragma: no cover
            ...


def test_config_is_complete_and_unknown_keys_named():
    m = create_codec("hyperprior", N=8)
    assert m.config == {"N": 8, "M": 192}
    with pytest.raises(TypeError, match="config keys are: N, M"):
        create_codec("hyperprior", width=3)
    with pytest.raises(KeyError, match="unknown codec 'nope'"):
        create_codec("nope")
    assert config_hash("hyperprior", {"N": 8, "M": 192}) != config_hash("hyperprior", {"N": 8, "M": 191})


def test_checkpoint_round_trip_without_pickled_classes(tmp_path):
    torch.manual_seed(0)
    m = create_codec("mean_scale_hyperprior", N=8, M=12)
    path = save_checkpoint(tmp_path / "m.ckpt", m, meta={"steps": 3, "lmbda": 0.01})
    blob = torch.load(path, weights_only=True)  # would raise on pickled classes
    assert blob["codec"] == "mean_scale_hyperprior" and blob["config"] == {"N": 8, "M": 12}
    loaded, blob = load_checkpoint(path)
    assert blob["meta"]["steps"] == 3
    x = torch.rand(1, 3, 64, 64)
    assert m.eval().compress(x) == loaded.compress(x)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(bad)
    m = create_codec("hyperprior", N=8, M=12)
    path = save_checkpoint(tmp_path / "m.ckpt", m)
    with pytest.raises(CheckpointError, match="holds codec 'hyperprior'"):
        load_checkpoint(path, expect_codec="factorized")
    blob = torch.load(path, weights_only=True)
    blob["config"]["M"] = 16  # widths that do not fit the weights: never guessed, refused
    torch.save(blob, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path)


def test_gaussian_likelihood_hand_values():
    gc = GaussianConditional()
    # P(|v| <= 0.5) for sigma = 1: erf(0.5/sqrt 2) = 0.38292492
    lik = gc.likelihood(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0]))
    phi = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))  # noqa: E731
    assert lik[0].item() == pytest.approx(phi(0.5) - phi(-0.5), rel=1e-6)
    assert lik[1].item() == pytest.approx(phi(1.5) - phi(0.5), rel=1e-5)
    table = torch.tensor(default_scale_table())
    idx = gc.scale_index(torch.tensor([0.0, 0.11, 0.1101, 1.0, 1e6]))
    assert idx.tolist()[0] == 0 and idx.tolist()[-1] == len(table) - 1
    assert table[idx[3]] >= 1.0 > table[idx[3] - 1]


def test_factorized_pmf_table_matches_likelihood_and_sums_to_one():
    torch.manual_seed(0)
    prior = FactorizedPrior(4)
    assert np.allclose(prior.pmf_table(2000).sum(1), 1.0, atol=1e-4)  # the untrained density is wide
    pmf = prior.pmf_table(40)
    assert pmf.shape == (4, 81)
    z = torch.tensor([-3.0, 0.0, 2.0]).reshape(1, 1, 1, 3).expand(1, 4, 1, 3)
    lik = prior.likelihood(z).detach().numpy()
    assert np.allclose(lik[0, :, 0, :], pmf[:, [37, 40, 42]], rtol=1e-5)
