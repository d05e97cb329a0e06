"""The committed configuration reference is the generated one."""

from __future__ import annotations

from pathlib import Path

from qvd.config import TOKENS
from qvd.node.configdoc import config_reference

DOC = Path(__file__).parents[2] / "docs" / "config.md"


def test_docs_config_md_is_current() -> None:
    assert DOC.read_text() == config_reference(), (
        "docs/config.md is stale: regenerate it with `qvd config doc > docs/config.md`"
    )


def test_every_token_is_documented() -> None:
    text = config_reference()
    for token in TOKENS:
        assert f"`{token.name}`" in text
        assert token.doc.strip(), token.name
