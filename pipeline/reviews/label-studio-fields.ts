/**
 * What the Label Studio formats share: the task fields `cascade export review` writes (`key`,
 * `image`, `run`, `reason`), the Choices control they answer (`choice`), and how an annotator or
 * a timestamp is written down.
 */

/** The Choices control of the exported labeling config (label-studio-config.ts). */
export const CHOICE_CONTROL = 'choice';

/** A string field of a task's data, or null when absent or not a non-empty string. */
function textField(data: Record<string, unknown>, name: string): string | null {
  const v = data[name];
  return typeof v === 'string' && v !== '' ? v : null;
}

/** The fields of a task's data that name its image and run, and why it was exported. */
export function taskFields(data: Record<string, unknown>): { key: string | null; image: string | null; run: string | null; reasons: string[] } {
  const reason = textField(data, 'reason');
  return {
    key: textField(data, 'key'),
    image: textField(data, 'image'),
    run: textField(data, 'run'),
    reasons: reason === null ? [] : reason.split(';').filter(Boolean),
  };
}

/** An annotator as Label Studio writes one: a user id, an e-mail, or a user object. */
export function annotatorOf(v: unknown): string | null {
  if (typeof v === 'number' || (typeof v === 'string' && v !== '')) return String(v);
  if (v && typeof v === 'object') {
    const o = v as { email?: unknown; id?: unknown };
    if (typeof o.email === 'string' && o.email !== '') return o.email;
    if (typeof o.id === 'number' || typeof o.id === 'string') return String(o.id);
  }
  return null;
}

/** updated_at, else created_at, when it is a date; null otherwise. */
export function timeOf(updated: unknown, created: unknown): string | null {
  for (const v of [updated, created]) if (typeof v === 'string' && !Number.isNaN(Date.parse(v))) return v;
  return null;
}

/** An id as a string (Label Studio ids are numbers), or null. */
export function idOf(v: unknown): string | null {
  return typeof v === 'number' || (typeof v === 'string' && v !== '') ? String(v) : null;
}
