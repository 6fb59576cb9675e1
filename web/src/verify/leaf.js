// Leaf inputs (docs/formats.md §3: 158 bytes) and DSSE's pre-authentication encoding.
import { concat, startsWith, utf8 } from './bytes.js';

export const LEAF_PREFIX = utf8('lineage-audit/leaf/v1\n');
export const LEAF_SIZE = 158;

/** `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, LEN in ASCII decimal bytes. */
export function pae(payloadType, payload) {
  const type = utf8(payloadType);
  return concat(utf8(`DSSEv1 ${type.length} `), type, utf8(` ${payload.length} `), payload);
}

/** The fields of a leaf input (seq as BigInt), or null if its length or prefix is wrong. */
export function parseLeaf(bytes) {
  if (bytes.length !== LEAF_SIZE || !startsWith(bytes, LEAF_PREFIX)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    seq: view.getBigUint64(22, false),
    prev: bytes.subarray(30, 62),
    paeHash: bytes.subarray(62, 94),
    ecdsaSigHash: bytes.subarray(94, 126),
    mldsaSigHash: bytes.subarray(126, 158),
  };
}
