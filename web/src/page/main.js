// The page: trusted keys, a drop zone, and the verdict with every entry in readable form.
// All verification is src/verify (the same modules node's tests run); this file only reads
// files and renders. Bundle content reaches the DOM as text nodes only, never as HTML.
import { ecdsaStats, keyFingerprints, loadKeysFile, verifyFile } from '../verify/index.js';
import { decodeUtf8 } from '../verify/bytes.js';

const PIN_STORAGE = 'lineage-audit.pinned-keys.v1';
const REASON_TEXT = {
  malformed: 'the file is not a well-formed bundle or proof',
  checkpoint_signature: 'the checkpoint is not signed by the trusted log keys',
  signature_missing: 'a record lacks one of its two signatures',
  envelope_signature: 'a record signature does not verify',
  leaf_mismatch: 'a leaf input does not commit to its record',
  inclusion: 'an entry is not included in the checkpoint’s tree',
  chain: 'the hash chain between entries is broken',
  consistency: 'the checkpoint does not extend the older one',
  lineage_event: 'a lineage event is not in the batch its record signs',
};

const $ = (id) => document.getElementById(id);
const state = { keys: null, keysText: null, keysFrom: null, lastFile: null };

/** Builds an element; string children become text nodes (never parsed as HTML). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Yields to the browser so it can repaint. A MessageChannel task, not setTimeout: nested
// timeouts are clamped to 4 ms each, which would slow a long verification for nothing.
const channel = new MessageChannel();
const yieldToBrowser = () =>
  new Promise((resolve) => {
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
const REPAINT_MS = 50;
const readBytes = async (file) => new Uint8Array(await file.arrayBuffer());

// --- keys ------------------------------------------------------------------------------------

function storedKeys() {
  try {
    return localStorage.getItem(PIN_STORAGE);
  } catch {
    return null; // storage disabled: pinning is simply unavailable
  }
}

function useKeys(text, from) {
  const keys = loadKeysFile(text);
  state.keys = keys;
  state.keysText = text;
  state.keysFrom = from;
  $('keys-error').hidden = true;
  renderKeys();
}

function showKeysError(message) {
  $('keys-error').textContent = `These keys cannot be used: ${message}`;
  $('keys-error').hidden = false;
}

function renderKeys() {
  const status = $('keys-status');
  const remembered = storedKeys() !== null && storedKeys() === state.keysText;
  status.replaceChildren();
  status.dataset.pinned = String(state.keys !== null);
  $('keys-remember').hidden = state.keys === null || remembered;
  $('keys-forget').hidden = state.keys === null;
  if (state.keys === null) {
    status.append(
      h('strong', {}, 'No keys pinned.'),
      ' A bundle will be checked against the keys it carries itself, which shows it is ',
      'self-consistent, not who signed it. Load the log’s public keys (',
      h('code', {}, 'lineage-audit keys export'),
      '), obtained from its operator by a channel you trust.',
    );
    return;
  }
  const fp = keyFingerprints(state.keys);
  status.append(
    h('strong', {}, `Trusted log: ${fp.log}`),
    h(
      'span',
      { class: 'muted' },
      remembered ? ' (remembered on this computer)' : ` (${state.keysFrom})`,
    ),
    h(
      'dl',
      { class: 'fingerprints' },
      h('dt', {}, 'record keys'),
      h(
        'dd',
        {},
        fp.record.map((id) => h('code', {}, id)),
      ),
      h('dt', {}, 'checkpoint keys'),
      h(
        'dd',
        {},
        fp.checkpoint.map((id) => h('code', {}, id)),
      ),
    ),
  );
}

function restorePinnedKeys() {
  const text = storedKeys();
  if (text === null) return renderKeys();
  try {
    useKeys(text, 'remembered');
  } catch {
    localStorage.removeItem(PIN_STORAGE); // a stale or damaged entry: forget it
    renderKeys();
  }
}

async function keysChanged() {
  if (state.lastFile) await verifyAndShow(state.lastFile.name, state.lastFile.bytes);
}

// --- verification ------------------------------------------------------------------------------

/** Public-keys files are told apart from bundles by their `format` member. */
function looksLikeKeysFile(bytes) {
  const text = decodeUtf8(bytes.subarray(0, 4096)) ?? '';
  return (
    /"format"\s*:\s*"lineage-audit\/public-keys\/v1"/.test(text) && !text.includes('"entries"')
  );
}

