/**
 * Loose images as an input format (the table's last row, taking any source the others do not):
 * a folder, an S3 prefix, a key list or a Ground Truth manifest, listed by list-source.ts.
 */
import { defaultLocalRoots, listSource, listSourceFrom } from '../list-source.js';
import type { InputFormat } from './input-format.js';

export const loose: InputFormat = {
  name: 'loose',
  matches: () => true,
  list: listSource,
  listFrom: listSourceFrom,
  localRoots: defaultLocalRoots,
};
