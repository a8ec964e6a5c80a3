/**
 * A simulated Label Studio reviewer: takes the tasks `cascade export review` wrote, answers each
 * from a ground truth, and writes what Label Studio's exports would hold, in its documented
 * shapes: the JSON export (tasks with annotations, predictions kept as imported), JSON-MIN (one
 * flat record per annotation) and CSV (the same records, RFC 4180).
 */

/** A task as `cascade export review` writes it. */
export interface ExportedTask {
  data: Record<string, string>;
  predictions: unknown[];
}

/** One annotation the simulated reviewer makes. */
export interface SimulatedAnnotation {
  annotator: number;
  choice: string | null;
  cancelled?: boolean;
  /** Minutes after the first annotation (the latest wins on import). */
  minute?: number;
}

/** A task of Label Studio's JSON export. */
export interface LabelStudioExportTask {
  id: number;
  data: Record<string, string>;
  annotations: Array<Record<string, unknown>>;
  predictions: unknown[];
  [field: string]: unknown;
}

const at = (minute: number) => new Date(Date.UTC(2026, 11, 1, 9, minute)).toISOString();

/** Label Studio's JSON export of `tasks`, each annotated as `answer` says (no annotations: not labelled yet). */
export function labelStudioJsonExport(tasks: ExportedTask[], answer: (task: ExportedTask, i: number) => SimulatedAnnotation[]): LabelStudioExportTask[] {
  let annotationId = 1000;
  return tasks.map((task, i) => {
    const id = i + 1;
    const annotations = answer(task, i).map((a) => ({
      id: ++annotationId,
      completed_by: a.annotator,
      result:
        a.choice === null
          ? []
          : [{ id: `r${annotationId}`, type: 'choices', value: { choices: [a.choice] }, origin: 'manual', to_name: 'image', from_name: 'choice' }],
      was_cancelled: a.cancelled === true,
      ground_truth: false,
      created_at: at(a.minute ?? 0),
      updated_at: at(a.minute ?? 0),
      draft_created_at: null,
      lead_time: 3.2,
      prediction: {},
      result_count: 0,
      unique_id: `u-${annotationId}`,
      import_id: null,
      last_action: null,
      task: id,
      project: 1,
      updated_by: a.annotator,
      parent_prediction: null,
      parent_annotation: null,
      last_created_by: null,
    }));
    return {
      id,
      annotations,
      file_upload: null,
      drafts: [],
      predictions: task.predictions,
      data: task.data,
      meta: {},
      created_at: at(0),
      updated_at: at(0),
      inner_id: id,
      total_annotations: annotations.filter((a) => !a.was_cancelled).length,
      cancelled_annotations: annotations.filter((a) => a.was_cancelled).length,
      total_predictions: task.predictions.length,
      comment_count: 0,
      unresolved_comment_count: 0,
      last_comment_updated_at: null,
      project: 1,
      updated_by: 1,
      comment_authors: [],
    };
  });
}

/** Label Studio's JSON-MIN export of the same tasks: one flat record per (non-cancelled) annotation. */
export function labelStudioJsonMin(tasks: LabelStudioExportTask[]): Array<Record<string, unknown>> {
  return tasks.flatMap((t) =>
    t.annotations
      .filter((a) => !a.was_cancelled)
      .map((a) => {
        const choice = ((a.result as Array<{ value: { choices: string[] } }>)[0]?.value.choices ?? [])[0];
        return {
          ...t.data,
          id: t.id,
          ...(choice === undefined ? {} : { choice }),
          annotator: a.completed_by,
          annotation_id: a.id,
          created_at: a.created_at,
          updated_at: a.updated_at,
          lead_time: a.lead_time,
        };
      }),
  );
}

/** Label Studio's CSV export: the JSON-MIN records under one header of every column. */
export function labelStudioCsv(records: Array<Record<string, unknown>>): string {
  const columns = [...new Set(records.flatMap((r) => Object.keys(r)))];
  const field = (v: unknown) => {
    const s = v === undefined || v === null ? '' : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return `${[columns.join(','), ...records.map((r) => columns.map((c) => field(r[c])).join(','))].join('\n')}\n`;
}
