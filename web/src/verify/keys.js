// Public keys (docs/formats.md §1): the keys file / a bundle's `keys` member, with the key ids
// DSSE signatures and checkpoint signature lines are matched by.
import { sha256 } from '@noble/hashes/sha2.js';
import { FormatError, base64Field, concat, toHex, utf8 } from './bytes.js';
import { P256PublicKey } from './ecdsa.js';
import { MLDSA65_PK_SIZE } from './mldsa.js';

export const KEYS_FORMAT = 'lineage-audit/public-keys/v1';
const MLDSA_NOTE_IDENTIFIER = utf8('lineage-audit/ml-dsa-65/v1\n');
const NOTE_TYPE_UNASSIGNED = 0xff; // C2SP signed-note: "no assigned byte", then an identifier

export const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Signed-note key names: non-empty, no whitespace, no control characters, no '+'. */
export const validKeyName = (name) =>
  typeof name === 'string' && name.length > 0 && !/[\p{White_Space}\p{Cc}+]/u.test(name);

function p256Key(value, field) {
  const spki = base64Field(value, field);
  const key = P256PublicKey.fromSpki(spki);
  if (key === null) throw new FormatError(field, 'not an ECDSA P-256 DER SubjectPublicKeyInfo');
  return key;
}

const mldsaKey = (value, field) => base64Field(value, field, MLDSA65_PK_SIZE);

export const recordEcdsaKeyId = (spki) => `ecdsa-p256:${toHex(sha256(spki).subarray(0, 8))}`;
export const recordMldsaKeyId = (pk) => `ml-dsa-65:${toHex(sha256(pk).subarray(0, 8))}`;
export const checkpointEcdsaNoteId = (spki) => sha256(spki).subarray(0, 4);
export const checkpointMldsaNoteId = (name, pk) =>
  sha256(
    concat(utf8(name), Uint8Array.of(0x0a, NOTE_TYPE_UNASSIGNED), MLDSA_NOTE_IDENTIFIER, pk),
  ).subarray(0, 4);

/**
 * Parses a public-keys object into the keys a verifier trusts. `requireFormat`: the object
 * is a keys file and must carry `format` (a bundle's `keys` member has none).
 */
export function parseKeys(obj, field = 'keys', { requireFormat = false } = {}) {
  if (!isObject(obj)) throw new FormatError(field, 'expected a JSON object');
  if (requireFormat && obj.format !== KEYS_FORMAT) {
    throw new FormatError(`${field}.format`, `expected "${KEYS_FORMAT}"`);
  }
  const { record, checkpoint } = obj;
  if (!isObject(record)) throw new FormatError(`${field}.record`, 'expected a JSON object');
  if (!isObject(checkpoint)) throw new FormatError(`${field}.checkpoint`, 'expected a JSON object');
  if (!validKeyName(checkpoint.name)) {
    throw new FormatError(`${field}.checkpoint.name`, 'not a valid note key name');
  }
  const recordEcdsa = p256Key(record['ecdsa-p256'], `${field}.record.ecdsa-p256`);
  const recordMldsa = mldsaKey(record['ml-dsa-65'], `${field}.record.ml-dsa-65`);
  const cpEcdsa = p256Key(checkpoint['ecdsa-p256'], `${field}.checkpoint.ecdsa-p256`);
  const cpMldsa = mldsaKey(checkpoint['ml-dsa-65'], `${field}.checkpoint.ml-dsa-65`);
  return {
    record: {
      ecdsa: recordEcdsa,
      mldsa: recordMldsa,
      ecdsaId: recordEcdsaKeyId(recordEcdsa.spki),
      mldsaId: recordMldsaKeyId(recordMldsa),
    },
    checkpoint: {
      name: checkpoint.name,
      ecdsa: cpEcdsa,
      mldsa: cpMldsa,
      ecdsaNoteId: checkpointEcdsaNoteId(cpEcdsa.spki),
      mldsaNoteId: checkpointMldsaNoteId(checkpoint.name, cpMldsa),
    },
  };
}

/** Short fingerprints a person can compare with the log operator's published keys. */
export function keyFingerprints(keys) {
  return {
    log: keys.checkpoint.name,
    record: [keys.record.ecdsaId, keys.record.mldsaId],
    checkpoint: [
      `ecdsa-p256:${toHex(keys.checkpoint.ecdsaNoteId)}`,
      `ml-dsa-65:${toHex(keys.checkpoint.mldsaNoteId)}`,
    ],
  };
}
