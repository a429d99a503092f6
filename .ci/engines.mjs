// Every production dependency must accept the oldest Node we claim (package.json engines): a package that
// declares a newer minimum (cookie@2 wanted >= 22) is pinned through `overrides` instead.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const semver = require('semver');
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
const oldest = semver.minVersion(pkg.engines.node).version;
const bad = Object.entries(lock.packages).filter(
  ([path, p]) => path && !p.dev && p.engines?.node && !semver.satisfies(oldest, p.engines.node),
);
for (const [path, p] of bad)
  console.error(`${path}@${p.version} needs node ${p.engines.node}; we claim ${pkg.engines.node}`);
if (bad.length) process.exit(1);
console.log(
  `engines: every production dependency accepts node ${oldest} (package.json: ${pkg.engines.node})`,
);
