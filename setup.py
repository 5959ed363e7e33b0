"""Build hook: the wheel carries what the runtime serves from outside src/ (metadata lives in pyproject.toml).

- the web player, frontend/ -> chainstream/web/ (without generated audio or vendored copies);
- the ethers browser build the player imports, node_modules/ethers/dist/ethers.min.js ->
  chainstream/web_vendor/ (only if `npm install` ran: without it the relay says what is missing, see
  chainstream.resources).

An editable install builds nothing: chainstream.resources finds both in the checkout instead."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
WEB_SKIP = ("audio", "vendor", "node_modules")
ETHERS = ROOT / "node_modules" / "ethers" / "dist" / "ethers.min.js"


class BuildWithWebPlayer(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        package = Path(self.build_lib) / "chainstream"
        web = package / "web"
        shutil.rmtree(web, ignore_errors=True)
        shutil.copytree(ROOT / "frontend", web, ignore=shutil.ignore_patterns(*WEB_SKIP, "*.md", "package.json"))
        if ETHERS.is_file():
            (package / "web_vendor").mkdir(exist_ok=True)
            shutil.copy2(ETHERS, package / "web_vendor" / ETHERS.name)
        else:
            self.warn(f"{ETHERS.relative_to(ROOT)} not found (run `npm install`): the wheel's web player lacks ethers")


setup(cmdclass={"build_py": BuildWithWebPlayer})
