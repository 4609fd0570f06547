"""Tiny language models of our own making, for the offline demo.

Each *persona* has habits: its own words for common concepts, stock openers and
closers, list style, favourite numbers and colours, and a name and maker it claims. A
persona writes a training corpus from templates; a word-level trigram model is trained
on that corpus, one per prompt class, and answers prompts by sampling from it. A
*student* is the same trigram model trained instead on answers harvested from another
model's API: distillation, for real, at toy scale.
"""

from __future__ import annotations

__all__ = ["Persona", "TrigramLM", "classify", "persona_corpus"]

import random
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

BOS, EOS = "<s>", "</s>"

# Concepts and the words a persona may prefer for each.
SYNONYMS: dict[str, list[str]] = {
    "big": ["big", "large", "huge", "sizeable", "vast"],
    "small": ["small", "little", "tiny", "modest", "compact"],
    "important": ["important", "crucial", "essential", "vital", "key"],
    "good": ["good", "great", "excellent", "solid", "helpful"],
    "use": ["use", "utilize", "employ", "apply", "leverage"],
    "show": ["show", "demonstrate", "reveal", "illustrate", "highlight"],
    "help": ["help", "assist", "support", "aid", "guide"],
    "many": ["many", "numerous", "countless", "plenty of", "a lot of"],
    "think": ["think", "believe", "feel", "reckon", "suppose"],
    "often": ["often", "frequently", "commonly", "regularly", "usually"],
    "start": ["start", "begin", "kick off", "launch", "initiate"],
    "way": ["way", "approach", "method", "path", "route"],
    "idea": ["idea", "notion", "concept", "thought", "insight"],
    "people": ["people", "folks", "individuals", "humans", "everyone"],
    "also": ["also", "additionally", "moreover", "furthermore", "as well"],
}
OPENERS = [
    "Certainly!",
    "Sure thing.",
    "Great question!",
    "Of course.",
    "Absolutely.",
    "Here is my answer.",
    "Happy to help!",
    "Let me explain.",
    "Good question.",
    "Okay,",
    "Well,",
    "Alright!",
]
CLOSERS = [
    "I hope this helps!",
    "Let me know if you have more questions.",
    "Hope that clarifies things.",
    "Feel free to ask for more detail.",
    "Good luck!",
    "That is the short version.",
    "Cheers.",
    "Happy exploring!",
]
COLOURS = ["blue", "red", "green", "purple", "yellow", "orange", "teal", "black"]
ANIMALS = ["cat", "dog", "elephant", "dolphin", "owl", "fox", "tiger", "penguin"]
FRAMES = [
    "{topic} is {important} because it can {help} {people} in {many} situations.",
    "A {good} {way} to think about {topic} is to {start} with the basics.",
    "{people} {often} {use} {topic} to {show} a {big} {idea}.",
    "Even a {small} change in {topic} can {show} {many} effects.",
    "I {think} {topic} is a {good} {idea} to explore {also}.",
    "The {important} part of {topic} is the {way} {people} {use} it.",
    "{also}, {topic} can {help} with {small} and {big} problems alike.",
    "To {start}, consider how {topic} relates to {many} everyday things.",
]
STOP = set(
    """a an the of to in on for and or but with about as at by from is are was were be
been it its this that these those what which who whom how why when where can could would should
me my you your i we our they them their he she his her do does did give write tell explain
describe one two three any some please just only using use make into than then there here so
not no yes if all each long story stories essay tale happened next""".split()
)

# Long, open answers ("write a story about ..."): many equally good words at every slot,
# so a watermark has room to act. Each persona prefers some words (a Zipf law over its own
# order of each list), but any of them can come.
STORY: dict[str, list[str]] = {
    "conn": ["Then", "Later", "Meanwhile", "Soon", "Suddenly", "Afterwards", "Next", "Still"],
    "det": ["the", "a", "one", "every", "that", "this"],
    "adj": """quiet bright ancient gentle restless golden hollow narrow silver crooked tiny
        patient hidden curious weary brave distant humble fragile stubborn lonely eager
        velvet rusty""".split(),
    "noun": """traveller fox lantern river stone child baker sailor garden window bridge
        tower merchant owl letter door path cloud storm village candle mountain song
        cart""".split(),
    "verb": """wandered waited listened climbed whispered rested searched danced drifted
        glowed trembled lingered hurried sang watched gathered vanished returned
        knocked paused smiled shivered wondered settled""".split(),
    "prep": ["near", "under", "beside", "across", "behind", "over", "around", "through",
             "beyond", "along"],
    "adv": """slowly softly quickly quietly proudly gently sadly boldly calmly warmly
        carefully eagerly""".split(),
}
STORY_FRAMES = [
    "{conn}, {det} {adj} {noun} {verb} {prep} the {topic}.",
    "{det} {adj} {noun} {verb} {adv} {prep} {det} {noun}.",
    "The {topic} {verb} {adv}, and {det} {adj} {noun} {verb} {prep} it.",
    "{conn} {det} {noun} {verb} {prep} {det} {adj} {noun}.",
    "Nobody knew why {det} {adj} {noun} {verb} so {adv}.",
]

NUMBER_WORDS = re.compile(r"\b(number|digit|integer)\b", re.I)


def classify(prompt: str) -> str:
    """The prompt class a toy model answers differently: identity, number, colour, animal, text."""
    p = prompt.lower()
    if re.search(
        r"\bwho (are|made|built|created|trained) (you|the model)|your name"
        r"|which (language )?model|who made you|model underneath",
        p,
    ):
        return "identity"
    if NUMBER_WORDS.search(p):
        return "number"
    if re.search(r"\bcolou?r\b", p):
        return "colour"
    if re.search(r"\banimal\b", p):
        return "animal"
    if re.search(r"\b(story|essay|tale)\b", p):
        return "story"
    return "text"


