/**
 * Label Studio's JSON export: a list of tasks `{id, data, annotations: [{id, completed_by,
 * result: [{from_name, to_name, type: 'choices', value: {choices: [name]}}], was_cancelled,
 * created_at, updated_at, …}], predictions, …}`. Predictions are the model's and never read.
 */
import { z } from 'zod';
import { annotatorOf, CHOICE_CONTROL, idOf, taskFields, timeOf } from './label-studio-fields.js';
import { type ParsedAnnotation, type ParsedReviewFile, type ParsedTask, ReviewFileError } from './review-row.js';

/** One exported task, as far as the import reads it. */
const LabelStudioTask = z.looseObject({
  id: z.union([z.number(), z.string()]).optional(),
  data: z.record(z.string(), z.unknown()),
  annotations: z
    .array(
      z.looseObject({
        id: z.union([z.number(), z.string()]).nullish(),
        completed_by: z.unknown().optional(),
        result: z
          .array(z.looseObject({ type: z.string(), from_name: z.string().optional(), value: z.looseObject({ choices: z.array(z.string()).optional() }) }))
          .default([]),
        was_cancelled: z.boolean().optional(),
        created_at: z.unknown().optional(),
        updated_at: z.unknown().optional(),
      }),
    )
    .default([]),
});

/** Parse a Label Studio JSON export; a task that is not one is a warning, a file that is not a list of tasks throws. */
export function parseLabelStudioJson(text: string): ParsedReviewFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ReviewFileError(`not JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(json)) throw new ReviewFileError('not a Label Studio JSON export (a list of tasks)');
  const tasks: ParsedTask[] = [];
  const warnings: string[] = [];
  json.forEach((raw, i) => {
    const parsed = LabelStudioTask.safeParse(raw);
    const ref = `task ${idOf((raw as { id?: unknown } | null)?.id) ?? `#${i + 1}`}`;
    if (!parsed.success) {
      warnings.push(`${ref}: not a Label Studio task (${parsed.error.issues.map((x) => `${x.path.join('.') || '(task)'}: ${x.message}`).join('; ')})`);
      return;
    }
    const annotations: ParsedAnnotation[] = [];
    for (const a of parsed.data.annotations) {
      const choices = a.result.filter((r) => r.type === 'choices' && (r.from_name ?? CHOICE_CONTROL) === CHOICE_CONTROL).flatMap((r) => r.value.choices ?? []);
      const id = idOf(a.id);
      if (choices.length > 1 && !a.was_cancelled) {
        warnings.push(`${ref}: annotation ${id ?? '?'} chose ${choices.length} classes (${choices.join(', ')}); one is needed: not used`);
        continue;
      }
      annotations.push({
        id,
        annotator: annotatorOf(a.completed_by),
        choice: choices[0] ?? null,
        classIndex: null,
        cancelled: a.was_cancelled === true,
        at: timeOf(a.updated_at, a.created_at),
      });
    }
    tasks.push({ ref, ...taskFields(parsed.data.data), annotations });
  });
  return { tasks, warnings };
}