async function handleFile(file) {
  const bytes = await readBytes(file);
  if (looksLikeKeysFile(bytes)) {
    try {
      useKeys(decodeUtf8(bytes), file.name);
      await keysChanged();
    } catch (err) {
      showKeysError(err.message);
    }
    return;
  }
  state.lastFile = { name: file.name, bytes };
  await verifyAndShow(file.name, bytes);
}

async function verifyAndShow(name, bytes) {
  document.body.dataset.state = 'verifying';
  const progress = $('progress');
  progress.hidden = false;
  progress.value = 0;
  let lastYield = performance.now();
  const onProgress = async (done, total) => {
    if (performance.now() - lastYield < REPAINT_MS) return;
    progress.value = done / total;
    await yieldToBrowser();
    lastYield = performance.now();
  };
  const before = { ...ecdsaStats };
  const start = performance.now();
  let result;
  try {
    result = await verifyFile(bytes, state.keys, { onProgress });
  } catch (err) {
    result = {
      valid: false,
      reason: 'malformed',
      seq: null,
      message: `internal error: ${err.message}`,
      entries: [],
    };
  }
  const verifyMs = performance.now() - start;
  const ecdsa = {
    webcrypto: ecdsaStats.webcrypto - before.webcrypto,
    noble: ecdsaStats.noble - before.noble,
  };
  progress.hidden = true;
  const renderStart = performance.now();
  renderResult(name, bytes.length, result, verifyMs, ecdsa);
  const renderMs = performance.now() - renderStart;
  // For scripted checks (the browser test and the benchmark read it; it is not an API).
  window.lineageAuditLast = { file: name, bytes: bytes.length, verifyMs, renderMs, ecdsa, result };
  document.body.dataset.state = 'done';
}

// --- rendering ---------------------------------------------------------------------------------

function verdictBanner(name, size, result, verifyMs, ecdsa) {
  const valid = result.valid;
  const where = result.seq === null || result.seq === undefined ? '' : ` at seq ${result.seq}`;
  const headline = valid ? 'VALID' : `INVALID · ${result.reason}${where}`;
  const explain = valid ? null : REASON_TEXT[result.reason];
  const timing =
    `${name} · ${(size / 1024).toFixed(1)} KiB · verified in ${verifyMs.toFixed(0)} ms` +
    (ecdsa.webcrypto || ecdsa.noble
      ? ` · ECDSA by WebCrypto ${ecdsa.webcrypto}, noble ${ecdsa.noble}`
      : '');
  const unpinned = valid && !result.keysPinned;
  return h(
    'div',
    {
      id: 'verdict',
      class: `verdict ${valid ? (unpinned ? 'warn' : 'ok') : 'bad'}`,
      role: 'status',
      dataset: { valid: String(valid), reason: result.reason ?? '', seq: result.seq ?? '' },
    },
    h(
      'div',
      { class: 'headline' },
      h('span', { class: 'icon', 'aria-hidden': 'true' }, valid ? '✓' : '✗'),
      headline,
    ),
    explain && h('p', { class: 'explain' }, explain),
    h('p', { class: 'message' }, result.message),
    unpinned &&
      h(
        'p',
        { class: 'unpinned' },
        'Keys NOT pinned: this only shows the bundle agrees with itself. Load the log’s public keys to know who signed it.',
      ),
    h('p', { class: 'timing' }, timing),
  );
}

