// Pure ML-DSA-65 (FIPS 204) verification with @noble/post-quantum (docs/formats.md §2: empty
// context; a signature that is not 3309 bytes is rejected before any arithmetic).
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';

export const MLDSA65_PK_SIZE = 1952;
export const MLDSA65_SIG_SIZE = 3309;
const MAX_CONTEXT = 255;
const EMPTY = new Uint8Array(0);

/** Whether `sig` is a valid ML-DSA-65 signature of `message` under raw public key `pk`. */
export function mldsa65Verify(pk, message, sig, context = EMPTY) {
  if (pk.length !== MLDSA65_PK_SIZE || sig.length !== MLDSA65_SIG_SIZE) return false;
  if (context.length > MAX_CONTEXT) return false;
  try {
    return ml_dsa65.verify(sig, message, pk, { context });
  } catch {
    return false; // noble throws on encodings it cannot decode: not a valid signature
  }
}
