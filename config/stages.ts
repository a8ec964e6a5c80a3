/** The stages of a validated config, in one shape whichever form (little/big or `stages:`) it used. */
import type { CascadeConfig, ModelSpec } from './schema.js';

/** The cascade's stages as configured: names and model specs in order (`stages:`, else little → big). */
export function configuredStages(config: CascadeConfig): Array<{ name: string; spec: ModelSpec; threshold: number | null }> {
  if (config.stages) return config.stages.map((s) => ({ name: s.name, spec: s.model, threshold: s.threshold }));
  return [
    { name: 'little', spec: config.little, threshold: config.threshold },
    { name: 'big', spec: config.big, threshold: null },
  ];
}
