"""The documentation stands alone: every link in README, the top-level pages, docs/ and
deploy/ points inside the repository at a file that exists, and every source path the pages
cite in backticks exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("deploy/*.md")])
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")
CITED = re.compile(r"`((?:churnwatch|streams|features|rules|online_models|alerting|benchmarks|"
                   r"tests|deploy|docs)/[\w./-]*\.(?:py|lua|toml|md|yml|yaml|json|sh|png))`")


def test_the_pages_exist() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "CONTRIBUTING.md", "CHANGELOG.md", "docs/contract.md",
            "docs/architecture.md", "docs/settings.md"} <= names


def test_every_link_stays_in_the_repository_and_resolves() -> None:
    bad = []
    for page in PAGES:
        for match in LINK.finditer(page.read_text()):
            target = match.group(1)
            if "://" in target or target.startswith("mailto:"):
                bad.append(f"{page.name}: {target} leaves the repository")
            elif not (page.parent / target).exists():
                bad.append(f"{page.name}: {target} does not exist")
    assert not bad, "\n".join(bad)


def test_every_cited_path_exists() -> None:
    missing = [f"{page.name}: {m.group(1)}" for page in PAGES
               for m in CITED.finditer(page.read_text()) if not (ROOT / m.group(1)).exists()]
    assert not missing, "\n".join(missing)
