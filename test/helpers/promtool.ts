/**
 * promtool, Prometheus's checker (Debian's `prometheus` package; .ci/run installs it), run on
 * files or on text given on stdin.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const PROMTOOL = (process.env.PATH ?? '')
  .split(delimiter)
  .filter(Boolean)
  .map((dir) => join(dir, 'promtool'))
  .find((p) => existsSync(p));

/** `promtool <args>` in `cwd`, with `stdin` as its input: its exit code and output (stdout and stderr). */
export async function promtool(args: string[], o: { cwd?: string; stdin?: string } = {}): Promise<{ code: number | null; output: string }> {
  if (!PROMTOOL) throw new Error('promtool is not on PATH (apt-get install prometheus; .ci/run installs it)');
  const child = spawn(PROMTOOL, args, { cwd: o.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  child.stdin.end(o.stdin ?? '');
  return { code: await exited, output };
}
