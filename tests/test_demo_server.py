"""The demo's model server: its answers do not depend on the order requests arrive in."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import httpx

from auditor.demo.server import Faults, ModelServer


def _words(prompt: str, rng: random.Random, temperature: float, max_tokens: int) -> str:
    return " ".join(rng.choice(["red", "green", "blue", "cat", "dog"]) for _ in range(8))


def _ask_all(order: list[tuple[str, int]], workers: int) -> tuple[dict[str, list[str]], int]:
    """Each prompt asked several times, in ``order``; the answers per prompt, sorted, and
    how many requests the flaky model refused."""
    with ModelServer({"m": _words}, {"m": Faults(rate_limited=0.3)}) as server:

        def ask(item: tuple[str, int]) -> tuple[str, int, str]:
            r = httpx.post(f"{server.base_url}/chat/completions", json={
                "model": "m", "messages": [{"role": "user", "content": item[0]}]})
            text = r.json()["choices"][0]["message"]["content"] if r.status_code == 200 else ""
            return item[0], r.status_code, text

        with ThreadPoolExecutor(workers) as pool:
            out = list(pool.map(ask, order))
    answers: dict[str, list[str]] = {}
    for prompt, _, text in out:
        answers.setdefault(prompt, []).append(text)
    return {p: sorted(a) for p, a in answers.items()}, sum(s == 429 for _, s, _ in out)


def test_the_same_requests_in_another_order_get_the_same_answers_and_faults() -> None:
    order = [(f"prompt {p}", k) for p in range(6) for k in range(4)]
    first, refused = _ask_all(order, workers=1)
    shuffled = order[:]
    random.Random(5).shuffle(shuffled)
    second, refused_again = _ask_all(shuffled, workers=4)
    assert second == first and refused_again == refused
    assert 0 < refused < len(order)  # the fault rolls are in play
    # the samples of one prompt differ from each other (draws are per request)
    assert all(len(set(a)) > 1 for a in first.values())
