/**
 * The Label Studio labeling config for a run's classes, generated from its label file: an
 * Image named `image` (task field `$image`) and a Choices control named `choice` with one
 * `<Choice>` per class name, which is what the review export's tasks and predictions refer to.
 * A filter box comes first, since scrolling a thousand choices is no way to find one.
 *
 * Predictions name a class by its name, so a name two classes share (ImageNet has "crane" at
 * 134 and 517, "maillot" at 638 and 639) is one Choice, with the class indices as its hint.
 */

/** A class name that more than one class index carries. */
export interface SharedName {
  name: string;
  classes: number[];
}

const XML_ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
  // Tabs and line breaks as character references: a parser would otherwise normalise them to spaces.
  '\t': '&#9;',
  '\n': '&#10;',
  '\r': '&#13;',
};

/** Escape text for an XML attribute value; throws on characters XML 1.0 cannot hold. */
export function xmlAttribute(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly the characters to refuse
  const bad = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/.exec(value);
  if (bad) throw new Error(`${JSON.stringify(value)} holds U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0')}, which XML cannot hold`);
  return value.replace(/[&<>"'\t\n\r]/g, (c) => XML_ESCAPES[c]!);
}

/** The distinct class names in class order (first index wins), and the names several classes share. */
export function distinctChoices(names: readonly string[]): { choices: Array<{ name: string; classes: number[] }>; shared: SharedName[] } {
  const byName = new Map<string, number[]>();
  names.forEach((name, i) => {
    if (name === '') throw new Error(`class ${i} has an empty name`);
    const classes = byName.get(name);
    if (classes) classes.push(i);
    else byName.set(name, [i]);
  });
  const choices = [...byName].map(([name, classes]) => ({ name, classes }));
  return { choices, shared: choices.filter((c) => c.classes.length > 1) };
}

/** The labeling config XML for these class names (index = class). */
export function labelStudioConfig(names: readonly string[]): { xml: string; choices: number; shared: SharedName[] } {
  if (names.length === 0) throw new Error('the label file has no classes');
  const { choices, shared } = distinctChoices(names);
  const lines = [
    '<View>',
    '  <Image name="image" value="$image"/>',
    '  <Filter name="filter" toName="choice" hotkey="shift+f" minlength="0" placeholder="Filter classes"/>',
    '  <Choices name="choice" toName="image" choice="single" showInline="false">',
    ...choices.map(({ name, classes }) =>
      classes.length > 1 ? `    <Choice value="${xmlAttribute(name)}" hint="classes ${classes.join(', ')}"/>` : `    <Choice value="${xmlAttribute(name)}"/>`,
    ),
    '  </Choices>',
    '</View>',
  ];
  return { xml: `${lines.join('\n')}\n`, choices: choices.length, shared };
}
