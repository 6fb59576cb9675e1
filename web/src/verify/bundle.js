// Evidence bundles (docs/formats.md §6): step 0 (shape), then the ordered checks 1-8.
//
// Every entry is taken through steps 2-6 on its own, which gives the page a verdict per
// entry. The bundle's verdict is the §6 algorithm's: the lowest step any entry fails, at the
// first entry in bundle order that fails it. That is the same as running each step over all
// entries before the next, because an entry's first failing step is its lowest one.
import { FormatError, base64Field, decodeUtf8, equal, toHex } from './bytes.js';
import { NoteError, verifyNote } from './checkpoint.js';
import { isObject, parseKeys } from './keys.js';
import { LEAF_SIZE, pae, parseLeaf } from './leaf.js';
import { batchRoots, describeEvent, eventError, parseEvents } from './lineage.js';
import { consistencyError, inclusionError, leafHash, sha256 } from './merkle.js';
import { MLDSA65_SIG_SIZE, mldsa65Verify } from './mldsa.js';
import { describeRecord } from './record.js';

export const BUNDLE_FORMAT = 'lineage-audit/evidence-bundle/v1';
export const BUNDLE_KINDS = ['evidence', 'lineage-path'];
export const MAX_BUNDLE_BYTES = 256 * 1024 * 1024;
export const MAX_BUNDLE_ENTRIES = 1_000_000;
export const MAX_PROOF_HASHES = 64;
export const MAX_ENVELOPE_SIGNATURES = 64;
export const REASONS = [
  'malformed',
  'checkpoint_signature',
  'signature_missing',
  'envelope_signature',
  'leaf_mismatch',
  'inclusion',
  'chain',
  'consistency',
  'lineage_event',
];
const STEP = Object.fromEntries(REASONS.map((reason, step) => [reason, step]));
const ZERO_HASH = new Uint8Array(32);
// Entries verified between two progress reports (the page repaints its progress bar there).
const CHUNK = 16;

// --- step 0: shape ------------------------------------------------------------------------

function list(value, field, limit) {
  if (!Array.isArray(value)) throw new FormatError(field, 'expected a JSON array');
  if (value.length > limit) throw new FormatError(field, `more than ${limit} items`);
  return value;
}

function string(value, field) {
  if (typeof value !== 'string') throw new FormatError(field, 'expected a string');
  return value;
}

function object(value, field) {
  if (!isObject(value)) throw new FormatError(field, 'expected a JSON object');
  return value;
}

const hashes = (value, field) =>
  list(value, field, MAX_PROOF_HASHES).map((h, i) => base64Field(h, `${field}[${i}]`, 32));

function parseSeq(value, field) {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new FormatError(field, 'expected an unsigned 64-bit integer');
  }
  // JSON numbers become doubles here: a seq past 2^53 cannot be read exactly, so it is
  // refused rather than rounded (no real log comes near it).
  if (!Number.isSafeInteger(value)) {
    throw new FormatError(field, 'above 2^53 - 1, which this verifier cannot read exactly');
  }
  return value;
}

function parseEntry(value, field) {
  const obj = object(value, field);
  const seq = parseSeq(obj.seq, `${field}.seq`);
  const leafInput = base64Field(obj.leaf_input, `${field}.leaf_input`, LEAF_SIZE);
  const leaf = parseLeaf(leafInput);
  if (leaf === null) {
    throw new FormatError(`${field}.leaf_input`, "lacks the 'lineage-audit/leaf/v1\\n' prefix");
  }
  const envelope = object(obj.envelope, `${field}.envelope`);
  const payloadType = string(envelope.payloadType, `${field}.envelope.payloadType`);
  const payload = base64Field(envelope.payload, `${field}.envelope.payload`);
  const rawSigs = list(
    envelope.signatures,
    `${field}.envelope.signatures`,
    MAX_ENVELOPE_SIGNATURES,
  );
  const signatures = rawSigs.map((item, i) => {
    const where = `${field}.envelope.signatures[${i}]`;
    const sig = object(item, where);
    return {
      keyid: string(sig.keyid, `${where}.keyid`),
      sig: base64Field(sig.sig, `${where}.sig`),
    };
  });
  const proof = hashes(obj.inclusion_proof, `${field}.inclusion_proof`);
  return { seq, leafInput, leaf, payloadType, payload, signatures, proof };
}

