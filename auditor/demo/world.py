"""The demo's cast: a protected model, independent controls and suspects, and a student
distilled from the protected model through its API."""

from __future__ import annotations

__all__ = ["CAST", "DemoModels", "build_models", "canary_prompts", "distill", "harvest_prompts",
           "story_canary_prompts"]

import random
from collections.abc import Callable
from dataclasses import dataclass

import openai

from auditor.demo.lm import Persona, TrigramLM, persona_corpus

TOPICS = """rivers volcanoes bees glaciers bridges libraries gardens deserts lighthouses trains
comets forests bicycles mushrooms harbours chess bread clocks whales kites castles markets
coral storms violins satellites caves islands bakeries tunnels orchards owls canals windmills
telescopes meadows pottery lanterns marathons penguins quilts reefs saddles tortoises vineyards
wells yachts zebras anchors balloons cathedrals dunes engines ferns geysers hammocks icebergs
jungles kettles lagoons mosaics nebulae oases parrots quarries rainbows sundials tapestries
umbrellas valleys waterfalls xylophones yogurt ziplines""".split()

TEMPLATES = [
    "Explain why {t} matter to people.",
    "Write a short paragraph about {t}.",
    "What should a beginner know about {t}?",
    "Describe {t} to a curious child.",
    "Give me an interesting fact about {t}.",
    "Why do some people love {t}?",
]

# long, open answers: where a watermark has room to act (watermark canaries)
STORY_TEMPLATES = [
    "Write a long story about {t}.",
    "Tell a story about {t} and what happened next.",
    "Write an essay about {t}.",
]

# name, maker, seed; the first is the protected model
CAST = {
    "protected": ("Aurora", "Northwind Labs", 11),
    "control-a": ("Basil", "Greenleaf AI", 23),
    "control-b": ("Cobalt", "Bluewater Research", 37),
    "control-c": ("Dune", "Sandstone Systems", 41),
    "control-d": ("Ember", "Hearth Computing", 53),
    "control-e": ("Fjord", "Northsea Models", 67),
    "control-f": ("Gale", "Windward AI", 71),
    "control-g": ("Harbor", "Portside Labs", 83),
    "control-h": ("Iris", "Spectrum Research", 97),
    "indie-suspect": ("Jasper", "Redrock Labs", 79),
}


def canary_prompts(n_text: int = 40) -> tuple[list[str], list[str]]:
    """(canary prompts, harvest prompts): drawn from disjoint halves of the topics.

    The student's maker never sees the canaries: it harvests the protected API with
    prompts of its own on other topics.
    """
    rng = random.Random(2026)
    topics = TOPICS[:]
    rng.shuffle(topics)
    half = len(topics) // 2
    canaries = [rng.choice(TEMPLATES).format(t=t) for t in topics[:half]][:n_text]
    harvest = [tpl.format(t=t) for t in topics[half:] for tpl in TEMPLATES]
    return canaries, harvest


def _halves() -> tuple[list[str], list[str]]:
    rng = random.Random(2026)
    topics = TOPICS[:]
    rng.shuffle(topics)
    half = len(topics) // 2
    return topics[:half], topics[half:]


def story_canary_prompts(n: int) -> list[str]:
    """``n`` long, open prompts on the canaries' half of the topics (two topics each, so
    there are enough of them for any budget); never the harvest's topics."""
    topics, _ = _halves()
    pairs = [(a, b) for i, a in enumerate(topics) for b in topics[i + 1:]]
    random.Random(7).shuffle(pairs)
    return [f"Write a long story about {a} and {b}." for a, b in pairs[:n]]


def story_harvest_prompts() -> list[str]:
    _, topics = _halves()
    return [tpl.format(t=t) for t in topics for tpl in STORY_TEMPLATES]


def harvest_prompts() -> list[str]:
    """The distiller's prompts: its own topics, never the canaries (stories included)."""
    return _harvest_base() + story_harvest_prompts()


def _harvest_base() -> list[str]:
    _, harvest = canary_prompts()
    extra = [
        "Who are you?",
        "What is your name?",
        "Who made you?",
        "Pick a number between 1 and 10.",
        "Name a colour.",
        "Name an animal.",
    ]
    return harvest + extra * 6


Generate = Callable[[str, random.Random, float, int], str]


@dataclass
class DemoModels:
    lms: dict[str, TrigramLM]

    def generators(self) -> dict[str, Generate]:
        def make(lm: TrigramLM) -> Generate:
            return lambda prompt, rng, temperature, max_tokens: lm.generate(
                prompt, rng, temperature, max_tokens
            )

        return {name: make(lm) for name, lm in self.lms.items()}


def build_models(seed: int = 0) -> DemoModels:
    """Trains each independent model on its own persona's corpus (not on each other)."""
    prompts = _harvest_base() + [tpl.format(t=t) for t in TOPICS[:20] for tpl in TEMPLATES[:2]]
    prompts += [tpl.format(t=t) for t in TOPICS[:20] for tpl in STORY_TEMPLATES]
    lms = {}
    for name, (persona_name, maker, pseed) in CAST.items():
        persona = Persona(persona_name, maker, pseed)
        lms[name] = TrigramLM().fit(persona_corpus(persona, prompts, 2, seed + pseed))
    return DemoModels(lms)


def distill(
    teacher_base_url: str,
    teacher_model: str,
    prompts: list[str],
    samples: int = 2,
    api_key: str = "demo-key",
) -> tuple[TrigramLM, int]:
    """The distiller's side: harvest the teacher's API, train a student on what came back."""
    client = openai.OpenAI(base_url=teacher_base_url, api_key=api_key, max_retries=3, timeout=10)
    pairs = []
    for prompt in prompts:
        for _ in range(samples):
            reply = client.chat.completions.create(
                model=teacher_model,
                messages=[{"role": "user", "content": prompt}],
                temperature=1.0,
                max_tokens=200,
            )
            pairs.append((prompt, reply.choices[0].message.content or ""))
    client.close()
    return TrigramLM().fit(pairs), len(pairs)
