#!/usr/bin/env node
// A solc-compatible command line over the npm package `solc` (solcjs ships its compiler as WebAssembly),
// so py-solc-x and anything else that shells out to `solc` works on machines that cannot download solc.
// Supports: --version, --standard-json (stdin -> stdout), --base-path, --include-path, --allow-paths.
// Unlike `solcjs --standard-json`, it prints only the JSON (no ">>> Cannot retry compilation with SMT" line).
"use strict";
const fs = require("fs");
const path = require("path");

const projectRoot = path.resolve(__dirname, "..");
const solc = require(require.resolve("solc", { paths: [projectRoot] }));

function parseArgs(argv) {
  const opts = { basePath: process.cwd(), includePaths: [], mode: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const eq = arg.indexOf("=");
      return eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    };
    if (arg === "--version") opts.mode = "version";
    else if (arg === "--standard-json") opts.mode = "standard-json";
    else if (arg.startsWith("--base-path")) opts.basePath = path.resolve(value());
    else if (arg.startsWith("--include-path")) opts.includePaths.push(path.resolve(value()));
    else if (arg.startsWith("--allow-paths")) value(); // reads are confined to the search paths below
    else if (arg === "--help" || arg === "-h") opts.mode = "help";
    else {
      process.stderr.write(`solc.js: unsupported argument ${arg} (only --version and --standard-json)\n`);
      process.exit(2);
    }
  }
  return opts;
}

function findImports(searchPaths) {
  return (importPath) => {
    for (const dir of searchPaths) {
      const candidate = path.resolve(dir, importPath);
      if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
    }
    return { error: `File not found in ${searchPaths.join(", ")}: ${importPath}` };
  };
}

const opts = parseArgs(process.argv.slice(2));
if (opts.mode === "version") {
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
} else if (opts.mode === "standard-json") {
  const input = fs.readFileSync(0, "utf8");
  const searchPaths = [opts.basePath, ...opts.includePaths, path.join(projectRoot, "node_modules")];
  process.stdout.write(solc.compile(input, { import: findImports(searchPaths) }) + "\n");
} else {
  process.stdout.write("usage: solc --version | solc --standard-json [--base-path DIR] [--include-path DIR]\n");
  process.exit(opts.mode === "help" ? 0 : 2);
}