/** Step 0 on a parsed JSON value; `needKeys`: the bundle's own keys will be used. */
export function parseBundle(obj, { needKeys }) {
  const top = object(obj, 'bundle');
  if (top.format !== BUNDLE_FORMAT) throw new FormatError('format', `expected "${BUNDLE_FORMAT}"`);
  if (!BUNDLE_KINDS.includes(top.kind)) {
    throw new FormatError('kind', `expected one of ${BUNDLE_KINDS.join(', ')}`);
  }
  const checkpoint = string(top.checkpoint, 'checkpoint');
  const keys = needKeys ? parseKeys(top.keys, 'keys') : null;
  const rawEntries = list(top.entries, 'entries', MAX_BUNDLE_ENTRIES);
  const entries = rawEntries.map((item, i) => parseEntry(item, `entries[${i}]`));
  let consistency = null;
  if (top.consistency !== null && top.consistency !== undefined) {
    const c = object(top.consistency, 'consistency');
    consistency = {
      oldCheckpoint: string(c.old_checkpoint, 'consistency.old_checkpoint'),
      proof: hashes(c.proof, 'consistency.proof'),
    };
  }
  const events = parseEvents(top.events);
  // `node` (a lineage path proof's subject) is only shown, never trusted for anything.
  const node = typeof top.node === 'string' ? top.node : null;
  return { kind: top.kind, checkpoint, keys, entries, consistency, events, node };
}

// --- steps 2-6, one entry at a time ---------------------------------------------------------

const pick = (entry, keyid) => entry.signatures.find((s) => s.keyid === keyid)?.sig ?? null;
const failure = (reason, message) => ({ reason, message });

function signaturesPresent(entry, keys) {
  for (const [label, keyid] of [
    ['ECDSA P-256', keys.record.ecdsaId],
    ['ML-DSA-65', keys.record.mldsaId],
  ]) {
    if (pick(entry, keyid) === null) {
      return failure('signature_missing', `no ${label} signature with keyid ${keyid}`);
    }
  }
  return null;
}

/** Step 3; the ECDSA half is a promise (WebCrypto), the ML-DSA half runs at once. */
async function signaturesValid(entry, keys, message) {
  const ecdsaSig = pick(entry, keys.record.ecdsaId);
  const mldsaSig = pick(entry, keys.record.mldsaId);
  const ecdsaPending = keys.record.ecdsa.verifyDer(message, ecdsaSig);
  const mldsaOk = mldsa65Verify(keys.record.mldsa, message, mldsaSig);
  if (!(await ecdsaPending)) {
    return failure('envelope_signature', 'ECDSA P-256 signature does not verify');
  }
  if (!mldsaOk) {
    const detail =
      mldsaSig.length === MLDSA65_SIG_SIZE
        ? 'does not verify'
        : `is ${mldsaSig.length} bytes, not ${MLDSA65_SIG_SIZE}`;
    return failure('envelope_signature', `ML-DSA-65 signature ${detail}`);
  }
  return null;
}

function leafBinding(entry, keys, message) {
  const { leaf } = entry;
  if (leaf.seq !== BigInt(entry.seq)) {
    return failure('leaf_mismatch', `leaf input seq is ${leaf.seq}, entry seq is ${entry.seq}`);
  }
  if (!equal(leaf.paeHash, sha256(message))) {
    return failure('leaf_mismatch', 'leaf input does not commit to this payload (PAE)');
  }
  if (!equal(leaf.ecdsaSigHash, sha256(pick(entry, keys.record.ecdsaId)))) {
    return failure('leaf_mismatch', 'leaf input does not commit to the ECDSA signature');
  }
  if (!equal(leaf.mldsaSigHash, sha256(pick(entry, keys.record.mldsaId)))) {
    return failure('leaf_mismatch', 'leaf input does not commit to the ML-DSA signature');
  }
  return null;
}

