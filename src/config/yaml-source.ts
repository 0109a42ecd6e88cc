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
    const line = lineCounter.linePos(firstError.pos[0]).line;
    const reason = firstError.message.split('\n')[0] ?? 'YAML syntax error';
    throw new PortcullisError('PCL_ERR_CONFIG_PARSE', `${file}:${line}: ${reason}`, {
      details: { file, line, reason },
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
  if (error.type === UNEXPECTED_PROPERTY) return { path: error.path, message: 'unknown key' };
  if (error.type === UNION) {
    // A union of literals is a closed set (app ids, scopes, actions): name the choices.
    const choices = literalChoices(error.schema);
    if (choices !== null) return { path: error.path, message: `must be one of ${choices.join(', ')} (got ${describeValue(error.value)})` };
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
  const problems: Problem[] = [];
  const seen = new Set<string>();
  for (const error of Value.Errors(schema, value)) {
    const { path: pointer, message } = describe(error);
    const key = `${pointer} ${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    problems.push({ ...locate(pointerToPath(pointer)), message });
    if (problems.length >= 20) break;
  }
  return problems;
}
