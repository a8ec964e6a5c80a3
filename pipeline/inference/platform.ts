/**
 * What decides a model's numbers on this machine besides the model: CPU architecture and the
 * instruction-set flags that select onnxruntime's int8 kernels, and the onnxruntime version.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, hostname } from 'node:os';

/** CPU flags that change onnxruntime's kernels (int8 above all), in a stable order. */
const KERNEL_FLAGS = ['avx512_vnni', 'avx_vnni', 'avx512f', 'avx2', 'fma', 'sse4_2', 'asimddp', 'i8mm'] as const;

export interface Platform {
  arch: string;
  /** The flags of KERNEL_FLAGS this CPU has, as /proc/cpuinfo names them. */
  cpuFlags: string[];
  onnxruntime: string;
}

/** The kernel-relevant flags in cpuinfo text (x86 "flags", arm64 "Features"). */
export function kernelFlags(cpuinfo: string): string[] {
  const line = cpuinfo.split('\n').find((l) => /^(flags|Features)\s*:/.test(l)) ?? '';
  const have = new Set(
    line
      .slice(line.indexOf(':') + 1)
      .trim()
      .split(/\s+/),
  );
  return KERNEL_FLAGS.filter((f) => have.has(f));
}

/** This process's platform. */
export function currentPlatform(): Platform {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // Not Linux: the flags stay unknown, the probe still compares outputs.
  }
  const version = (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
  return { arch: arch(), cpuFlags: kernelFlags(cpuinfo), onnxruntime: version };
}

/** One line naming the platform, for errors and logs. */
export function describePlatform(p: Platform): string {
  return `${p.arch} [${p.cpuFlags.join(' ') || 'no int8 dot-product flags'}], onnxruntime ${p.onnxruntime}`;
}

/** The writer of a result part: which process, on what. */
export function workerIdentity(): { host: string; pid: number } & Platform {
  return { host: hostname(), pid: process.pid, ...currentPlatform() };
}
