// The verifier's entry point, shared by node's tests and the browser page.
import { FormatError, decodeUtf8 } from './bytes.js';
import { verifyBundle } from './bundle.js';
import { parseKeys } from './keys.js';
import { isTlogProof, verifyTlogProof } from './tlogproof.js';

export { verifyBundle, REASONS } from './bundle.js';
export { verifyTlogProof, isTlogProof } from './tlogproof.js';
export { parseKeys, keyFingerprints, KEYS_FORMAT } from './keys.js';
export { setEcdsaBackend, ecdsaBackend, ecdsaStats } from './ecdsa.js';

/**
 * Parses a public-keys file (bytes or text) into trusted keys. Throws FormatError with the
 * field at fault, which callers report as `malformed`.
 */
export function loadKeysFile(data) {
  const text = typeof data === 'string' ? data : decodeUtf8(data);
  if (text === null) throw new FormatError('keys file', 'not UTF-8');
  let json;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new FormatError('keys file', `not JSON (${err.message})`);
  }
  return parseKeys(json, 'pinned keys', { requireFormat: true });
}

/** Verifies a bundle or a tlog-proof (told apart by the tlog-proof header line). */
export function verifyFile(data, keys = null, options = {}) {
  return isTlogProof(data) ? verifyTlogProof(data, keys) : verifyBundle(data, keys, options);
}
