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