function checkpointView(result) {
  const cp = result.checkpoint;
  if (!cp) return null;
  const rows = [
    ['log', cp.origin],
    ['tree size', String(cp.size)],
    ['root', cp.root],
  ];
  if (result.bundleKind) rows.push(['bundle kind', result.bundleKind]);
  if (result.consistency) rows.push(['consistency', result.consistency.message]);
  return h(
    'div',
    { class: 'checkpoint' },
    h(
      'h3',
      {},
      result.keysPinned
        ? 'Checkpoint (both signatures verified)'
        : 'Checkpoint (both signatures verified against the bundle’s own keys)',
    ),
    h(
      'dl',
      {},
      rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, h('code', {}, v))]),
    ),
  );
}

const STATUS_ICON = { ok: '✓', fail: '✗', unchecked: '–' };

function recordFields(record) {
  if (!record) return [['record', 'not in a tlog-proof (it carries the leaf input only)']];
  if (record.error) return [['record', record.error]];
  const fields = [
    // kind and action are in the entry's title line unless the predicate is not ours
    ['predicate', record.kind === null ? record.predicateType : null],
    ['actor', record.actor],
    ['requested at', record.requestedAt],
    ['status', record.status],
    ['intent', record.intent && `seq ${record.intent.seq} · leaf ${record.intent.leafHash}`],
    ['error', record.error],
  ];
  for (const s of record.subjects) fields.push(['subject', `${s.name} · sha256 ${s.sha256}`]);
  return fields.filter(([, v]) => v !== null && v !== undefined);
}

function entryView(entry) {
  const record = entry.record;
  const title =
    record && !record.error
      ? [record.kind ?? 'record', record.action].filter(Boolean).join(' · ')
      : 'leaf';
  const fields = recordFields(record);
  return h(
    'li',
    {
      class: `entry ${entry.status}`,
      dataset: { seq: entry.seq, status: entry.status, reason: entry.reason ?? '' },
    },
    h(
      'div',
      { class: 'entry-head' },
      h('span', { class: 'icon', 'aria-hidden': 'true' }, STATUS_ICON[entry.status]),
      h('span', { class: 'seq' }, `seq ${entry.seq}`),
      h('span', { class: 'title' }, title),
      h(
        'span',
        { class: 'state' },
        entry.status === 'ok' ? 'verified' : entry.status === 'fail' ? entry.reason : 'not checked',
      ),
    ),
    entry.message && h('p', { class: 'why' }, entry.message),
    h(
      'dl',
      { class: 'fields' },
      fields.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
    ),
    h(
      'details',
      {},
      h('summary', {}, 'statement and hashes'),
      h(
        'dl',
        { class: 'fields' },
        h('dt', {}, 'leaf hash'),
        h('dd', {}, h('code', {}, entry.leafHash)),
        entry.signatures.length
          ? [
              h('dt', {}, 'signatures'),
              h(
                'dd',
                {},
                entry.signatures.map((k) => h('code', {}, k)),
              ),
            ]
          : null,
      ),
      record?.json && h('pre', {}, record.json),
    ),
  );
}

function eventView(item) {
  const e = item.event;
  const flow = e.error ? e.error : `${e.inputs.join(', ') || '—'} → ${e.outputs.join(', ') || '—'}`;
  const state = { ok: 'proved', fail: 'lineage_event', unchecked: 'not checked' }[item.status];
  return h(
    'li',
    { class: `entry ${item.status}`, dataset: { recordSeq: item.recordSeq, status: item.status } },
    h(
      'div',
      { class: 'entry-head' },
      h('span', { class: 'icon', 'aria-hidden': 'true' }, STATUS_ICON[item.status]),
      h('span', { class: 'seq' }, `event ${item.index + 1} of ${item.size}`),
      h('span', { class: 'title' }, [e.eventType, e.job].filter(Boolean).join(' · ') || 'event'),
      h('span', { class: 'state' }, state),
    ),
    item.status !== 'ok' && item.message && h('p', { class: 'why' }, item.message),
    h(
      'dl',
      { class: 'fields' },
      h('dt', {}, 'datasets'),
      h('dd', {}, flow),
      h('dt', {}, 'batch signed at'),
      h('dd', {}, `seq ${item.recordSeq}`),
      e.eventTime && [h('dt', {}, 'event time'), h('dd', {}, e.eventTime)],
    ),
    e.json && h('details', {}, h('summary', {}, 'event JSON'), h('pre', {}, e.json)),
  );
}

