from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from auditor.canary import ChoiceExpect, normalize_choice
from auditor.errors import AuditorError
from auditor.registry import commit_registry, live_versions, load_registry, sync_registry, unseal
from auditor.store import Store
from auditor.store.models import CanaryVersion

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
canaries:
  - id: ft-one
    kind: free_text
    prompt: Say something.
  - id: id-one
    kind: identity
    prompt: Who are you?
    samples: 3
    expect: {names: ['\\bClaude\\b'], maker: ['Anthropic']}
"""


def _dir(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "canaries"
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text, encoding="utf-8")
    return d


def test_example_registry_covers_every_kind() -> None:
    reg = load_registry(REPO / "canaries")
    kinds = {c.canary.kind for c in reg.canaries}
    assert kinds == {"free_text", "choice", "identity", "logprob", "watermark"}
    assert len(reg.canaries) >= 25


def test_file_may_hold_a_single_canary_or_a_list(tmp_path: Path) -> None:
    d = _dir(tmp_path, **{
        "a.yaml": "id: single\nkind: free_text\nprompt: Hi\n",
        "b.yml": "- id: listed\n  kind: free_text\n  prompt: Hello\n",
    })
    assert load_registry(d).ids() == ["listed", "single"]


def test_every_problem_is_reported_at_once_with_file_and_line(tmp_path: Path) -> None:
    d = _dir(tmp_path, **{
        "a.yaml": GOOD,
        "b.yaml": """\
canaries:
  - id: ft-one
    kind: free_text
    prompt: duplicate id
  - id: bad-regex
    kind: identity
    prompt: Who?
    expect: {names: ['(unclosed']}
  - id: empty-prompt
    kind: free_text
    prompt: "   "
  - id: typo
    kind: free_text
    prompt: x
    sampels: 2
  - id: wrong-type
    kind: free_text
    prompt: x
    samples: many
  - id: bad-kind
    kind: poem
    prompt: x
""",
    })
    with pytest.raises(AuditorError) as info:
        load_registry(d)
    problems = info.value.problems
    text = "\n".join(str(p) for p in problems)
    b = str(d / "b.yaml")
    assert f"{b}:2" in text and "duplicate canary id 'ft-one'" in text and "a.yaml:2" in text
    assert f"{b}:8" in text and "invalid regular expression" in text
    assert f"{b}:9" in text and "empty" in text
    assert f"{b}:15" in text and "sampels: unknown key" in text
    assert f"{b}:19" in text and "samples" in text
    assert f"{b}:21" in text and "kind" in text
    assert len(problems) == 6


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    d = _dir(tmp_path, **{"a.yaml": "canaries:\n  - id: x\n    prompt: [unclosed\n"})
    with pytest.raises(AuditorError) as info:
        load_registry(d)
    assert any(p.line is not None and p.line >= 3 for p in info.value.problems)


def test_unchanged_registry_creates_no_new_version(store: Store, tmp_path: Path) -> None:
    d = _dir(tmp_path, **{"a.yaml": GOOD})
    with store.session() as s:
        first = sync_registry(s, load_registry(d))
    with store.session() as s:
        again = sync_registry(s, load_registry(d))
        count = s.scalar(select(func.count()).select_from(CanaryVersion))
    assert sorted(first.created) == ["ft-one", "id-one"]
    assert again.created == [] and again.unchanged == 2
    assert count == 2


def test_changed_canary_gets_a_new_version_and_the_old_one_is_retired(
    store: Store, tmp_path: Path
) -> None:
    d = _dir(tmp_path, **{"a.yaml": GOOD})
    with store.session() as s:
        sync_registry(s, load_registry(d))
    _dir(tmp_path, **{"a.yaml": GOOD.replace("Say something.", "Say something else.")})
    with store.session() as s:
        result = sync_registry(s, load_registry(d))
        rows = s.scalars(select(CanaryVersion).where(CanaryVersion.canary_id == "ft-one")
                         .order_by(CanaryVersion.version)).all()
    assert result.created == ["ft-one"]
    assert [r.version for r in rows] == [1, 2]
    assert rows[0].retired_at is not None and rows[1].retired_at is None
    assert rows[0].content_hash != rows[1].content_hash


def test_removed_canary_is_retired_and_reverting_revives_its_version(
    store: Store, tmp_path: Path
) -> None:
    d = _dir(tmp_path, **{"a.yaml": GOOD})
    with store.session() as s:
        sync_registry(s, load_registry(d))
    only_ft = "canaries:\n  - id: ft-one\n    kind: free_text\n    prompt: Say something.\n"
    _dir(tmp_path, **{"a.yaml": only_ft})
    with store.session() as s:
        result = sync_registry(s, load_registry(d))
        assert result.retired == ["id-one"]
        assert [v.canary_id for v in live_versions(s)] == ["ft-one"]
    _dir(tmp_path, **{"a.yaml": GOOD})
    with store.session() as s:
        sync_registry(s, load_registry(d))
        live = {v.canary_id: v.version for v in live_versions(s)}
        total = s.scalar(select(func.count()).select_from(CanaryVersion))
    assert live == {"ft-one": 1, "id-one": 1}
    assert total == 2


def test_commitment_root_proves_each_canary_and_fails_an_altered_one(store: Store) -> None:
    reg = load_registry(REPO / "canaries")
    with store.session() as s:
        sync_registry(s, reg)
        rc = commit_registry(s)
        opened = [unseal(s, rc, vid) for vid in rc.leaves]
    assert len(opened) == len(reg.canaries)
    assert all(u.verify() for u in opened)
    u = opened[3]
    altered = u.canonical.replace('"samples":', '"samples": ', 1)
    from dataclasses import replace

    assert not replace(u, canonical=altered).verify()
    assert not replace(u, salt="00" * 32).verify()
    assert not replace(u, index=(u.index + 1) % u.size).verify()


def test_committing_an_unchanged_registry_keeps_the_same_root(store: Store) -> None:
    reg = load_registry(REPO / "canaries")
    with store.session() as s:
        sync_registry(s, reg)
        a = commit_registry(s)
    with store.session() as s:
        b = commit_registry(s)
    assert a.id == b.id and a.root == b.root


def test_salts_hide_identical_canaries(store: Store, tmp_path: Path) -> None:
    d = _dir(tmp_path, **{"a.yaml": GOOD})
    with store.session() as s:
        sync_registry(s, load_registry(d))
        rows = s.scalars(select(CanaryVersion)).all()
    assert len({r.salt for r in rows}) == len(rows)
    assert all(r.commitment != r.content_hash for r in rows)


@pytest.mark.parametrize(("answer", "expected"), [
    ("7", "7"), ("I pick 7.", "7"), ("10!", "10"), ("Seven", None), ("42", "other"),
])
def test_choice_answers_normalise_to_categories(answer: str, expected: str | None) -> None:
    expect = ChoiceExpect(extract=r"(\d+)", categories=[str(i) for i in range(1, 11)])
    assert normalize_choice(answer, expect) == expected


def test_choice_aliases_and_case() -> None:
    expect = ChoiceExpect(aliases={"grey": "gray"})
    assert normalize_choice("  Grey. ", expect) == "gray"
    assert normalize_choice("Blue", expect) == "blue"