function included(entry, note, hash) {
  if (BigInt(entry.seq) >= note.size) {
    return failure('inclusion', `seq ${entry.seq} is not below the tree size ${note.size}`);
  }
  const why = inclusionError(entry.seq, note.size, hash, entry.proof, note.root);
  return (
    why &&
    failure('inclusion', `inclusion proof fails against the root of size ${note.size}: ${why}`)
  );
}

function chained(entry, hashBySeq) {
  if (entry.seq === 0) {
    return equal(entry.leaf.prev, ZERO_HASH)
      ? null
      : failure('chain', 'entry 0 must have an all-zero prev_leaf_hash');
  }
  const previous = hashBySeq.get(entry.seq - 1);
  if (previous !== undefined && !equal(entry.leaf.prev, previous)) {
    return failure('chain', `prev_leaf_hash is not the leaf hash of entry ${entry.seq - 1}`);
  }
  return null;
}

/** Steps 2-6 for every entry: each entry's first failure (or null), in bundle order. */
async function checkEntries(entries, keys, note, onProgress) {
  const leafHashes = entries.map((e) => leafHash(e.leafInput));
  // Two entries with one seq: the later one's hash, as the Python and Rust verifiers take it.
  const hashBySeq = new Map(entries.map((e, i) => [e.seq, leafHashes[i]]));
  const outcomes = new Array(entries.length).fill(null);
  for (let start = 0; start < entries.length; start += CHUNK) {
    const chunk = entries.slice(start, start + CHUNK);
    const results = await Promise.all(
      chunk.map(async (entry, k) => {
        const missing = signaturesPresent(entry, keys);
        if (missing) return missing;
        const message = pae(entry.payloadType, entry.payload);
        return (
          (await signaturesValid(entry, keys, message)) ??
          leafBinding(entry, keys, message) ??
          included(entry, note, leafHashes[start + k]) ??
          chained(entry, hashBySeq)
        );
      }),
    );
    results.forEach((r, k) => (outcomes[start + k] = r));
    await onProgress?.(Math.min(start + CHUNK, entries.length), entries.length);
  }
  return { outcomes, leafHashes };
}

/** The §6 verdict over per-entry outcomes: lowest failing step, first entry in bundle order. */
export function firstFailure(entries, outcomes) {
  let best = null;
  outcomes.forEach((outcome, i) => {
    if (outcome && (best === null || STEP[outcome.reason] < STEP[best.reason])) {
      best = { ...outcome, seq: entries[i].seq };
    }
  });
  return best;
}

async function checkConsistency(consistency, note, keys) {
  let old;
  try {
    old = await verifyNote(consistency.oldCheckpoint, keys);
  } catch (err) {
    if (err instanceof NoteError) return `old checkpoint: ${err.message}`;
    throw err;
  }
  const why = consistencyError(old.size, note.size, consistency.proof, old.root, note.root);
  return why && `consistency proof from size ${old.size} to ${note.size} does not verify: ${why}`;
}

// --- the verdict ------------------------------------------------------------------------------

function entryView(entry, outcome, leafHashHex, status) {
  return {
    seq: entry.seq,
    status,
    reason: outcome?.reason ?? null,
    message: outcome?.message ?? null,
    leafHash: leafHashHex,
    signatures: entry.signatures.map((s) => s.keyid),
    record: describeRecord(entry.payloadType, entry.payload),
  };
}

function eventsView(events, errors) {
  return events.map((e, i) => ({
    recordSeq: e.recordSeq,
    index: e.index,
    size: e.size,
    status: errors === null ? 'unchecked' : errors[i] ? 'fail' : 'ok',
    message: errors === null ? 'not checked: an earlier step failed' : errors[i],
    event: describeEvent(e.event),
  }));
}

