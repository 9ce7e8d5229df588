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
