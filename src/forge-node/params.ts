import { BadRequestException, type PipeTransform } from '@nestjs/common';

/**
 * Why a repository or user name is not acceptable, or undefined when it is. The rules keep a
 * name safe as a directory name and readable in URLs; the subject codec copes with anything.
 */
export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return 'must not be empty';
  if (name.length > 100) return `must be at most 100 characters (got ${name.length})`;
  if (name === '.' || name === '..') return `must not be "${name}"`;
  const bad = /[^A-Za-z0-9._-]/.exec(name);
  if (bad) return `may only contain letters, digits, ".", "_" and "-" (found ${JSON.stringify(bad[0])})`;
  if (name.toLowerCase().endsWith('.git')) return 'must not end with ".git"';
  return undefined;
}

/** Route-parameter pipe: a bad name is a 400 that says which rule it broke. */
export class NamePipe implements PipeTransform<string, string> {
  constructor(private readonly what = 'name') {}

  transform(value: string): string {
    const problem = nameProblem(value ?? '');
    if (problem) throw new BadRequestException(`invalid ${this.what} ${JSON.stringify(value)}: ${problem}`);
    return value;
  }
}

/** Route-parameter pipe for issue numbers: a positive integer, else a 400. */
export class IssueNumberPipe implements PipeTransform<string, number> {
  transform(value: string): number {
    if (!/^[1-9][0-9]{0,9}$/.test(value ?? '')) {
      throw new BadRequestException(`invalid issue number ${JSON.stringify(value)}: must be a positive integer`);
    }
    return Number(value);
  }
}

/** Why a branch or tag name is not acceptable (a subset of git check-ref-format), or undefined. */
export function refNameProblem(name: string): string | undefined {
  if (name.length === 0 || name.length > 200) return 'must be 1-200 characters';
  if (!/^[A-Za-z0-9._-]+$/.test(name)) return 'may only contain letters, digits, ".", "_" and "-"';
  if (name.startsWith('.') || name.startsWith('-')) return 'must not start with "." or "-"';
  if (name.includes('..')) return 'must not contain ".."';
  if (name.endsWith('.lock') || name.endsWith('.')) return 'must not end with ".lock" or "."';
  return undefined;
}

/** Route-parameter pipe for branch and tag names. */
export class RefNamePipe implements PipeTransform<string, string> {
  constructor(private readonly what = 'branch name') {}

  transform(value: string): string {
    const problem = refNameProblem(value ?? '');
    if (problem) throw new BadRequestException(`invalid ${this.what} ${JSON.stringify(value)}: ${problem}`);
    return value;
  }
}

/** Why a file path inside a repository is not acceptable, or undefined. */
export function filePathProblem(path: string): string | undefined {
  if (path.length === 0 || path.length > 1024) return 'must be 1-1024 characters';
  if (/[\u0000-\u001f\\]/.test(path)) return 'must not contain control characters or "\\"';
  const parts = path.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return 'must be relative, without empty, "." or ".." components';
  if (parts.some((p) => p.toLowerCase() === '.git')) return 'must not contain a ".git" component';
  return undefined;
}
