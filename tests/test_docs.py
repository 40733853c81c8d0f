"""The documentation holds together: the README stays short, every relative link in it and in docs/
resolves, and every asset and asset check carries a description (what the UI and the docs show)."""

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 260

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def relative_links(text: str) -> list[str]:
    """The targets of markdown links `[text](target)` outside code, without web, mail or same-page links."""
    text = INLINE_CODE.sub("", FENCE.sub("", text))
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^(https?:|mailto:|#)", t, re.IGNORECASE)]


def test_readme_stays_short():
    """The README is the front page: what KALA is, the main command, the results, the contract;
    everything else lives in docs/. It must not grow back into a manual."""
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"


def test_every_relative_link_resolves():
    """Text moves between the README and docs/ (docs link back with ../ paths); a link whose file or
    folder is gone, or that was not rewritten when its text moved, leaves a reader at a dead end."""
    assert (ROOT / "docs").is_dir() and len(DOCUMENTS) > 1, "docs/*.md are missing"
    checked, broken = 0, []
    for document in DOCUMENTS:
        for target in relative_links(document.read_text()):
            path = unquote(target.split("#", 1)[0].split("?", 1)[0])
            checked += 1
            if not (document.parent / path).exists():
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert checked > 0, "no relative links found: the link pattern no longer matches the documents"
    assert not broken, "links to missing files or folders:\n" + "\n".join(broken)


def test_every_asset_and_check_has_a_description():
    """The UI shows each asset's and check's description, and the docs point readers at them: an
    asset or check added without one is undocumented where people look first."""
    from kala_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assets = sorted(graph.get_all_asset_keys(), key=lambda key: key.to_user_string())
    checks = sorted(graph.asset_check_keys, key=lambda key: (key.asset_key.to_user_string(), key.name))
    assert assets and checks, "the definitions hold no assets or no checks"
    missing = [f"asset {key.to_user_string()}" for key in assets if not (graph.get(key).description or "").strip()]
    missing += [f"check {key.asset_key.to_user_string()}:{key.name}" for key in checks
                if not (graph.get(key).description or "").strip()]
    assert not missing, "no description: " + ", ".join(missing)
