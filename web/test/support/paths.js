// Where the test data lives: the repository's golden files and ../shared/conformance beside
// the repository (as CI lays it out).
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REPO = path.resolve(WEB, '..');
export const GOLDEN = path.join(REPO, 'tests', 'golden');
export const CONFORMANCE =
  process.env.LINEAGE_AUDIT_CONFORMANCE ?? path.resolve(REPO, '..', 'shared', 'conformance');

export function conformanceFile(...parts) {
  const file = path.join(CONFORMANCE, ...parts);
  if (!existsSync(file)) {
    throw new Error(`conformance data missing: ${file} (is shared/ checked out beside the repo?)`);
  }
  return file;
}

export const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));
