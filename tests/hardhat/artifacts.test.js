// The Hardhat build and the Python toolchain (src/chainstream/chain/compile.py, which writes the committed
// artifacts in src/chainstream/chain/artifacts/) use the same solcjs and settings, so they must produce the
// same ABI and bytecode, metadata hash included. A failure means the settings drifted apart, or the contracts
// changed without `python scripts/compile_contracts.py` being rerun.
"use strict";

const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const hre = require("hardhat");

const COMMITTED = path.join(hre.config.paths.root, "src", "chainstream", "chain", "artifacts");

describe("Hardhat artifacts match the committed Python-built artifacts", function () {
  const manifestPath = path.join(COMMITTED, "manifest.json");
  const manifest = fs.existsSync(manifestPath) ? JSON.parse(fs.readFileSync(manifestPath, "utf8")) : null;

  it("uses the compiler version and settings of the manifest", function () {
    if (manifest === null) this.skip();
    const solidity = hre.config.solidity.compilers;
    assert.equal(solidity.length, 1);
    assert.equal(solidity[0].version, manifest.compiler);
    const { optimizer, viaIR, evmVersion } = solidity[0].settings;
    assert.deepEqual(
      { optimizer: { enabled: optimizer.enabled, runs: optimizer.runs }, viaIR, evmVersion },
      {
        optimizer: manifest.settings.optimizer,
        viaIR: manifest.settings.viaIR,
        evmVersion: manifest.settings.evmVersion,
      },
    );
  });

  for (const name of manifest ? manifest.contracts : []) {
    it(`${name}: same ABI, creation and runtime bytecode`, async function () {
      const committed = JSON.parse(fs.readFileSync(path.join(COMMITTED, `${name}.json`), "utf8"));
      const built = await hre.artifacts.readArtifact(name);
      assert.equal(built.sourceName, committed.sourceName);
      assert.deepEqual(built.abi, committed.abi);
      assert.equal(built.bytecode, committed.bytecode, `${name} creation bytecode differs`);
      assert.equal(built.deployedBytecode, committed.deployedBytecode, `${name} runtime bytecode differs`);
    });
  }
});
