/**
 * Class-name files. Supported: a JSON object {"0": [synset, name], ...} (Keras/torchvision
 * imagenet_class_index.json), a JSON array of names, or text with one class per line
 * (optionally "index,name" as in WinML label files).
 */
import { readFile } from 'node:fs/promises';

/** Parse label-file text into names indexed by class; `source` names the file in errors. */
export function parseLabels(text: string, source: string): string[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    const parsed: unknown = JSON.parse(trimmed);
    if (Array.isArray(parsed)) return parsed.map(String);
    const names: string[] = [];
    for (const [key, value] of Object.entries(parsed as Record<string, unknown>)) {
      const index = Number(key);
      if (!Number.isInteger(index) || index < 0) throw new Error(`${source}: label key '${key}' is not a class index`);
      names[index] = Array.isArray(value) ? String(value[value.length - 1]) : String(value);
    }
    // biome-ignore lint/complexity/useIndexOf: indexOf skips the holes of a sparse array, findIndex visits them
    const hole = names.findIndex((n) => n === undefined);
    if (hole >= 0 || names.length === 0) throw new Error(`${source}: no label for class ${Math.max(hole, 0)}`);
    return names;
  }
  const lines = trimmed.split(/\r?\n/);
  const indexed = lines.every((l) => /^\d+,/.test(l));
  return lines.map((line, i) => {
    if (!indexed) return line.trim();
    const comma = line.indexOf(',');
    if (Number(line.slice(0, comma)) !== i) throw new Error(`${source}: line ${i + 1} is not class ${i}`);
    return line.slice(comma + 1).trim();
  });
}

/** Load a label file from disk. */
export async function loadLabels(path: string): Promise<string[]> {
  return parseLabels(await readFile(path, 'utf8'), path);
}
