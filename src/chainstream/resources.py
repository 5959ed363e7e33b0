"""Files the runtime needs beyond Python code, found the same way in a wheel and in a checkout.

An installed package (`pip install .`, not editable) carries them as package data, copied in at build time
(setup.py): the web player under `chainstream/web/`, the ethers build it imports under `chainstream/web_vendor/`
(when node_modules existed at build time). An editable install or a source checkout finds them in the
repository (`frontend/`, `node_modules/`). Settings can point elsewhere (`CHAINSTREAM_FRONTEND_DIR`,
`CHAINSTREAM_VENDOR_DIR`); what is missing everywhere is reported with what to do, never guessed."""

from __future__ import annotations

import shutil
from pathlib import Path

from chainstream.errors import ConfigurationError

PACKAGE_DIR = Path(__file__).resolve().parent
#: the repository root when this module runs from a checkout (src/chainstream/ inside it), else None
CHECKOUT: Path | None = (
    PACKAGE_DIR.parents[1]
    if (PACKAGE_DIR.parents[1] / "pyproject.toml").exists() and PACKAGE_DIR.parent.name == "src"
    else None
)
#: third-party browser builds the web player imports, by the name it asks for (/vendor/<name>)
VENDOR_FILES = {"ethers.js": "ethers.min.js"}
VENDOR_SOURCES = {"ethers.min.js": Path("node_modules/ethers/dist/ethers.min.js")}


def web_dir(configured: Path | None = None) -> Path | None:
    """The web player's directory (with index.html): configured, packaged, or the checkout's frontend/."""
    candidates = [configured] if configured is not None else [PACKAGE_DIR / "web"]
    if configured is None and CHECKOUT is not None:
        candidates.append(CHECKOUT / "frontend")
    return next((c for c in candidates if c is not None and (c / "index.html").is_file()), None)


def vendor_file(name: str, configured: Path | None = None) -> Path | None:
    """A vendored browser build by the name the player requests ("ethers.js"), or None if unknown or absent."""
    filename = VENDOR_FILES.get(name)
    if filename is None:
        return None
    candidates = [configured / filename] if configured is not None else [PACKAGE_DIR / "web_vendor" / filename]
    if configured is None and CHECKOUT is not None:
        candidates.append(CHECKOUT / VENDOR_SOURCES[filename])
    return next((c for c in candidates if c.is_file()), None)


def vendor_missing_message(name: str) -> str:
    return (
        f"{name} is not available: run `npm install` in the ChainStream checkout (then reinstall the package), "
        "or set CHAINSTREAM_VENDOR_DIR to a directory holding ethers.min.js (npm package ethers, dist/)"
    )


def anvil_binary() -> str:
    """The anvil executable: the checkout's node_modules (npm @foundry-rs/anvil), else PATH."""
    if CHECKOUT is not None:
        local = CHECKOUT / "node_modules" / ".bin" / "anvil"
        if local.exists():
            return str(local)
    found = shutil.which("anvil")
    if found:
        return found
    raise ConfigurationError(
        "anvil not found: run `npm install` in the ChainStream checkout (package @foundry-rs/anvil), "
        "or put an anvil executable on PATH"
    )
