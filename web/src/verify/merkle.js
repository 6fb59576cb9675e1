// RFC 9162 Merkle trees (docs/formats.md §3): leaf and node hashes, inclusion (§2.1.3.2) and
// consistency (§2.1.4.2) proof verification, with the edge cases of the transparency-dev
// conformance vectors. Indices and sizes are BigInt: a tree size is a u64, past 2^53.
import { sha256 } from '@noble/hashes/sha2.js';
import { concat, equal } from './bytes.js';

const LEAF_TAG = Uint8Array.of(0x00);
const NODE_TAG = Uint8Array.of(0x01);
export const HASH_SIZE = 32;
export const EMPTY_ROOT = sha256(new Uint8Array(0));

export { sha256 };

export const leafHash = (data) => sha256(concat(LEAF_TAG, data));
export const nodeHash = (left, right) => sha256(concat(NODE_TAG, left, right));

/** Why a proof fails, or null when it verifies (so callers can say why). */
export function inclusionError(index, size, leaf, proof, root) {
  index = BigInt(index);
  size = BigInt(size);
  if (index < 0n || index >= size) return `index ${index} is not below tree size ${size}`;
  if (leaf.length !== HASH_SIZE || root.length !== HASH_SIZE) return 'hashes must be 32 bytes';
  if (proof.some((p) => p.length !== HASH_SIZE)) return 'proof hashes must be 32 bytes';
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) return 'proof is longer than the path to the root';
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      // A right-edge node with no right sibling: skip the levels it is promoted through.
      if ((fn & 1n) === 0n) {
        while (fn !== 0n && (fn & 1n) === 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) return 'proof is shorter than the path to the root';
  return equal(r, root) ? null : 'the computed root does not match';
}

export const verifyInclusion = (index, size, leaf, proof, root) =>
  inclusionError(index, size, leaf, proof, root) === null;

/**
 * Why a consistency proof fails, or null. Equal sizes need an empty proof and equal roots
 * (compared byte for byte, whatever their length, as the reference verifier does); an old
 * size of 0 is never provable.
 */
export function consistencyError(size1, size2, proof, root1, root2) {
  size1 = BigInt(size1);
  size2 = BigInt(size2);
  if (size1 > size2) return `old size ${size1} exceeds new size ${size2}`;
  if (size1 === 0n) return 'consistency from an empty tree is not provable';
  if (size1 === size2) {
    if (proof.length !== 0) return 'equal sizes need an empty proof';
    return equal(root1, root2) ? null : `roots of size ${size1} differ`;
  }
  if (root1.length !== HASH_SIZE || root2.length !== HASH_SIZE) return 'roots must be 32 bytes';
  if (proof.some((p) => p.length !== HASH_SIZE)) return 'proof hashes must be 32 bytes';
  if (proof.length === 0) return 'empty proof for different sizes';
  // A power-of-two old tree is a node of the new tree: its root starts the path.
  const path = (size1 & (size1 - 1n)) === 0n ? [root1, ...proof] : [...proof];
  let fn = size1 - 1n;
  let sn = size2 - 1n;
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) return 'proof is longer than expected';
    if ((fn & 1n) === 1n || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if ((fn & 1n) === 0n) {
        while (fn !== 0n && (fn & 1n) === 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) return 'proof is shorter than expected';
  if (!equal(fr, root1)) return 'proof does not lead to the old root';
  if (!equal(sr, root2)) return 'proof does not lead to the new root';
  return null;
}

export const verifyConsistency = (size1, size2, proof, root1, root2) =>
  consistencyError(size1, size2, proof, root1, root2) === null;
