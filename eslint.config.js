// A light lint of the JavaScript we write (the web player, its tests, the Hardhat tests): the recommended
// correctness rules, nothing about style. `make lint` runs it.
const js = require("@eslint/js");
const globals = require("globals");

module.exports = [
  { ignores: ["node_modules/**", ".venv/**", "build/**", "test-artifacts/**", "**/*.min.js"] },
  js.configs.recommended,
  {
    files: ["frontend/**/*.js", "tests/e2e/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.browser } },
  },
  {
    files: ["tests/js/**/*.mjs", "scripts/**/*.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.node } },
  },
  {
    files: ["tests/hardhat/**/*.js", "hardhat.config.js", "eslint.config.js", "scripts/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "commonjs", globals: { ...globals.node, ...globals.mocha } },
  },
  {
    rules: {
      "no-unused-vars": ["error", { argsIgnorePattern: "^_", caughtErrors: "none" }],
    },
  },
];
