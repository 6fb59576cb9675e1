// Builds dist/verify.html: one self-contained page, the bundled script and the style inlined,
// and a Content-Security-Policy that allows exactly those two (by hash) and no network at all.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const WEB = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.join(WEB, 'dist', 'verify.html');

const sha256 = (text) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

async function bundleScript() {
  const result = await build({
    entryPoints: [path.join(WEB, 'src', 'page', 'main.js')],
    bundle: true,
    format: 'iife',
    minify: true,
    target: ['chrome109', 'firefox115', 'safari16'],
    legalComments: 'inline',
    charset: 'utf8',
    write: false,
    logLevel: 'warning',
  });
  // Inside an HTML <script>, "</script" would end the element early.
  return result.outputFiles[0].text.replace(/<\/(script)/gi, '<\\/$1');
}

/** The policy: nothing from anywhere (no connect-src: default-src covers it) but our two blobs. */
export function contentSecurityPolicy(script, style) {
  return [
    "default-src 'none'",
    `script-src ${sha256(script)}`,
    `style-src ${sha256(style)}`,
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    // No HTML is ever parsed from strings: DOM-injection sinks (innerHTML, ...) are refused.
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
  ].join('; ');
}

/** Replaces the one match of `pattern` (a function replacement: `$` in code stays literal). */
function fill(text, pattern, content) {
  if (!pattern.test(text)) throw new Error(`template: no ${pattern}`);
  return text.replace(pattern, () => content);
}

const script = await bundleScript();
const style = readFileSync(path.join(WEB, 'src', 'page', 'style.css'), 'utf8');
const template = readFileSync(path.join(WEB, 'src', 'page', 'index.html'), 'utf8');
// Each element's content must be exactly what was hashed: no whitespace around it.
const html = fill(
  fill(
    fill(template, /%CSP%/, contentSecurityPolicy(script, style)),
    /<style>\s*%STYLE%\s*<\/style>/,
    `<style>${style}</style>`,
  ),
  /<script>\s*%SCRIPT%\s*<\/script>/,
  `<script>${script}</script>`,
);
mkdirSync(path.dirname(OUT), { recursive: true });
writeFileSync(OUT, html);
console.log(`wrote ${path.relative(process.cwd(), OUT)} (${(html.length / 1024).toFixed(0)} KiB)`);
