"""The README and the docs: their links lead somewhere, the README points to every section
of the user's guide, and CI runs the README's test command."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    """The anchors of a markdown file's headings (outside fenced code)."""
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_relative_links_lead_to_files_and_headings():
    """Every relative link in README.md and docs/*.md names a file of the checkout and,
    with '#', a heading of that file."""
    broken = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            if not linked.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, broken


def test_readme_links_every_section_of_the_guide():
    """A reader of the README finds each '## ' section of docs/guide.md from it."""
    guide = REPO / "docs" / "guide.md"
    assert guide.is_file(), "docs/guide.md, the user's guide, is missing"
    sections = re.findall(r"^## (.+)$", guide.read_text(encoding="utf-8"), flags=re.M)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [s for s in sections if f"docs/guide.md#{_anchor(s)}" not in readme]
    assert not missing, f"sections of docs/guide.md the README does not link: {missing}"


def test_ci_runs_the_readme_test_command():
    """.ci/run runs the README's test command (plus -p no:cacheprovider, to leave the clean
    clone clean)."""
    run = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()[-1]
    command = run.split()
    command.remove("-p")
    command.remove("no:cacheprovider")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    fenced = re.findall(r"```bash\n(.+?)\n```", readme)  # the copy-pastable commands
    assert " ".join(command) in fenced, f"{run!r} is not the README's test command"