function eventsList(events, node) {
  if (!events?.length) return '';
  const proved = events.filter((e) => e.status === 'ok').length;
  const of = node ? ` of ${node} (as the bundle names it)` : '';
  return [
    h(
      'h3',
      { class: 'entries-title' },
      `Lineage path${of}: ${events.length} events, ${proved} proved in their signed batches`,
    ),
    h('ol', { id: 'events', class: 'entries' }, events.map(eventView)),
  ];
}

function renderResult(name, size, result, verifyMs, ecdsa) {
  const section = $('result');
  const entries = result.entries ?? [];
  const count = (status) => entries.filter((e) => e.status === status).length;
  const parts = [
    ['verified', count('ok')],
    ['failed', count('fail')],
    ['not checked', count('unchecked')],
  ];
  const summary = entries.length
    ? `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}: ` +
      parts
        .filter(([, n]) => n > 0)
        .map(([what, n]) => `${n} ${what}`)
        .join(', ')
    : null;
  section.replaceChildren(
    verdictBanner(name, size, result, verifyMs, ecdsa),
    checkpointView(result) ?? '',
    summary ? h('h3', { class: 'entries-title' }, summary) : '',
    entries.length ? h('ol', { id: 'entries', class: 'entries' }, entries.map(entryView)) : '',
    ...[eventsList(result.events, result.lineageNode)].flat(),
  );
  section.hidden = false;
  section.scrollIntoView({ block: 'start' });
}

// --- wiring ------------------------------------------------------------------------------------

function wire() {
  // A file dropped anywhere must not make the browser navigate to it.
  for (const type of ['dragover', 'drop']) window.addEventListener(type, (e) => e.preventDefault());
  const zone = $('dropzone');
  zone.addEventListener('dragover', () => zone.classList.add('over'));
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  window.addEventListener('drop', async (e) => {
    zone.classList.remove('over');
    for (const file of e.dataTransfer?.files ?? []) await handleFile(file);
  });
  $('evidence-input').addEventListener('change', async (e) => {
    for (const file of e.target.files) await handleFile(file);
    e.target.value = '';
  });
  $('keys-input').addEventListener('change', async (e) => {
    const [file] = e.target.files;
    e.target.value = '';
    if (!file) return;
    try {
      useKeys(decodeUtf8(await readBytes(file)) ?? '', file.name);
      await keysChanged();
    } catch (err) {
      showKeysError(err.message);
    }
  });
  $('keys-use-text').addEventListener('click', async () => {
    try {
      useKeys($('keys-text').value, 'pasted');
      await keysChanged();
    } catch (err) {
      showKeysError(err.message);
    }
  });
  $('keys-remember').addEventListener('click', () => {
    try {
      localStorage.setItem(PIN_STORAGE, state.keysText);
    } catch (err) {
      showKeysError(`cannot store them here (${err.message})`);
    }
    renderKeys();
  });
  $('keys-forget').addEventListener('click', async () => {
    try {
      localStorage.removeItem(PIN_STORAGE);
    } catch {
      // nothing stored
    }
    state.keys = state.keysText = state.keysFrom = null;
    renderKeys();
    await keysChanged();
  });
}

wire();
restorePinnedKeys();
document.body.dataset.state = 'ready';
