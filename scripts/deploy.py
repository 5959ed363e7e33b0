#!/usr/bin/env python3
"""Deploy ChainStream and write the addresses to a file the relay and SDK read (same as `chainstream deploy`).

scripts/deploy.py --rpc-url http://127.0.0.1:8545 --out deployments/local.json     # anvil
CHAINSTREAM_DEPLOYER_KEY=0x... scripts/deploy.py --rpc-url https://... --no-stablecoin
"""

import sys

from chainstream.cli import app

if __name__ == "__main__":
    sys.exit(app(["deploy", *sys.argv[1:]]))
