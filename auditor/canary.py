"""The canary schema: what one secret prompt is, validated with pydantic.

A canary is a stable ``id``, a ``kind`` and a prompt (``prompt`` text, or chat
``messages`` with an optional system message), with the samples to draw per cycle,
decoding overrides, tags and the expectations of its kind:

- ``free_text``: none needed.
- ``choice``: how to turn an answer into a category (``extract`` regex, ``lowercase``,
  ``aliases``, optional closed list of ``categories``).
- ``identity``: regular expressions that match the protected model's ``names`` and ``maker``.
- ``logprob``: ``top_logprobs`` to request on the fixed prefix.
- ``watermark``: none needed: a long, open prompt whose answer gives many tokens to
  score; the watermark's keys, ``gamma``, ``h`` and tokenizer are the owner's, in the
  config's ``[watermark]``.
"""

from __future__ import annotations

__all__ = ["Canary", "Message", "canonical_content", "normalize_choice"]

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from auditor.canonical import canonical_json, sha256_hex

Kind = Literal["free_text", "choice", "identity", "logprob", "watermark"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("message content is empty")
        return v


class DecodingOverride(_Strict):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: list[str] | None = None


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return pattern


class FreeTextExpect(_Strict):
    pass


class ChoiceExpect(_Strict):
    categories: list[str] | None = None
    extract: str | None = None  # regex; group 1 (or the whole match) is the answer
    lowercase: bool = True
    strip_punctuation: bool = True
    aliases: dict[str, str] = Field(default_factory=dict)

    @field_validator("extract")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return _check_regex(v) if v is not None else v


class IdentityExpect(_Strict):
    names: list[str] = Field(min_length=1)
    maker: list[str] = Field(default_factory=list)

    @field_validator("names", "maker")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        return [_check_regex(p) for p in v]


class LogprobExpect(_Strict):
    top_logprobs: int = Field(default=5, ge=1, le=20)


class WatermarkExpect(_Strict):
    """Nothing needed: the scheme (keys, gamma, h, tokenizer) is the owner's, in
    ``[watermark]`` of the config. The fields below were the first design's; they are
    still accepted so that stored versions load, and ignored."""

    key_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    gamma: float | None = Field(default=None, gt=0, lt=1)
    context_width: int | None = Field(default=None, ge=1, le=8)
    tokenizer: str | None = None


_EXPECT: dict[str, type[_Strict]] = {
    "free_text": FreeTextExpect,
    "choice": ChoiceExpect,
    "identity": IdentityExpect,
    "logprob": LogprobExpect,
    "watermark": WatermarkExpect,
}


class Canary(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{1,127}$")]
    kind: Kind
    prompt: str | None = None
    messages: list[Message] | None = None
    samples: int = Field(default=1, ge=1, le=100)
    decoding: DecodingOverride = Field(default_factory=DecodingOverride)
    tags: list[str] = Field(default_factory=list)
    secret: bool = True
    description: str | None = None
    # validated when absent too: an identity canary without `expect` is rejected here, by
    # `canaries validate` and by the probe loading a stored version alike
    expect: dict[str, Any] = Field(default_factory=dict, validate_default=True)

    @model_validator(mode="after")
    def _prompt_and_expect(self) -> Canary:
        if self.prompt is None and not self.messages:
            raise ValueError("give a non-empty `prompt` or `messages`")
        if self.prompt is not None and self.messages is not None:
            raise ValueError("give either `prompt` or `messages`, not both")
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("`prompt` is empty")
        if self.messages is not None and self.messages[-1].role != "user":
            raise ValueError("the last message must have role `user`")
        return self

    @field_validator("expect")
    @classmethod
    def _expect_fits_kind(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("kind")
        if kind is None:  # the kind itself is invalid; reported there
            return v
        try:
            out = _EXPECT[kind].model_validate(v)
            # a watermark canary keeps only what it states (its fields are legacy)
            return out.model_dump(exclude_none=kind == "watermark")
        except ValidationError as exc:
            parts = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                parts.append(f"{where}: {msg.removeprefix('Value error, ')}" if where else msg)
            raise ValueError(f"not valid for kind {kind}: " + "; ".join(parts)) from None

    def chat(self) -> list[dict[str, str]]:
        """The prompt as chat messages (system message first, if any)."""
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]

    def expectation(self) -> Any:
        return _EXPECT[self.kind].model_validate(self.expect)


def canonical_content(canary: Canary) -> bytes:
    """The bytes that identify a canary version: its full definition, canonical JSON."""
    return canonical_json(canary.model_dump(mode="json"))


def content_hash(canary: Canary) -> str:
    return sha256_hex(canonical_content(canary))


_PUNCT = re.compile(r"[^\w\s-]", re.UNICODE)


def normalize_choice(answer: str, expect: ChoiceExpect) -> str | None:
    """Maps a free answer onto a category; None when nothing usable is found."""
    text = answer.strip()
    if expect.extract:
        m = re.search(expect.extract, text, flags=re.IGNORECASE | re.DOTALL)
        if not m:
            return None
        text = m.group(1) if m.groups() else m.group(0)
    if expect.lowercase:
        text = text.lower()
    if expect.strip_punctuation:
        text = _PUNCT.sub("", text)
    text = " ".join(text.split())
    aliases = {(k.lower() if expect.lowercase else k): v for k, v in expect.aliases.items()}
    text = aliases.get(text, text)
    if expect.categories is not None:
        cats = {(c.lower() if expect.lowercase else c): c for c in expect.categories}
        if text in cats:
            return cats[text]
        for key, cat in cats.items():  # first category named in the answer
            if re.search(rf"\b{re.escape(key)}\b", text):
                return cat
        return "other"
    return text or None
