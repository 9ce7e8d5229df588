"""RQ-VAE semantic IDs: training, determinism, save/load, dedup mode, statistics (cobra_hf.semantic_ids.rqvae)."""

from __future__ import annotations

import json

import pytest
import torch

from cobra_hf.semantic_ids import RQVAE, RQVAEConfig, dedup_codes, id_stats, kmeans


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def clustered(n=600, dim=24, clusters=40, seed=0):
    """Unit vectors around `clusters` centres: data with structure for the quantizer to find."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=g)
    x = centres[torch.arange(n) % clusters] + 0.3 * torch.randn(n, dim, generator=g)
    return torch.nn.functional.normalize(x, dim=-1)


def small_config(**overrides):
    settings = dict(input_dim=24, hidden_dims=[32, 16], code_dim=8, num_levels=3, codebook_size=8,
                    epochs=8, batch_size=128, seed=3)
    settings.update(overrides)
    return RQVAEConfig(**settings)


@pytest.fixture(scope="module")
def data_fitted():
    x = clustered()
    model = RQVAE(small_config())
    history = model.fit(x, show_progress=False)
    return x, model, history


def test_fit_learns_and_uses_the_codebooks(data_fitted):
    x, model, history = data_fitted
    codes = model.encode(x)
    assert codes.shape == (600, 3) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 8
    assert history["recon"][-1] < history["recon"][0]
    stats = history["id_stats"]
    assert stats["codes_used"] == [8, 8, 8]  # k-means init + dead-code resets: no dead code
    assert stats["distinct_ids"] > 100


def test_fit_is_deterministic_under_a_seed():
    x = clustered()
    a = RQVAE(small_config()).fit(x, show_progress=False)
    model_b = RQVAE(small_config())
    b = model_b.fit(x, show_progress=False)
    assert a["loss"] == b["loss"]
    model_a = RQVAE(small_config())
    model_a.fit(x, show_progress=False)
    assert torch.equal(model_a.encode(x), model_b.encode(x))
    model_c = RQVAE(small_config(seed=4))
    model_c.fit(x, show_progress=False)
    assert not torch.equal(model_c.encode(x), model_b.encode(x))


def test_save_and_reload_gives_bit_identical_ids(data_fitted, tmp_path):
    x, model, _ = data_fitted
    model.save_pretrained(tmp_path / "q")
    assert json.loads((tmp_path / "q" / "config.json").read_text())["codebook_size"] == 8
    again = RQVAE.from_pretrained(tmp_path / "q")
    assert torch.equal(again.encode(x), model.encode(x))
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_encode_is_independent_of_batch_size(data_fitted):
    x, model, _ = data_fitted
    assert torch.equal(model.encode(x, batch_size=7), model.encode(x))


def test_encode_before_fit_and_bad_shapes():
    model = RQVAE(small_config())
    with pytest.raises(RuntimeError, match="before fit"):
        model.encode(clustered(10))
    with pytest.raises(ValueError, match=r"\[N, 24\]"):
        model.fit(torch.randn(10, 5), show_progress=False)
    with pytest.raises(ValueError, match="codebook_size"):
        RQVAEConfig(codebook_size=1)


def test_dedup_mode_makes_every_id_unique():
    x = clustered(300)
    model = RQVAE(small_config(dedup_level=True, num_levels=2, codebook_size=4, epochs=3))
    model.fit(x, show_progress=False)
    codes = model.encode(x)
    assert codes.shape == (300, 3)
    assert torch.unique(codes, dim=0).shape[0] == 300
    sizes = model.level_sizes(codes)
    assert sizes[:2] == [4, 4] and sizes[2] == int(codes[:, 2].max()) + 1
    assert id_stats(codes, sizes)["items_per_id_max"] == 1


def test_dedup_codes_ranks_in_input_order():
    codes = torch.tensor([[1, 2], [0, 0], [1, 2], [1, 2], [0, 0], [3, 3]])
    assert dedup_codes(codes)[:, 2].tolist() == [0, 0, 1, 2, 1, 0]


def test_id_stats():
    codes = torch.tensor([[0, 1], [0, 1], [1, 2], [0, 3]])
    stats = id_stats(codes, [2, 4])
    assert stats["codes_used"] == [2, 3] and stats["usage"] == [1.0, 0.75]
    assert stats["distinct_ids"] == 3 and stats["items_per_id_max"] == 2
    assert stats["items_per_id_mean"] == pytest.approx(4 / 3, abs=1e-3)
    assert stats["shared_id_fraction"] == 0.5


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = centres.repeat(50, 1) + 0.1 * torch.randn(150, 2, generator=g)
    found = kmeans(x, 3, 20, torch.Generator().manual_seed(1))
    nearest = torch.cdist(centres, found).min(dim=1).values
    assert bool((nearest < 0.5).all())
