/**
 * Creating a folder and its missing parents in a bounded number of steps. Node's recursive mkdir
 * loops forever where a filesystem answers ENOENT for a folder whose parent exists (/proc,
 * some FUSE and network mounts): it creates the parent again, which exists, and retries.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/** An fs-style error (with `code`) for a folder that cannot be made. */
function cannotCreate(dir: string, why: string, errCode: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`cannot create the folder ${dir}: ${why}`), { code: errCode, path: dir });
}

/** `mkdir -p dir`, one level at a time: at most one mkdir per missing path segment, so it ends on any filesystem. */
export async function makeDir(dir: string): Promise<void> {
  const target = path.resolve(dir);
  // The usual case, one call: the folder or its parent exists.
  try {
    await fs.mkdir(target);
    return;
  } catch (err) {
    if (code(err) === 'EEXIST') return;
    if (code(err) !== 'ENOENT') throw err;
  }
  const missing: string[] = [];
  for (let at = target; ; at = path.dirname(at)) {
    const st = await fs.stat(at).catch((err: unknown) => {
      if (code(err) === 'ENOENT') return null;
      throw err;
    });
    if (st) {
      if (!st.isDirectory()) throw cannotCreate(target, `${at} is a file, not a folder`, 'ENOTDIR');
      break;
    }
    missing.push(at);
    if (path.dirname(at) === at) break;
  }
  for (const d of missing.reverse()) {
    try {
      await fs.mkdir(d);
    } catch (err) {
      if (code(err) === 'EEXIST') continue;
      // Its parent exists (made or found just before): this filesystem refuses new folders here.
      if (code(err) === 'ENOENT') throw cannotCreate(target, `the filesystem refuses a new folder in ${path.dirname(d)}`, 'ENOENT');
      throw err;
    }
  }
}
