import numpy as np

from w2s.engine.batching import collate, length_grouped_batches, sorted_batches


def test_length_grouped_batches_cover_every_index_once_and_group_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=1000)
    batches = length_grouped_batches(lengths, 10, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    random_batches = np.array_split(rng.permutation(1000), 100)
    padded_random = sum(len(b) * lengths[b].max() for b in random_batches)
    assert padded < 0.8 * padded_random


def test_length_grouped_batches_depend_on_the_generator():
    lengths = list(range(100))
    a = length_grouped_batches(lengths, 8, np.random.default_rng(0))
    b = length_grouped_batches(lengths, 8, np.random.default_rng(0))
    c = length_grouped_batches(lengths, 8, np.random.default_rng(1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_sorted_batches_longest_first_and_complete():
    batches = sorted_batches([3, 9, 1, 7], 3)
    assert [b.tolist() for b in batches] == [[1, 3, 0], [2]]


def test_collate_pads_to_batch_max_with_mask():
    out = collate([[5, 6, 7], [8]], pad_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
