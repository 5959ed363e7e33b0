#!/usr/bin/env python3
"""Deploy ChainStream and write the addresses to a file the relay and SDK read (same as `chainstream deploy`).

scripts/deploy.py --rpc-url http://127.0.0.1:8545 --out deployments/local.json     # anvil (+ mock stablecoin)
CHAINSTREAM_DEPLOYER_KEY=0x... scripts/deploy.py --rpc-url https://... --token-admin 0xOPERATOR

The mock stablecoin (anyone can mint it) is deployed only on development chains unless --stablecoin is given;
the token admin (who may allowlist ERC-20s) is --token-admin, else the deployer key's address; without a
deployer key a fresh one is generated, funded by the node and thrown away, so the admin must then be given
(on a development chain it defaults to the node's own account).
"""

import sys

from chainstream.cli import app

if __name__ == "__main__":
    sys.exit(app(["deploy", *sys.argv[1:]]))
