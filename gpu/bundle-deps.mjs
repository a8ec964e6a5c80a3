// Copies the production dependencies of the project into <dest>/node_modules for a linux-x64
// machine only: the packages `npm ls --omit=dev` lists (as installed here, so no network),
// without other platforms' prebuilt binaries, onnxruntime's CUDA/TensorRT provider libraries,
// type declarations, source maps, TypeScript sources and docs. Prints what it kept and dropped.
// Usage: node gpu/bundle-deps.mjs <project root> <dest>
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

const [root, dest] = process.argv.slice(2);
if (!root || !dest) {
  console.error('usage: node gpu/bundle-deps.mjs <project root> <dest>');
  process.exit(2);
}

// Optional peers npm installs but nothing imports at run time (valibot's optional typescript peer).
const SKIP_PACKAGES = new Set(['typescript']);
const PLATFORM = 'linux';
const ARCH = 'x64';

const ls = spawnSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
// npm ls exits 1 on peer-dependency warnings; its list is still complete.
if (!ls.stdout) {
  console.error(`npm ls failed: ${ls.stderr}`);
  process.exit(1);
}
const modules = join(root, 'node_modules');
const packages = ls.stdout
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l.startsWith(modules + sep))
  .filter((l) => !SKIP_PACKAGES.has(packageName(relative(modules, l))) && !packageName(relative(modules, l)).startsWith('@types/'));

const dropped = new Map();
let keptBytes = 0;
const drop = (why, path) => {
  const size = bytesUnder(path);
  const d = dropped.get(why) ?? { files: 0, bytes: 0 };
  d.files += 1;
  d.bytes += size;
  dropped.set(why, d);
  return false;
};

/** Why a path inside a package is left out, or null to keep it (rel uses '/' separators). */
function reason(rel, isDir) {
  const parts = rel.split('/');
  const base = parts[parts.length - 1];
  // Nested node_modules are listed as packages of their own when they are production ones.
  if (parts[0] === 'node_modules') return 'nested node_modules (copied separately if production)';
  // onnxruntime-node: bin/napi-v6/<os>/<arch>
  const napi = parts.indexOf('napi-v6');
  if (napi >= 0 && parts.length > napi + 1 && parts[napi + 1] !== PLATFORM) return 'other platforms (prebuilt binaries)';
  if (napi >= 0 && parts.length > napi + 2 && parts[napi + 2] !== ARCH) return 'other platforms (prebuilt binaries)';
  const pre = parts.indexOf('prebuilds');
  if (pre >= 0 && parts.length > pre + 1 && !parts[pre + 1].startsWith(`${PLATFORM}-${ARCH}`)) return 'other platforms (prebuilt binaries)';
  if (/^libonnxruntime_providers_(cuda|tensorrt|rocm|migraphx|openvino|dnnl)\b/.test(base)) return 'onnxruntime CUDA/TensorRT providers';
  if (isDir) {
    // At a package's root only: deeper folders of these names can be code (yaml's dist/doc).
    if (parts.length === 1 && /^(docs|test|tests|__tests__|example|examples|benchmark|benchmarks|\.github|coverage)$/.test(base))
      return 'docs, tests, examples';
    return null;
  }
  if (/\.d\.[cm]?ts$/.test(base)) return 'type declarations';
  if (/\.(map)$/.test(base)) return 'source maps';
  if (/\.([cm]?ts|tsx|tsbuildinfo|flow)$/.test(base)) return 'TypeScript/Flow sources';
  if (/^(readme|changelog|history|contributing|code_of_conduct|security|authors)(\..*)?$/i.test(base)) return 'docs, tests, examples';
  if (/\.(md|markdown)$/i.test(base) && !/licen[cs]e|notice|copying/i.test(base)) return 'docs, tests, examples';
  if (/^\.(npmignore|eslintrc.*|editorconfig|prettierrc.*|travis\.yml|nycrc.*|gitattributes)$/.test(base)) return 'dotfiles';
  return null;
}

for (const pkg of packages) {
  const rel = relative(modules, pkg);
  const target = join(dest, 'node_modules', rel);
  mkdirSync(target, { recursive: true });
  cpSync(pkg, target, {
    recursive: true,
    dereference: true,
    filter: (src) => {
      if (src === pkg) return true;
      const inner = relative(pkg, src).split(sep).join('/');
      const st = statSync(src);
      const why = reason(inner, st.isDirectory());
      if (why) return drop(why, src);
      if (st.isFile()) keptBytes += st.size;
      return true;
    },
  });
}

const mb = (b) => (b / 1e6).toFixed(1);
console.log(`deps: ${packages.length} production packages, ${mb(keptBytes)} MB kept`);
for (const [why, d] of [...dropped].sort((a, b) => b[1].bytes - a[1].bytes)) console.log(`  dropped ${why}: ${d.files} entries, ${mb(d.bytes)} MB`);

/** Bytes of the files at or under `path`. */
function bytesUnder(path) {
  try {
    const st = statSync(path);
    if (!st.isDirectory()) return st.size;
    return readdirSync(path).reduce((sum, name) => sum + bytesUnder(join(path, name)), 0);
  } catch {
    return 0;
  }
}

/** The package name of a path under node_modules: 'a', '@s/a', or the innermost of nested ones. */
function packageName(rel) {
  const parts = rel.split(sep);
  const i = parts.lastIndexOf('node_modules');
  const rest = parts.slice(i + 1);
  return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? '');
}
