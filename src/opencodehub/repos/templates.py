""".gitignore and license templates for a repository's first commit, and for GitHub's
`/gitignore/templates` and `/licenses` endpoints.

The texts are data files under `templates/`; the license metadata follows choosealicense.com,
which is what GitHub's license API serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

TEMPLATES_DIR = Path(__file__).parent / "templates"

GITIGNORE_TEMPLATES: tuple[str, ...] = ("C", "Go", "Java", "Node", "Python", "Rust")


@dataclass(frozen=True)
class LicenseTemplate:
    key: str
    spdx_id: str
    name: str
    description: str
    implementation: str
    permissions: tuple[str, ...]
    conditions: tuple[str, ...]
    limitations: tuple[str, ...]
    featured: bool
    # The placeholders the text carries, filled with the year and the owner's name.
    year_placeholder: str | None = None
    name_placeholder: str | None = None

    @property
    def body(self) -> str:
        return _read(f"licenses/{self.key}.txt")

    def render(self, year: int, fullname: str) -> str:
        text = self.body
        if self.year_placeholder:
            text = text.replace(self.year_placeholder, str(year))
        if self.name_placeholder:
            text = text.replace(self.name_placeholder, fullname)
        return text


_PERMISSIVE = ("commercial-use", "modifications", "distribution", "private-use")

LICENSES: dict[str, LicenseTemplate] = {
    template.key: template
    for template in (
        LicenseTemplate(
            key="apache-2.0",
            spdx_id="Apache-2.0",
            name="Apache License 2.0",
            description=(
                "A permissive license whose main conditions require preservation of copyright "
                "and license notices. Contributors provide an express grant of patent rights. "
                "Licensed works, modifications, and larger works may be distributed under "
                "different terms and without source code."
            ),
            implementation=(
                "Create a text file (typically named LICENSE or LICENSE.txt) in the root of "
                "your source code and copy the text of the license into the file."
            ),
            permissions=(*_PERMISSIVE, "patent-use"),
            conditions=("include-copyright", "document-changes"),
            limitations=("trademark-use", "liability", "warranty"),
            featured=True,
            year_placeholder="[yyyy]",
            name_placeholder="[name of copyright owner]",
        ),
        LicenseTemplate(
            key="bsd-3-clause",
            spdx_id="BSD-3-Clause",
            name='BSD 3-Clause "New" or "Revised" License',
            description=(
                "A permissive license similar to the BSD 2-Clause License, but with a 3rd "
                "clause that prohibits others from using the name of the copyright holder or "
                "its contributors to promote derived products without written consent."
            ),
            implementation=(
                "Create a text file (typically named LICENSE or LICENSE.txt) in the root of "
                "your source code and copy the text of the license into the file. Replace "
                "[year] with the current year and [fullname] with the name (or names) of the "
                "copyright holders."
            ),
            permissions=_PERMISSIVE,
            conditions=("include-copyright",),
            limitations=("liability", "warranty"),
            featured=False,
            year_placeholder="[year]",
            name_placeholder="[fullname]",
        ),
        LicenseTemplate(
            key="gpl-3.0",
            spdx_id="GPL-3.0",
            name="GNU General Public License v3.0",
            description=(
                "Permissions of this strong copyleft license are conditioned on making "
                "available complete source code of licensed works and modifications, which "
                "include larger works using a licensed work, under the same license. Copyright "
                "and license notices must be preserved. Contributors provide an express grant "
                "of patent rights."
            ),
            implementation=(
                "Create a text file (typically named COPYING, as per GNU conventions) in the "
                "root of your source code and copy the text of the license into the file."
            ),
            permissions=(*_PERMISSIVE, "patent-use"),
            conditions=("include-copyright", "document-changes", "disclose-source", "same-license"),
            limitations=("liability", "warranty"),
            featured=True,
        ),
        LicenseTemplate(
            key="mit",
            spdx_id="MIT",
            name="MIT License",
            description=(
                "A short and simple permissive license with conditions only requiring "
                "preservation of copyright and license notices. Licensed works, modifications, "
                "and larger works may be distributed under different terms and without source "
                "code."
            ),
            implementation=(
                "Create a text file (typically named LICENSE or LICENSE.txt) in the root of "
                "your source code and copy the text of the license into the file. Replace "
                "[year] with the current year and [fullname] with the name (or names) of the "
                "copyright holders."
            ),
            permissions=_PERMISSIVE,
            conditions=("include-copyright",),
            limitations=("liability", "warranty"),
            featured=True,
            year_placeholder="[year]",
            name_placeholder="[fullname]",
        ),
        LicenseTemplate(
            key="mpl-2.0",
            spdx_id="MPL-2.0",
            name="Mozilla Public License 2.0",
            description=(
                "Permissions of this weak copyleft license are conditioned on making available "
                "source code of licensed files and modifications of those files under the same "
                "license (or in certain cases, one of the GNU licenses). Copyright and license "
                "notices must be preserved. Contributors provide an express grant of patent "
                "rights. However, a larger work using the licensed work may be distributed "
                "under different terms and without source code for files added in the larger "
                "work."
            ),
            implementation=(
                "Create a text file (typically named LICENSE or LICENSE.txt) in the root of "
                "your source code and copy the text of the license into the file."
            ),
            permissions=(*_PERMISSIVE, "patent-use"),
            conditions=("disclose-source", "include-copyright", "same-license--file"),
            limitations=("liability", "trademark-use", "warranty"),
            featured=False,
        ),
    )
}


@cache
def _read(relative: str) -> str:
    return (TEMPLATES_DIR / relative).read_text(encoding="utf-8")


def find_gitignore(name: str) -> str | None:
    """The canonical template name for `name` (case-insensitive), or None."""
    if not isinstance(name, str):
        return None
    lowered = name.lower()
    for template in GITIGNORE_TEMPLATES:
        if template.lower() == lowered:
            return template
    return None


def gitignore_source(name: str) -> str | None:
    template = find_gitignore(name)
    return _read(f"gitignore/{template}.gitignore") if template else None


def find_license(key: str) -> LicenseTemplate | None:
    """A license by key or SPDX id, case-insensitively (`mit`, `MIT`, `Apache-2.0`)."""
    if not isinstance(key, str):
        return None
    return LICENSES.get(key.lower())
