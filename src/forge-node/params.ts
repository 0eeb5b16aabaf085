import { BadRequestException, type PipeTransform } from '@nestjs/common';

/**
 * Why a repository or user name is not acceptable, or undefined when it is. The rules keep a
 * name safe as a directory name and readable in URLs; the subject codec copes with anything.
 */
export function nameProblem(name: unknown): string | undefined {
  // Names also arrive from token claims and query strings, where anything JSON can hold turns up.
  if (typeof name !== 'string') return `must be a string (got ${describeType(name)})`;
  if (name.length === 0) return 'must not be empty';
  if (name.length > 100) return `must be at most 100 characters (got ${name.length})`;
  if (name === '.' || name === '..') return `must not be "${name}"`;
  const bad = /[^A-Za-z0-9._-]/.exec(name);
  if (bad) return `may only contain letters, digits, ".", "_" and "-" (found ${JSON.stringify(bad[0])})`;
  if (name.toLowerCase().endsWith('.git')) return 'must not end with ".git"';
  return undefined;
}

/** What kind of JSON-ish value `value` is, for messages ("a number", "an array"). */
export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  return type === 'object' ? 'an object' : type === 'undefined' ? 'nothing' : `a ${type}`;
}

/** `value` as JSON for an error message, cut short: a 10 kB name need not come back whole. */
export function quote(value: unknown, max = 120): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** Route-parameter pipe: a bad name is a 400 that says which rule it broke. */
export class NamePipe implements PipeTransform<unknown, string> {
  constructor(private readonly what = 'name') {}

  transform(value: unknown): string {
    const problem = nameProblem(value ?? '');
    if (problem) throw new BadRequestException(`invalid ${this.what} ${quote(value)}: ${problem}`);
    return value as string;
  }
}

/** Route-parameter pipe for issue numbers: a positive integer, else a 400. */
export class IssueNumberPipe implements PipeTransform<unknown, number> {
  transform(value: unknown): number {
    if (typeof value !== 'string' || !/^[1-9][0-9]{0,9}$/.test(value)) {
      throw new BadRequestException(`invalid issue number ${quote(value)}: must be a positive integer`);
    }
    return Number(value);
  }
}

/** Why a branch or tag name is not acceptable (a subset of git check-ref-format), or undefined. */
export function refNameProblem(name: unknown): string | undefined {
  // A repeated query parameter (?branch=a&branch=b) arrives as an array.
  if (typeof name !== 'string') return `must be a single string (got ${describeType(name)})`;
  if (name.length === 0 || name.length > 200) return 'must be 1-200 characters';
  if (!/^[A-Za-z0-9._-]+$/.test(name)) return 'may only contain letters, digits, ".", "_" and "-"';
  if (name.startsWith('.') || name.startsWith('-')) return 'must not start with "." or "-"';
  if (name.includes('..')) return 'must not contain ".."';
  if (name.endsWith('.lock') || name.endsWith('.')) return 'must not end with ".lock" or "."';
  return undefined;
}

/** Route-parameter pipe for branch and tag names. */
export class RefNamePipe implements PipeTransform<unknown, string> {
  constructor(private readonly what = 'branch name') {}

  transform(value: unknown): string {
    const problem = refNameProblem(value ?? '');
    if (problem) throw new BadRequestException(`invalid ${this.what} ${quote(value)}: ${problem}`);
    return value as string;
  }
}

/**
 * Why a revision given in a body (`from` of a new branch, `target` of a tag) is not acceptable:
 * it must be a (possibly abbreviated) commit sha or a branch/tag name. Anything else (options
 * such as "--help", rev expressions) never reaches git.
 */
export function revisionProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `must be a string (got ${describeType(value)})`;
  if (/^[0-9a-f]{4,64}$/.test(value)) return undefined;
  const problem = refNameProblem(value);
  return problem ? `must be a commit sha (4-64 hex digits) or a branch or tag name (a name ${problem})` : undefined;
}
