"""recordgpu.rng reproduces libstdc++ over mt19937 (spec §3.4, §3.12)."""
import numpy as np
import pytest

from recordgpu import rng


def slow_shuffle(lst, g):
    for i in range(1, len(lst)):
        j = rng.uniform_int(g, 0, i)
        lst[i], lst[j] = lst[j], lst[i]
    return lst


def test_spec_permutations():
    g = rng.MT19937(111 + 0)
    assert rng.shuffle(list(range(10)), g) == [3, 4, 9, 2, 1, 6, 7, 0, 5, 8]
    assert rng.shuffle(list(range(10)), g) == [4, 0, 8, 5, 7, 2, 1, 9, 6, 3]
    assert rng.shuffle(list(range(10)), g) == [7, 5, 8, 6, 1, 0, 9, 4, 2, 3]
    assert rng.shuffle(list(range(10)), rng.MT19937(118)) == [5, 1, 6, 8, 2, 4, 9, 7, 0, 3]


@pytest.mark.parametrize("n,seed", [(256, 1), (1000, 7), (70001, 3), (300_000, 11)])
def test_vectorised_shuffle_equals_the_loop_and_consumes_the_same_draws(n, seed):
    a, b = rng.MT19937(seed), rng.MT19937(seed)
    assert rng.shuffle(list(range(n)), a) == slow_shuffle(list(range(n)), b)
    arr = np.arange(n)
    a2, b2 = rng.MT19937(seed), rng.MT19937(seed)
    rng.shuffle(arr, a2)
    assert arr.tolist() == slow_shuffle(list(range(n)), b2)
    assert a() == b() and a2() == b2()  # engines left in the same state


def test_large_shuffle_exercises_rejected_draws():
    # The 300k case above must include rejected draws, or the vectorised rejection path went untested.
    class Counting(rng.MT19937):
        calls = 0

        def __call__(self):
            Counting.calls += 1
            return super().__call__()

    slow_shuffle(list(range(300_000)), Counting(11))
    assert Counting.calls > 300_000 - 1


def test_distribution_primitives_are_float32_and_bounded():
    g = rng.MT19937(0)
    vals = [rng.u01(g) for _ in range(1000)]
    assert all(isinstance(v, np.float32) and 0 <= v < 1 for v in vals)
    assert rng.uniform_real(rng.MT19937(1), -2, 3).dtype == np.float32
    nd = rng.NormalFloat(0, 0.1)
    x = [nd(g) for _ in range(4)]
    assert all(isinstance(v, np.float32) for v in x)
    st = g.getstate()
    first = g()
    g.setstate(st)
    assert g() == first
