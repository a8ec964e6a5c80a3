/**
 * Label Studio's flat exports (JSON-MIN and CSV): one record per annotation holding the task's
 * data fields beside `id` (the task), `<control>` (the choice: a name, or `{"choices": [...]}`
 * when several), `annotator`, `annotation_id`, `created_at`, `updated_at`, `lead_time`. Records
 * of one task share its `id` and become one task with several annotations.
 */
import { annotatorOf, CHOICE_CONTROL, idOf, taskFields, timeOf } from './label-studio-fields.js';
import type { ParsedReviewFile, ParsedTask } from './review-row.js';

/** The chosen class names of a flat record's control field (CSV writes the object form as JSON text). */
function choicesOf(v: unknown): string[] {
  if (typeof v === 'string') {
    if (v === '') return [];
    if (v.startsWith('{')) {
      try {
        return choicesOf(JSON.parse(v));
      } catch {
        return [v];
      }
    }
    return [v];
  }
  if (v && typeof v === 'object' && Array.isArray((v as { choices?: unknown }).choices)) return (v as { choices: unknown[] }).choices.map(String);
  return [];
}

/** Group flat records into tasks; `where(i)` names record i in warnings (`line 3`, `record 2`). */
export function tasksFromFlatRecords(records: Array<Record<string, unknown>>, where: (i: number) => string): ParsedReviewFile {
  const byTask = new Map<string, ParsedTask>();
  const warnings: string[] = [];
  records.forEach((record, i) => {
    const taskId = idOf(record.id);
    const ref = taskId === null ? where(i) : `task ${taskId}`;
    const id = taskId ?? `#${i}`;
    let task = byTask.get(id);
    if (!task) {
      task = { ref, ...taskFields(record), annotations: [] };
      byTask.set(id, task);
    }
    const choices = choicesOf(record[CHOICE_CONTROL]);
    const annotationId = idOf(record.annotation_id);
    if (choices.length > 1) {
      warnings.push(`${ref}: annotation ${annotationId ?? '?'} chose ${choices.length} classes (${choices.join(', ')}); one is needed: not used`);
      return;
    }
    task.annotations.push({
      id: annotationId,
      annotator: annotatorOf(record.annotator),
      choice: choices[0] ?? null,
      classIndex: null,
      // The flat exports carry no was_cancelled: a skipped annotation is one without a choice.
      cancelled: false,
      at: timeOf(record.updated_at, record.created_at),
    });
  });
  return { tasks: [...byTask.values()], warnings };
}