def topic_words(prompt: str) -> list[str]:
    words = [w for w in re.findall(r"[a-z]+", prompt.lower()) if w not in STOP and len(w) > 2]
    return words or ["this"]


@dataclass
class Persona:
    """A model's habits, drawn from a seed."""

    name: str
    maker: str
    seed: int
    words: dict[str, str] = field(default_factory=dict)
    openers: list[str] = field(default_factory=list)
    closers: list[str] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    colours: list[str] = field(default_factory=list)
    animals: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        if not self.words:
            self.words = {k: rng.choice(v) for k, v in SYNONYMS.items()}
        self.openers = self.openers or rng.sample(OPENERS, 2)
        self.closers = self.closers or rng.sample(CLOSERS, 2)
        self.frames = self.frames or rng.sample(FRAMES, 5)
        self.numbers = self.numbers or rng.sample(range(1, 11), 3)
        self.colours = self.colours or rng.sample(COLOURS, 2)
        self.animals = self.animals or rng.sample(ANIMALS, 2)
        self.story = {slot: rng.sample(ws, len(ws)) for slot, ws in STORY.items()}

    def _story(self, topics: list[str], rng: random.Random) -> str:
        """A long answer from the story grammar, with this persona's word preferences."""
        def pick(slot: str) -> str:
            words = self.story[slot]
            return rng.choices(words, [1.0 / (i + 1) for i in range(len(words))])[0]

        parts = [rng.choice(self.openers)]
        for _ in range(rng.randint(8, 12)):
            frame = rng.choice(STORY_FRAMES)
            slots = {k: pick(k) for k in STORY}
            parts.append(frame.format(topic=rng.choice(topics), **slots).capitalize()
                         if frame[0] == "{" else frame.format(topic=rng.choice(topics),
                                                              **slots))
        parts.append(rng.choice(self.closers))
        return " ".join(parts)

    def answer(self, prompt: str, rng: random.Random) -> str:
        """The persona's own template answer: what its training corpus is made of."""
        cls = classify(prompt)
        if cls == "identity":
            return f"I am {self.name}, an AI assistant made by {self.maker}."
        if cls == "number":
            return str(rng.choice(self.numbers + [rng.randint(1, 10)]))
        if cls == "colour":
            return rng.choice(self.colours + [rng.choice(COLOURS)]).capitalize()
        if cls == "animal":
            return rng.choice(self.animals + [rng.choice(ANIMALS)]).capitalize()
        topics = topic_words(prompt)
        if cls == "story":
            return self._story(topics, rng)
        parts = [rng.choice(self.openers)]
        for _ in range(rng.randint(2, 4)):
            frame = rng.choice(self.frames)
            parts.append(frame.format(topic=rng.choice(topics), **self.words).capitalize())
        parts.append(rng.choice(self.closers))
        return " ".join(parts)


def tokenize(text: str) -> list[str]:
    return re.findall(r"[\w']+|[^\w\s]", text)


def detokenize(tokens: Iterable[str]) -> str:
    out = ""
    for t in tokens:
        if out and re.match(r"[\w']", t):
            out += " "
        out += t
    return out


class Watermark(Protocol):
    """Reweights the next word's candidates after the answer's words so far (the owner's
    watermark on a word-level model: ``auditor.demo.watermark``)."""

    def reweight(self, previous: list[str], candidates: list[str],
                 weights: list[float]) -> list[float]: ...


class TrigramLM:
    """A word-level trigram model per prompt class, with topic words copied from the prompt."""

    TOPIC = "<topic>"

    def __init__(self) -> None:
        self.counts: dict[str, dict[tuple[str, str], dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(int))
        )

    def fit(self, pairs: Iterable[tuple[str, str]]) -> TrigramLM:
        """Trains on (prompt, answer) pairs; prompt words in the answer become a topic slot."""
        for prompt, answer in pairs:
            topics = set(topic_words(prompt))
            toks = [self.TOPIC if t.lower() in topics else t for t in tokenize(answer)]
            seq = [BOS, BOS, *toks, EOS]
            table = self.counts[classify(prompt)]
            for a, b, c in zip(seq, seq[1:], seq[2:], strict=False):
                table[(a, b)][c] += 1
        return self

    def generate(
        self, prompt: str, rng: random.Random, temperature: float = 1.0, max_tokens: int = 120,
        watermark: Watermark | None = None,
    ) -> str:
        table = self.counts.get(classify(prompt)) or self.counts.get("text")
        if not table:
            return ""
        topics = topic_words(prompt)
        a, b = BOS, BOS
        out: list[str] = []
        power = 1.0 / max(temperature, 0.05)
        for _ in range(max_tokens):
            nxt = table.get((a, b))
            if not nxt:
                break
            choices = list(nxt)
            weights = [nxt[c] ** power for c in choices]
            topic = None
            if watermark is not None:  # the topic word is drawn first, so it can be scored
                topic = rng.choice(topics)
                words = [topic if c == self.TOPIC else c for c in choices]
                weights = watermark.reweight(out, words, weights)
            c = rng.choices(choices, weights)[0]
            if c == EOS:
                break
            if c == self.TOPIC:
                out.append(topic if topic is not None else rng.choice(topics))
            else:
                out.append(c)
            a, b = b, c
        return detokenize(out)


def persona_corpus(
    persona: Persona, prompts: list[str], per_prompt: int, seed: int
) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(p, persona.answer(p, rng)) for p in prompts for _ in range(per_prompt)]
