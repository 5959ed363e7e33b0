// Hardhat 2 configuration for ChainStream's JS tooling and tests (tests/hardhat).
//
// The compiler is the npm package `solc` (solcjs 0.8.30, WebAssembly) from node_modules: Hardhat never
// downloads a compiler, so `npx hardhat compile` / `npx hardhat test` work offline. The settings are those of
// src/chainstream/chain/compile.py (the Python toolchain that builds the committed artifacts), so both
// toolchains compile the same sources to the same bytecode.
"use strict";

require("@nomicfoundation/hardhat-ethers");

const { subtask } = require("hardhat/config");
const { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } = require("hardhat/builtin-tasks/task-names");

const SOLC_VERSION = require("solc/package.json").version; // "0.8.30", pinned in package.json

// Serve every compilation job from the local solcjs instead of Hardhat's downloader.
subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async ({ solcVersion }, _hre, _runSuper) => {
  if (solcVersion !== SOLC_VERSION) {
    // Only reachable if someone adds another compiler version to the config below.
    throw new Error(`hardhat.config.js: only the local solcjs ${SOLC_VERSION} is available, not ${solcVersion}`);
  }
  return {
    compilerPath: require.resolve("solc/soljson.js"),
    isSolcJs: true,
    version: SOLC_VERSION,
    longVersion: require("solc").version(), // e.g. "0.8.30+commit.73712a01.Emscripten.clang"
  };
});

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  solidity: {
    version: SOLC_VERSION,
    // Keep in sync with SETTINGS in src/chainstream/chain/compile.py.
    settings: {
      optimizer: { enabled: true, runs: 20000 },
      viaIR: true,
      evmVersion: "cancun",
    },
  },
  networks: {
    hardhat: {
      // Cancun: the channels contract uses transient storage (ReentrancyGuardTransient).
      hardfork: "cancun",
    },
  },
  paths: {
    sources: "./contracts",
    tests: "./tests/hardhat",
    cache: "./build/hardhat-cache",
    artifacts: "./build/hardhat-artifacts",
  },
  mocha: {
    timeout: 60000,
  },
};
