// Lineage path proofs (docs/formats.md §6.1): a bundle's `events`, each an OpenLineage event
// proved to be leaf `index` of the batch whose RFC 9162 root a `lineage.ingest` intent of the
// bundle signs (subject `openlineage-batch:<size>`, digest = the root). Step 8: it runs after
// steps 1-7, so the roots it reads are signed.
import { FormatError, base64Field, decodeUtf8, fromHex } from './bytes.js';
import { isObject } from './keys.js';
import { inclusionError, leafHash } from './merkle.js';

export const BATCH_SUBJECT = 'openlineage-batch:';
const MAX_PATH_HASHES = 64;
const U64_MAX = (1n << 64n) - 1n;

function unsigned(value, field) {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new FormatError(field, 'expected an unsigned integer (below 2^53 here)');
  }
  return value;
}

/** Step 0 for `events` (absent or null: none). Shape errors are `malformed`. */
export function parseEvents(value) {
  if (value === null || value === undefined) return [];
  if (!Array.isArray(value)) throw new FormatError('events', 'expected a JSON array');
  return value.map((item, i) => {
    const field = `events[${i}]`;
    if (!isObject(item)) throw new FormatError(field, 'expected a JSON object');
    if (!Array.isArray(item.path)) throw new FormatError(`${field}.path`, 'expected a JSON array');
    if (item.path.length > MAX_PATH_HASHES) {
      throw new FormatError(`${field}.path`, `more than ${MAX_PATH_HASHES} hashes`);
    }
    return {
      recordSeq: unsigned(item.record_seq, `${field}.record_seq`),
      index: unsigned(item.index, `${field}.index`),
      size: unsigned(item.size, `${field}.size`),
      event: base64Field(item.event, `${field}.event`),
      path: item.path.map((h, j) => base64Field(h, `${field}.path[${j}]`, 32)),
    };
  });
}

/** (size, root) of every batch an entry's statement attests, by the entry's seq. */
export function batchRoots(entries) {
  const roots = new Map();
  for (const entry of entries) {
    let statement;
    try {
      statement = JSON.parse(decodeUtf8(entry.payload) ?? '');
    } catch {
      continue; // not a statement: attests no batch
    }
    const subjects =
      isObject(statement) && Array.isArray(statement.subject) ? statement.subject : [];
    for (const subject of subjects) {
      const name = isObject(subject) && typeof subject.name === 'string' ? subject.name : '';
      if (!name.startsWith(BATCH_SUBJECT)) continue;
      const sizeText = name.slice(BATCH_SUBJECT.length);
      const digest = isObject(subject.digest) ? subject.digest.sha256 : null;
      if (!/^\+?[0-9]+$/.test(sizeText) || BigInt(sizeText) > U64_MAX) continue;
      if (typeof digest !== 'string' || !/^[0-9a-fA-F]{64}$/.test(digest)) continue;
      roots.set(entry.seq, { size: BigInt(sizeText), root: fromHex(digest) });
    }
  }
  return roots;
}

/** Why event `i` fails step 8, or null. */
export function eventError(event, i, roots) {
  const attested = roots.get(event.recordSeq);
  if (attested === undefined) {
    return `events[${i}]: seq ${event.recordSeq} is not a lineage.ingest intent of this bundle`;
  }
  if (BigInt(event.size) !== attested.size) {
    return `events[${i}]: batch size ${event.size} differs from the signed size ${attested.size}`;
  }
  const why = inclusionError(
    event.index,
    event.size,
    leafHash(event.event),
    event.path,
    attested.root,
  );
  return why && `events[${i}]: event is not leaf ${event.index} of the attested batch: ${why}`;
}

/** A readable summary of an OpenLineage event (display only). */
export function describeEvent(bytes) {
  let event;
  try {
    event = JSON.parse(decodeUtf8(bytes) ?? '');
  } catch {
    return { error: 'not JSON' };
  }
  if (!isObject(event)) return { error: 'not a JSON object' };
  const dataset = (d) => (isObject(d) ? `${d.namespace ?? '?'}:${d.name ?? '?'}` : '?');
  const job = isObject(event.job) ? `${event.job.namespace ?? '?'}:${event.job.name ?? '?'}` : null;
  return {
    eventType: typeof event.eventType === 'string' ? event.eventType : null,
    eventTime: typeof event.eventTime === 'string' ? event.eventTime : null,
    job,
    inputs: Array.isArray(event.inputs) ? event.inputs.map(dataset) : [],
    outputs: Array.isArray(event.outputs) ? event.outputs.map(dataset) : [],
    json: JSON.stringify(event, null, 2),
  };
}
