/** Probability rows with known confidences, for calibration tests on synthetic tables. */

/** A row over `classes` classes (default 3) with `p` on class `cls` and the rest shared evenly. */
export function peaked(cls: number, p: number, classes = 3): Float32Array {
  const r = new Float32Array(classes).fill((1 - p) / (classes - 1));
  r[cls] = p;
  return r;
}
