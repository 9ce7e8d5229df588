import torch

from cobra_hf.semantic_ids.rq_kmeans import dedup_codes, kmeans, rq_kmeans


def planted(clusters=4, per=50, width=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, width, generator=generator) * 10
    labels = torch.arange(clusters).repeat_interleave(per)
    return centres[labels] + 0.1 * torch.randn(clusters * per, width, generator=generator), labels


def test_kmeans_recovers_planted_clusters():
    x, labels = planted()
    _, assignment = kmeans(x, 4, seed=1)
    # the same partition up to renaming: each planted cluster maps to exactly one code and back
    pairs = set(zip(labels.tolist(), assignment.tolist()))
    assert len(pairs) == 4 and len({a for _, a in pairs}) == 4


def test_kmeans_uses_every_code_and_is_deterministic():
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(3))
    centroids, assignment = kmeans(x, 32, seed=7)
    again, assignment2 = kmeans(x, 32, seed=7)
    assert torch.equal(assignment, assignment2) and torch.equal(centroids, again)
    assert assignment.unique().numel() == 32


def test_rq_kmeans_residuals_shrink_the_error():
    x = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    codes, books = rq_kmeans(x, [8, 8, 8], seed=0)
    assert codes.shape == (500, 3) and [b.shape for b in books] == [(8, 16)] * 3
    errors = []
    approx = torch.zeros_like(x)
    for level, book in enumerate(books):
        approx = approx + book[codes[:, level]]
        errors.append(float(((x - approx) ** 2).sum()))
    assert errors[0] > errors[1] > errors[2]


def test_dedup_codes_make_ids_unique_and_number_collisions_in_catalog_order():
    codes = torch.tensor([[1, 2], [0, 0], [1, 2], [1, 2], [0, 1]])
    out = dedup_codes(codes)
    assert out[:, :2].tolist() == codes.tolist()
    assert out[:, 2].tolist() == [0, 0, 1, 2, 0]
    assert torch.unique(out, dim=0).shape[0] == len(out)


def test_large_sets_are_seeded_from_a_sample_and_still_cluster(monkeypatch):
    """Above SEED_POINTS_PER_CLUSTER * k points, k-means++ seeds from a seeded sample (one pass per centroid over a
    million items was most of prepare's time); Lloyd's iterations still use every point."""
    import cobra_hf.semantic_ids.rq_kmeans as rqk

    x, labels = planted(clusters=4, per=50)
    full_centroids, full = kmeans(x, 4, seed=1)
    monkeypatch.setattr(rqk, "SEED_POINTS_PER_CLUSTER", 5)  # 20 seeding points for 200 items
    seen = []
    real_randperm = torch.randperm
    monkeypatch.setattr(torch, "randperm", lambda n, **kw: seen.append(n) or real_randperm(n, **kw))
    centroids, sampled = kmeans(x, 4, seed=1)
    assert seen == [200]  # the sample was drawn
    pairs = set(zip(labels.tolist(), sampled.tolist()))
    assert len(pairs) == 4 and len({a for _, a in pairs}) == 4  # the planted partition all the same
    again, sampled2 = kmeans(x, 4, seed=1)
    assert torch.equal(sampled, sampled2) and torch.equal(centroids, again)


def test_fitted_quantizer_encodes_its_catalog_bit_for_bit_after_save_and_load(tmp_path):
    from cobra_hf.semantic_ids.rq_kmeans import RQKMeans, load_quantizer

    x = torch.randn(400, 12, generator=torch.Generator().manual_seed(5)) * 3
    quantizer, codes = RQKMeans.fit(x, [8, 8], dedup_level=True, seed=2)
    plain, _ = rq_kmeans(torch.nn.functional.normalize(x, dim=-1), [8, 8], seed=2)
    assert torch.equal(codes, dedup_codes(plain))  # the same codes the catalog builder always made
    quantizer.save_pretrained(tmp_path / "q")
    loaded = load_quantizer(tmp_path / "q")
    assert isinstance(loaded, RQKMeans) and loaded.config == quantizer.config
    assert torch.equal(loaded.encode(x), codes)
    # a new vector near an item takes that item's first codes (scale does not matter: vectors are normalised)
    near = 5 * x[:3] + 1e-4 * torch.randn(3, 12, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded.encode(near)[:, :2], codes[:3, :2])


def test_small_catalog_keeps_as_many_codes_as_items(tmp_path):
    from cobra_hf.semantic_ids.rq_kmeans import RQKMeans, load_quantizer

    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    quantizer, codes = RQKMeans.fit(x, [8, 8])
    assert quantizer.config.level_sizes == [5, 5] and int(codes.max()) < 5
    quantizer.save_pretrained(tmp_path / "q")
    assert torch.equal(load_quantizer(tmp_path / "q").encode(x), codes)


def test_load_quantizer_reads_an_rqvae_and_refuses_an_unknown_kind(tmp_path):
    import json

    import pytest

    from cobra_hf.semantic_ids import RQVAE, RQVAEConfig
    from cobra_hf.semantic_ids.rq_kmeans import load_quantizer

    RQVAE(RQVAEConfig(input_dim=4, hidden_dims=[8], code_dim=2, codebook_size=2)).save_pretrained(tmp_path / "vae")
    assert isinstance(load_quantizer(tmp_path / "vae"), RQVAE)
    config = json.loads((tmp_path / "vae" / "config.json").read_text())
    (tmp_path / "vae" / "config.json").write_text(json.dumps({**config, "model_type": "pq"}))
    with pytest.raises(ValueError, match="model_type 'pq'"):
        load_quantizer(tmp_path / "vae")
    with pytest.raises(FileNotFoundError, match="not a saved quantizer"):
        load_quantizer(tmp_path / "missing")
