/**
 * A run's class names for the commands that need them: from the label file (`--labels`) or the
 * model spec whose `labels:` the run used (`--model`), one of the two.
 */
import { ConfigError, loadModelSpec } from '../config/load-config.js';
import { loadLabels } from '../pipeline/models/labels.js';

/** The label file named by `labels` or by the spec `model`, and its names (index = class); usage errors are ConfigErrors. */
export async function loadClassNames(o: { labels?: string; model?: string }): Promise<{ file: string; names: string[] }> {
  if ((o.labels === undefined) === (o.model === undefined))
    throw new ConfigError('give the label file with --labels or the model spec with --model (one of them)');
  let labelFile = o.labels;
  if (o.model !== undefined) {
    labelFile = (await loadModelSpec(o.model)).labels;
    if (labelFile === undefined) throw new ConfigError(`model spec ${o.model} names no label file (labels:)`);
  }
  const names = await loadLabels(labelFile as string).catch((err: Error & { code?: string }) => {
    throw new ConfigError(err.code === 'ENOENT' ? `label file not found: ${labelFile}` : `label file ${labelFile}: ${err.message}`);
  });
  return { file: labelFile as string, names };
}
