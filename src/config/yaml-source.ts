import type { TSchema } from '@sinclair/typebox';
import { Value, ValueErrorType, type ValueError } from '@sinclair/typebox/value';
import { isMap, isNode, isScalar, LineCounter, parseDocument, type Document } from 'yaml';
import { PortcullisError, type SourceLocation } from '../errors.js';

/**
 * YAML documents that remember where each value came from, so a problem can be reported as
 * file, field and line. Used for the config file and for blocklists/*.yaml.
 */
export interface YamlSource {
  file: string;
  value: unknown;
  /** The line (1-based) of the value at `path`, or of its nearest ancestor present in the file. */
  lineOf(path: readonly (string | number)[]): number | undefined;
}

export type Problem = SourceLocation & { message: string };

export function parseYaml(file: string, text: string): YamlSource {
  const lineCounter = new LineCounter();
  const doc: Document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const firstError = doc.errors[0];
  if (firstError !== undefined) {
    const noticed = lineCounter.linePos(firstError.pos[0]).line;
    const opened = openingLine(text, firstError.message, firstError.pos[0], lineCounter);
    const line = opened ?? noticed;
    const what = firstError.message.split('\n')[0] ?? 'YAML syntax error';
    const reason = `YAML syntax error (${firstError.code}): ${what}${opened !== null && opened !== noticed ? ` — opened on line ${opened}, still open on line ${noticed}` : ''}`;
    throw new PortcullisError('PCL_ERR_CONFIG_PARSE', `${file}:${line}: ${reason}`, {
      details: { file, line, reason, yamlCode: firstError.code },
    });
  }
  return {
    file,
    value: doc.toJS({ maxAliasCount: 100 }) as unknown,
    lineOf(path) {
      for (let depth = path.length; depth >= 0; depth--) {
        // A mapping entry sits on its key's line: its value may start lines below (a nested block).
        const key = depth > 0 ? keyNodeOf(doc.getIn(path.slice(0, depth - 1), true), path[depth - 1]!) : undefined;
        const node: unknown = key ?? doc.getIn(path.slice(0, depth), true);
        if (isNode(node) && node.range !== undefined && node.range !== null) {
          return lineCounter.linePos(node.range[0]).line;
        }
      }
      return undefined;
    },
  };
}

/**
 * For a quote or bracket left open, the line where it was opened: the parser notices only where
 * the text ran out (often the end of the file), which is not where the mistake is.
 */
function openingLine(text: string, message: string, pos: number, lines: LineCounter): number | null {
  const quote = /closing (["'])quote/.exec(message)?.[1];
  if (quote !== undefined) {
    const at = text.lastIndexOf(quote, pos - 1);
    return at === -1 ? null : lines.linePos(at).line;
  }
  const bracket = /end with an? ([\]}])/.exec(message)?.[1];
  if (bracket === undefined) return null;
  const open = bracket === ']' ? '[' : '{';
  let depth = 0;
  for (let i = Math.min(pos, text.length) - 1; i >= 0; i--) {
    const c = text[i];
    if (c === bracket) depth++;
    else if (c === open) {
      if (depth === 0) return lines.linePos(i).line;
      depth--;
    }
  }
  return null;
}

function keyNodeOf(parent: unknown, key: string | number): unknown {
  if (!isMap(parent)) return undefined;
  const pair = parent.items.find((item) => String(isScalar(item.key) ? item.key.value : item.key) === String(key));
  return pair?.key;
}

/** `/dns/listen` -> ['dns', 'listen'], `/lists/0` -> ['lists', 0] */
export function pointerToPath(pointer: string): (string | number)[] {
  if (pointer === '' || pointer === '/') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((part) => (/^[0-9]+$/.test(part) ? Number(part) : part));
}

export function pathToField(path: readonly (string | number)[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out === '' ? part : `.${part}`;
  return out;
}

// TypeBox error kinds we phrase ourselves.
const UNEXPECTED_PROPERTY = ValueErrorType.ObjectAdditionalProperties;
const UNION = ValueErrorType.Union;

function describe(error: ValueError): { path: string; message: string } {
  if (error.type === UNEXPECTED_PROPERTY) {
    const key = pointerToPath(error.path).at(-1);
    const known = Object.keys((error.schema as { properties?: Record<string, unknown> }).properties ?? {});
    const suggestion = typeof key === 'string' ? nearest(key, known) : null;
    return { path: error.path, message: suggestion === null ? 'unknown key' : `unknown key; did you mean "${suggestion}"?` };
  }
  if (error.type === UNION) {
    // A union of literals is a closed set (app ids, scopes, actions): name the choices.
    const choices = literalChoices(error.schema);
    if (choices !== null) {
      const hint = error.value === null && choices.includes('nullip') ? ' (an unquoted null is YAML\'s null: write nullip)' : '';
      return { path: error.path, message: `must be one of ${choices.join(', ')} (got ${describeValue(error.value)})${hint}` };
    }
    // Report the variant that got furthest into the value: that is the one the author meant.
    let best: ValueError | undefined;
    for (const variant of error.errors) {
      const first = variant.First();
      if (first !== undefined && (best === undefined || first.path.length > best.path.length)) best = first;
    }
    if (best !== undefined && best.path.length > error.path.length) return describe(best);
    return { path: error.path, message: `has the wrong type (${describeValue(error.value)})` };
  }
  return { path: error.path, message: error.message.replace(/^Expected/, 'expected') };
}

/** The known key closest to a mistyped one (edit distance at most 2, and less than half its length), or null. */
export function nearest(key: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best !== null && bestDistance <= 2 && bestDistance < Math.max(2, key.length / 2) ? best : null;
}

/** Levenshtein distance, with a swap of two neighbours counted as one edit. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}

function literalChoices(schema: TSchema): string[] | null {
  const variants: unknown = (schema as { anyOf?: unknown }).anyOf;
  if (!Array.isArray(variants) || variants.length === 0) return null;
  const choices: string[] = [];
  for (const variant of variants as { const?: unknown }[]) {
    if (typeof variant.const !== 'string') return null;
    choices.push(variant.const);
  }
  return choices;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'a mapping' : `${typeof value} ${JSON.stringify(value)}`;
}

export type Locate = (path: readonly (string | number)[]) => SourceLocation;

/** Where a path of a YAML source sits: its file, field and line. */
export function locateIn(source: YamlSource): Locate {
  return (path) => {
    const line = source.lineOf(path);
    const field = pathToField(path);
    return line === undefined ? { file: source.file, field } : { file: source.file, field, line };
  };
}

/** Checks `value` against `schema`; `locate` turns each problem's path into file, field and line. */
export function schemaProblems(schema: TSchema, value: unknown, locate: Locate): Problem[] {
  return schemaProblemsAt(schema, value, locate).map((found) => found.problem);
}

/** schemaProblems, each with the path of the value it is about. */
export function schemaProblemsAt(schema: TSchema, value: unknown, locate: Locate): { problem: Problem; path: (string | number)[] }[] {
  const found: { problem: Problem; path: (string | number)[] }[] = [];
  const seen = new Set<string>();
  for (const error of Value.Errors(schema, value)) {
    const { path: pointer, message } = describe(error);
    const key = `${pointer} ${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const path = pointerToPath(pointer);
    found.push({ problem: { ...locate(path), message }, path });
    if (found.length >= 20) break;
  }
  return found;
}
