/**
 * The warning for a source that listed no images. The run still completes (exit 0) with an empty
 * manifest: an existing but empty folder or prefix is a valid input (a drop folder between
 * deliveries, a scheduled firing with nothing new), and `cascade verify` agrees with it. A source
 * that does not exist fails the pre-flight instead; an empty one is usually the wrong folder or
 * files under extensions the run does not list, hence the extensions in the line.
 */

/** One warn line naming the empty source and the extensions it was listed with. */
export function emptySourceWarning(source: string, extensions: readonly string[]): string {
  return `source ${source} listed no images (extensions ${extensions.join(' ')}): the run is empty and its manifest has no rows`;
}