const noteView = (note) => ({
  origin: note.origin,
  size: Number(note.size),
  root: toHex(note.root),
  extensions: note.extensions,
});

function verdict(valid, reason, seq, message, keysPinned, extra = {}) {
  return { kind: 'bundle', valid, reason, seq, message, keysPinned, ...extra };
}

/**
 * Verifies an evidence bundle: `data` is its bytes (or text), `keys` trusted keys from
 * parseKeys (null: use the bundle's own keys, and say so). Resolves to
 * {valid, reason, seq, message, keysPinned, checkpoint, entries, consistency}.
 */
export async function verifyBundle(data, keys = null, { onProgress } = {}) {
  const keysPinned = keys !== null;
  let parsed;
  try {
    if (data.length > MAX_BUNDLE_BYTES) {
      throw new FormatError('bundle', `larger than ${MAX_BUNDLE_BYTES} bytes`);
    }
    const text = typeof data === 'string' ? data : decodeUtf8(data);
    if (text === null) throw new FormatError('bundle', 'not UTF-8');
    let json;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new FormatError('bundle', `not JSON (${err.message})`);
    }
    parsed = parseBundle(json, { needKeys: !keysPinned });
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
    return verdict(false, 'malformed', null, err.message, keysPinned, { entries: [] });
  }
  const trusted = keys ?? parsed.keys;
  let note;
  try {
    note = await verifyNote(parsed.checkpoint, trusted);
  } catch (err) {
    if (!(err instanceof NoteError)) throw err;
    const unchecked = failure('checkpoint_signature', 'not checked: the checkpoint is not trusted');
    return verdict(false, 'checkpoint_signature', null, `checkpoint: ${err.message}`, keysPinned, {
      entries: parsed.entries.map((e) =>
        entryView(e, unchecked, toHex(leafHash(e.leafInput)), 'unchecked'),
      ),
      events: eventsView(parsed.events, null),
    });
  }
  const { outcomes, leafHashes } = await checkEntries(parsed.entries, trusted, note, onProgress);
  const entries = parsed.entries.map((e, i) =>
    entryView(e, outcomes[i], toHex(leafHashes[i]), outcomes[i] ? 'fail' : 'ok'),
  );
  const context = {
    checkpoint: noteView(note),
    entries,
    bundleKind: parsed.kind,
    lineageNode: parsed.node,
    consistency: null,
    events: eventsView(parsed.events, null),
  };
  const first = firstFailure(parsed.entries, outcomes);
  if (first) return verdict(false, first.reason, first.seq, first.message, keysPinned, context);
  if (parsed.consistency) {
    const why = await checkConsistency(parsed.consistency, note, trusted);
    context.consistency = {
      ok: why === null,
      message: why ?? 'the checkpoint extends the older one',
    };
    if (why) return verdict(false, 'consistency', null, why, keysPinned, context);
  }
  // 8: a lineage path proof's events, each in the batch its intent signs (first failure wins)
  const roots = batchRoots(parsed.entries);
  const eventErrors = parsed.events.map((e, i) => eventError(e, i, roots));
  context.events = eventsView(parsed.events, eventErrors);
  const badEvent = eventErrors.findIndex((why) => why !== null);
  if (badEvent >= 0) {
    const seq = parsed.events[badEvent].recordSeq;
    return verdict(false, 'lineage_event', seq, eventErrors[badEvent], keysPinned, context);
  }
  const n = parsed.entries.length;
  let since = parsed.consistency ? ', consistent with the earlier checkpoint' : '';
  if (parsed.events.length) {
    since += `, ${parsed.events.length} lineage events proved in their attested batches`;
  }
  const trust = keysPinned ? 'keys pinned' : 'keys NOT pinned: taken from the bundle itself';
  const message =
    `${n} entr${n === 1 ? 'y' : 'ies'} in ${note.origin} at tree size ${note.size}` +
    `${since} (${trust})`;
  return verdict(true, null, null, message, keysPinned, context);
}
